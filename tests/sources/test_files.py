"""Snapshot files: what a bad file says, and that .json files read as `json.loads` reads them."""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.core.inventory import build
from app.sources import files
from app.sources.errors import InputError
from app.sources.files import load_objects, load_snapshot
from app.sources.gc_pause import gc_paused

ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}}


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_objects(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"kind": "List", "items": [\n  {"kind": "Service",}\n]}', "line 2 column 22"),
        ('{"kind": "List", "items": [', "line 1 column 27"),
        ('{"kind": "Service"} {}', "line 1 column 21"),
    ],
)
def test_invalid_json_names_the_file_and_where(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}: not valid YAML or JSON: ")
    assert message.endswith(f" at {where}")


@pytest.mark.parametrize(
    ("name", "text"),
    [("snap.json", ""), ("snap.json", " \n"), ("snap.yaml", ""), ("snap.yaml", "# c\n---\n")],
)
def test_an_empty_file_is_an_error_not_an_empty_cluster(
    tmp_path: Path, name: str, text: str
) -> None:
    """What 'kubectl get ... > snap.yaml' leaves when kubectl fails: judged as a cluster with
    nothing in it, it would allow every Eip."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert error_of(path) == (
        f"{path}: empty, no YAML or JSON document (did the command that wrote it fail?)"
    )


def test_a_directory_without_snapshot_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("kind: Service")
    assert error_of(tmp_path) == f"{tmp_path}: a directory without .yaml, .yml or .json files"


def test_a_byte_order_mark_is_skipped_in_json_as_in_yaml(tmp_path: Path) -> None:
    # Windows editors write one; json.loads of the bytes skips it, and so does the YAML reader.
    text = '\ufeff{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}'
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"bom{suffix}"
        path.write_text(text, encoding="utf-8")
        assert [o["metadata"]["name"] for o in load_objects(path)] == ["a"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("&a {kind: List, items: [*a]}", "a List appears twice, or inside itself"),
        # A few hundred bytes that expand to a million objects (more levels: a billion).
        (
            "a: &b0 {kind: List, items: [{kind: Service}]}\n"
            + "".join(f"b{i + 1}: &b{i + 1} {{kind: List, items: [{', '.join([f'*b{i}'] * 10)}]}}\n"
                      for i in range(6))
            + "kind: List\nitems: [*b6]\n",
            "a List appears twice",
        ),
        (
            "kind: List\nitems:\n" + "".join(
                "  " * i + "- kind: List\n" + "  " * i + "  items:\n" for i in range(9)
            ) + "  " * 9 + "- {kind: Service}\n",
            "Lists nested more than 8 deep",
        ),
        ("[" * 100_000, "line 1: exceeded maximum nesting depth"),  # libyaml's own check
    ],
)  # fmt: skip
def test_lists_that_never_end_are_refused(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(text)
    assert says in error_of(path)


def test_the_size_limit_holds_where_the_file_says_no_size(tmp_path: Path) -> None:
    # /dev/zero (as a FIFO would) reports size 0; the read itself stops at the limit.
    with pytest.raises(InputError, match="larger than 256 MiB"):
        load_objects(Path("/dev/zero"))


def test_what_a_directory_cannot_show_is_an_error_not_left_out(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    (snap / "eips").mkdir(parents=True)
    (snap / "core.yaml").write_text("kind: Service\n")
    (snap / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    assert error_of(snap) == f"{snap / 'gone.yaml'}: a broken symbolic link"
    (snap / "gone.yaml").unlink()
    os.mkfifo(snap / "pipe.yaml")
    assert error_of(snap) == f"{snap / 'pipe.yaml'}: not a regular file"
    (snap / "pipe.yaml").unlink()
    for i in range(12):  # siblings, not depth
        (snap / "eips" / f"eips{i}.yaml").write_text("kind: List\nitems: [{kind: Eip}]\n")
    assert len(load_objects(snap)) == 13


def test_an_unreadable_folder_is_an_error_not_left_out() -> None:
    # A folder of Eips left out would let an Eip that conflicts with them pass. Root reads
    # everything: the check runs as nobody, in a child, in a folder nobody may walk to.
    top = Path(tempfile.mkdtemp(prefix="eip-guard-"))
    try:
        top.chmod(0o755)
        (top / "eips").mkdir()
        (top / "core.yaml").write_text("kind: Service\n")
        (top / "eips" / "eips.yaml").write_text("kind: Eip\n")
        (top / "eips").chmod(0)
        code = (
            "import os, sys\nfrom pathlib import Path\nfrom app.sources.files import load_objects\n"
            "if os.geteuid() == 0:\n    os.setgid(65534)\n    os.setuid(65534)\n"
            "try:\n    load_objects(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(top)], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    finally:
        (top / "eips").chmod(0o755)
        shutil.rmtree(top)
    assert out.strip() == f"{top / 'eips'}: cannot read the directory: Permission denied"


def test_an_empty_list_is_kubectls_nothing_found(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text("apiVersion: v1\nkind: List\nitems: []\n---\n")
    assert load_objects(path) == []


def test_a_file_that_is_not_utf8_says_so_as_yaml_and_json(tmp_path: Path) -> None:
    # Python's words were "'utf-8' codec can't decode byte 0xe9 in position 45: ...".
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"snap{suffix}"
        path.write_bytes(b'{"kind": "Service", "metadata": {"name": "caf\xe9"}}')
        assert error_of(path) == (
            f"{path}: not UTF-8 text (byte 0xe9 at offset 45): give a YAML or JSON file "
            "(a binary file, or another encoding?)"
        )


def test_json_nested_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    # json.loads went on until a RecursionError (a traceback); the parser stops at 200.
    path = tmp_path / "snap.json"
    path.write_text('{"kind": "Service", "spec": ' + "[" * 2000 + "]" * 2000 + "}")
    assert "recursion limit exceeded at line 1 column" in error_of(path)


def test_json_values_read_as_json_loads_reads_them(tmp_path: Path) -> None:
    text = json.dumps(
        {
            **SERVICE,
            "spec": {
                "big": 2**80,
                "neg": -0,
                "f": 1e400,
                "small": 5e-324,
                "e": "\u00e9\ud83d\ude00",
            },
        }
    ).replace('"neg": 0', '"neg": -0, "neg": 7')  # a duplicate key: the last one wins
    path = tmp_path / "snap.json"
    path.write_text(text, encoding="utf-8")
    assert load_objects(path) == [json.loads(text)]
    nan = tmp_path / "nan.json"
    nan.write_text('{"kind": "Service", "spec": [NaN, Infinity, -Infinity]}')
    assert str(load_objects(nan)) == str([json.loads(nan.read_text())])


def test_a_json_list_and_a_yaml_file_give_the_same_objects(tmp_path: Path) -> None:
    items = [SERVICE, {**SERVICE, "metadata": {"name": "b"}}]
    (tmp_path / "a.json").write_text(json.dumps({"kind": "List", "items": items}))
    (tmp_path / "b.yaml").write_text(json.dumps({"kind": "List", "items": items}))
    assert load_objects(tmp_path / "a.json") == load_objects(tmp_path / "b.yaml") == items


def resolve_nothing(name: str) -> list[str]:
    raise OSError(f"{name}: no such host")


ODD_OBJECTS = [
    {
        "kind": "Node",
        "metadata": {
            "name": "n1",
            "annotations": {
                "eip-guard.io/network": "{not JSON",
                "projectcalico.org/IPv4Address": "10.0.0.300/24",
                "flannel.alpha.coreos.com/public-ip": "fe80::1%eth0",
            },
        },
        "spec": {"podCIDRs": ["10.244.0.0/99", "10.244.1.0/24"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.5 "},
                {"type": "Hostname", "address": "n1.example"},
                {"type": "Hostname", "address": "beef::g"},
            ]
        },
    },
    {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": "e1"},
        "spec": {"address": "10.0.0.9-10.0.0.1", "interface": "can_reach:nope"},
    },
    {
        "kind": "Pod",
        "metadata": {"name": "kv", "namespace": "kube-system"},
        "spec": {
            "containers": [
                {
                    "name": "kv",
                    "image": "kube-vip",
                    "env": [
                        {"name": "cp_enable", "value": "true"},
                        {"name": "address", "value": "x.test"},
                    ],
                }
            ]
        },
    },
]


@pytest.mark.parametrize("source", ["example", "synthetic", "odd"])
def test_loading_and_building_make_no_cyclic_garbage(
    tmp_path: Path, examples: Path, source: str
) -> None:
    """`serve --cluster` freezes what start-up made without collecting it first (a
    collection walked the whole inventory): garbage in cycles would then leak for good."""
    from bench import synth  # noqa: PLC0415 (only this test needs it)

    if source == "example":
        path = examples / "cluster.yaml"
    elif source == "synthetic":
        path = synth.write_snapshot(
            synth.Shape("t", nodes=30, eips=20, services=40), tmp_path / "s.json"
        )
    else:
        path = tmp_path / "odd.json"
        path.write_text(json.dumps({"kind": "List", "items": ODD_OBJECTS}))
    gc.collect()
    with gc_paused():
        inventory = build(load_objects(path), resolve=resolve_nothing)
        unreachable = gc.collect()
    assert unreachable == 0
    assert inventory.eips and (source != "odd" or len(inventory.notes) >= 5)


@pytest.mark.parametrize(
    ("items", "found"),
    [("{kind: Eip, metadata: {name: pool}}", "a mapping"), ("5", "a number (5)"),
     ("abc", "a string ('abc')"), ("true", "a boolean (true)")],
)  # fmt: skip
def test_a_list_whose_items_are_no_list_is_an_error_not_empty(
    tmp_path: Path, items: str, found: str
) -> None:
    """Read as empty, an EipList's pool was dropped unseen: `check` then allowed what it
    denies, exit 0 even with --strict."""
    path = tmp_path / "snap.yaml"
    for kind in ("List", "EipList"):
        path.write_text(f"apiVersion: v1\nkind: {kind}\nitems: {items}\n")
        assert error_of(path) == (
            f"{path}: {kind} with items as {found}, not a list: its objects would be left out "
            "of the cluster. Write items as a YAML list ('- ' before each object), as kubectl does"
        )
    # Inside a List, too.
    path.write_text(f"kind: List\nitems:\n- kind: EipList\n  items: {items}\n")
    assert "EipList with items as" in error_of(path)
    # null or no items: nothing in it (read as before: one object the inventory skips).
    for empty in ("kind: List\nitems:\n", "kind: List\n"):
        path.write_text(empty)
        assert [o["kind"] for o in load_objects(path)] == ["List"]


EIP = "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\n"


def _eip(name: str, address: str, head: str = EIP, extra: str = "") -> str:
    return f"{head}metadata: {{name: {name}{extra}}}\nspec: {{address: {address}}}\n"


def test_what_looks_like_an_eip_but_is_none_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text("---\n".join([
        _eip("wrong", "10.0.0.0/24", "apiVersion: v1\nkind: Eip\n"),
        _eip("none", "10.0.1.0/24", "kind: Eip\n"),
        _eip("lower", "10.0.2.0/24", "apiVersion: network.kubesphere.io/v1alpha2\nkind: EIP\n"),
        _eip("fine", "10.0.3.0/24"),
    ]))  # fmt: skip
    snapshot = load_snapshot(path)
    assert len(snapshot.objects) == 4  # as read: the inventory skips what is no Eip
    assert snapshot.notes == (
        f"Eip wrong (in {path}): ignored: apiVersion 'v1', so not OpenELB's Eip "
        "(network.kubesphere.io/v1alpha2); if it is one, fix its apiVersion",
        f"Eip none (in {path}): ignored: no apiVersion, so not OpenELB's Eip "
        "(network.kubesphere.io/v1alpha2); if it is one, fix its apiVersion",
        f"EIP lower (in {path}): ignored: kind 'EIP' is not 'Eip' (kinds are case-sensitive)",
    )


def test_one_name_for_two_different_eips_is_an_error_naming_both_places(tmp_path: Path) -> None:
    """The inventory keeps one Eip per name: the other's pool was lost unseen."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(_eip("p", "10.9.0.0/24"))
    second.write_text(_eip("p", "10.8.0.0/24"))
    with pytest.raises(InputError) as info:
        load_objects(first, second)
    assert str(info.value) == (
        f"Eip 'p' is in {first} and again in {second}, differing in spec.address "
        "('10.9.0.0/24', then '10.8.0.0/24'): a cluster holds one Eip of a name, so one of "
        "them would be judged and the other dropped unseen. Keep the current one (snapshots "
        "of the cluster taken at different times?)"
    )
    other = f"{EIP}metadata: {{name: p}}\nspec: {{address: 10.9.0.0/24, interface: eth1}}\n"
    first.write_text(_eip("p", "10.9.0.0/24") + "---\n" + other)
    assert f"is twice in {first}, differing in spec.interface:" in error_of(first)


def test_the_same_eip_twice_is_read_once(tmp_path: Path) -> None:
    # One cluster's objects in two files (or one file given twice): nothing is lost.
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(_eip("p", "10.9.0.0/24"))
    second.write_text(_eip("p", "10.9.0.0/24", extra=", resourceVersion: '7'") + "---\n"
                      + "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")  # fmt: skip
    objects = load_objects(first, second, first)
    assert [o["kind"] for o in objects] == ["Eip", "Service"]
    assert objects[0]["metadata"] == {"name": "p"}  # the first read is kept
    # Nor is status.used a difference: OpenELB rewrites it, and two dumps taken seconds
    # apart differ there (a review's finding: that was an error).
    second.write_text(_eip("p", "10.9.0.0/24") + "status: {used: {10.9.0.7: default/web}}\n")
    assert [o["kind"] for o in load_objects(first, second)] == ["Eip"]


def test_stdin_is_named_as_such(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom app.sources.files import load_objects\n"
        "try:\n    print(load_objects(Path('-')))\nexcept Exception as e:\n    print(e)\n"
    )
    run = [sys.executable, "-c", code]
    done = subprocess.run(run, input="kind: Service\n", capture_output=True, text=True,
                          check=True, cwd=ROOT)  # fmt: skip
    assert done.stdout == "[{'kind': 'Service'}]\n"
    done = subprocess.run(run, input="", capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.startswith("- (stdin): empty, no YAML or JSON document")


@pytest.mark.parametrize(
    ("piped", "by_jiter"),
    [
        ('\ufeff {"kind": "List", "items": [{"kind": "Service"}]}', True),
        ('\n  {"kind": "Service"}', True),
        ("{kind: List, items: [{kind: Service}]}", False),  # YAML that begins like JSON
        ("kind: Service\n", False),
    ],
)
def test_json_on_stdin_is_read_by_the_json_reader(
    piped: str, by_jiter: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `kubectl get -o json | eip-guard audit --cluster -`: read as YAML, the xl snapshot took
    # 16.7 s and 2.7 GB where jiter takes 2 s and 0.3 GB (a review's measurement).
    calls: list[bool] = []
    real = files._json_document

    def spy(path: Path, data: bytes) -> object:
        calls.append(True)
        return real(path, data)

    monkeypatch.setattr(files, "_json_document", spy)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped.encode())))
    assert [o["kind"] for o in load_objects(Path("-"))] == ["Service"]
    assert bool(calls) == (by_jiter or piped.startswith("{kind"))  # tried, then YAML


def test_yaml_reads_what_kubectl_reads_as_strings_as_strings(tmp_path: Path) -> None:
    """kubectl's YAML reader (go-yaml v2 into interface{}) gives a timestamp-like scalar as
    the string written, and knows no base-60 numbers: PyYAML made `2024-05-01` a date and
    `1:2:3:4:5:6:7:8` (an IPv6 address, as kubectl prints it, unquoted) the number 3,617,...,
    so a valid Eip name read as none and a node address was ignored."""
    path = tmp_path / "snap.yaml"
    path.write_text(
        "kind: Node\n"
        "metadata: {name: 2024-05-01, annotations: {at: 2001-12-14t21:59:43.10-05:00}}\n"
        "status:\n  addresses:\n  - {type: InternalIP, address: 1:2:3:4:5:6:7:8}\n"
        "  - {type: InternalIP, address: !!timestamp 2002-12-14}\n"
        "spec: {times: [1:20, 190:20:30.15, -1:0, 12, 0x1f, 017, 1_000, 1.5, .inf]}\n"
    )
    (node,) = load_objects(path)
    assert node["metadata"] == {
        "name": "2024-05-01",
        "annotations": {"at": "2001-12-14t21:59:43.10-05:00"},
    }
    assert [a["address"] for a in node["status"]["addresses"]] == ["1:2:3:4:5:6:7:8", "2002-12-14"]
    # Base 60 is gone; the other YAML 1.1 numbers are read as before (and as kubectl reads them).
    assert node["spec"]["times"] == [
        "1:20",
        "190:20:30.15",
        "-1:0",
        12,
        31,
        15,
        1000,
        1.5,
        float("inf"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (
            "eip.yaml",
            "kind: Eip\nmetadata: {name: a}\nspec:\n  address: 10.0.0.1\n  address: 10.0.0.2\n",
            "not valid YAML: line 5: key 'address' given twice in one mapping (first on line 4)",
        ),
        (
            "eip.json",
            '{"kind": "Eip", "spec": {"address": "10.0.0.1", "address": "10.0.0.2"}}',
            "not valid JSON: key 'address' given twice in one object",
        ),
    ],
)
def test_a_key_given_twice_in_a_manifest_is_refused_as_kubectl_refuses_it(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    """One value judged, the other silently dropped: kubectl refuses such a manifest
    ("mapping key already defined"), so the gate must not judge a value of its choosing."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        files.load_one(path)
    assert str(info.value) == f"{path}: {says}: kubectl refuses it; keep one"
    # A snapshot is what kubectl printed: read as json.loads reads it, the last one wins.
    assert load_objects(path)[0]["spec"] == {"address": "10.0.0.2"}


def test_yaml_merge_keys_are_no_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "eip.yaml"
    path.write_text(
        "kind: Eip\nmetadata: {name: a}\nbase: &b {address: 10.0.0.1, protocol: bgp}\n"
        "spec: {<<: *b, address: 10.0.0.2}\n"
    )
    assert files.load_one(path)["spec"] == {"address": "10.0.0.2", "protocol": "bgp"}


def test_a_policy_with_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    # The second rules: silently dropped the first's `off`.
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  can-reach-pod-cidr: off\nrules: {}\n")
    with pytest.raises(InputError, match="line 3: key 'rules' given twice in one mapping"):
        files.load_policy(path)


@pytest.mark.parametrize(
    "text",
    [
        "rules:\n#  can-reach-pod-cidr: warn\nallowOverrides: false\n",  # every rule commented out
        "rules: null\nallowOverrides: false\n",  # helm's toYaml of `policy.rules: null`
        "---\nrules: {}\nallowOverrides: false\n---\n",  # documents as kubectl and helm end them
    ],
)
def test_a_policy_without_rules_or_with_empty_documents_reads(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy = files.load_policy(path)
    assert policy.actions == {} and policy.allow_overrides is False


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "apiVersion: v1\nkind: ConfigMap\n",
            "apiVersion: not a key of a policy file, which holds rules: and allowOverrides: "
            "(a Kubernetes object? give the policy file itself)",
        ),
        (
            "rules: {null: warn}\n",
            "rules: a rule id that is null, not a string",
        ),
    ],
)
def test_a_policy_error_says_what_a_policy_holds(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        files.load_policy(path)
    assert str(info.value) == f"{path}: {says}"


def test_a_kind_that_is_no_string_is_named_as_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text("apiVersion: v1\nkind: 5\nmetadata: {name: a}\n")
    assert error_of(path) == (
        f"{path}: an object whose kind is a number (5), not a string such as Node or Eip"
    )
