"""`eip-guard check` / `audit` end to end on the example snapshot, through main()."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import parser
from app.core.rules import RULE_IDS
from tests.conftest import ROOT
from tests.support import run_cli


def test_the_331_mistake_is_denied(capsys: pytest.CaptureFixture[str], examples: Path) -> None:
    code, out, _ = run_cli(
        capsys, "check", "-f", str(examples / "eip-bad.yaml"),
        "--cluster", str(examples / "cluster.yaml"), "-o", "json",
    )  # fmt: skip
    assert code == 1
    result = json.loads(out)
    assert result["allowed"] is False
    rules = {v["rule"] for v in result["violations"]}
    assert rules == {"can-reach-in-eip", "can-reach-service-ip"}
    assert all(v["field"] == "spec.interface" for v in result["violations"])
    assert "can_reach:172.16.236.1" in result["violations"][0]["message"]


def test_the_gateway_is_allowed(capsys: pytest.CaptureFixture[str], examples: Path) -> None:
    code, out, _ = run_cli(
        capsys, "check", "-f", str(examples / "eip-good.yaml"),
        "--cluster", str(examples / "cluster.yaml"), "-o", "json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {"allowed": True, "violations": [], "warnings": []}


def test_a_mistyped_manifest_is_denied_by_the_schema_rule(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    # What kubectl apply would refuse must not pass the gate, nor read as "empty address".
    manifest = (examples / "eip-bad.yaml").read_text()
    mistyped = tmp_path / "eip.yaml"
    mistyped.write_text(manifest.replace("protocol: layer2", "protocol: Layer2"))
    code, out, _ = run_cli(
        capsys, "check", "-f", str(mistyped), "--cluster", str(examples / "cluster.yaml")
    )
    assert code == 1
    assert '[spec-schema] spec.protocol: Invalid value: "Layer2"' in out
    assert 'Did you mean "layer2"?' in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["check", "-f", "nope.yaml", "--cluster", "{ex}/cluster.yaml"], "no such file"),
        (["check", "-f", "{ex}/cluster.yaml", "--cluster", "{ex}/cluster.yaml"], "exactly one"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", "{ex}/eip-bad.yaml",
          "--policy", "{bad_policy}"], "unknown rule id"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", "{garbage}"], "not valid YAML: line 2"),
        (["check", "-f", "{notkind}", "--cluster", "{ex}/cluster.yaml"], "without 'kind'"),
        (["check", "-f", "{svc}", "--cluster", "{ex}/cluster.yaml"], "not an Eip"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", "{ex}/cluster.yaml",
          "--policy", "{typo_policy}"], "allowOverride"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--old", "{ex}/cluster.yaml",
          "--cluster", "{ex}/cluster.yaml"], "exactly one"),
        (["check", "-f", "{ex}/eip-bad.yaml"], "required"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", "{empty}"], "empty, no YAML"),
        (["check", "-f", "{ex}", "--cluster", "{ex}/cluster.yaml"], "a directory; give one file"),
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", "{ex}/cluster.yaml",
          "--policy", "{ex}"], "a directory; give one file"),
        (["audit", "--cluster", "{ex}/cluster.yaml", "--cluster", "{empty}"], "empty, no YAML"),
        (["audit", "--cluster", "{ex}/cluster.yaml", "-o", "xml"], "invalid choice"),
        # `--cluster "$SNAP"` with SNAP unset: Path("") is ".", the whole working directory.
        (["check", "-f", "{ex}/eip-bad.yaml", "--cluster", ""], "--cluster: an empty path"),
        (["check", "-f", " ", "--cluster", "{ex}/cluster.yaml"], "--filename: an empty path"),
        (["certs", "--out", "", "--dns", "x"], "--out: an empty path"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path, argv: list[str], says: str
) -> None:
    files = {
        "bad_policy": ("p1.yaml", "rules:\n  no-such-rule: warn\n"),
        "typo_policy": ("p2.yaml", "allowOverride: false\n"),
        "garbage": ("g.yaml", "a: [unclosed\n"),
        "notkind": ("n.yaml", "spec: {}\n"),
        "svc": ("s.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"),
        "empty": ("e.yaml", ""),
    }
    paths = {}
    for key, (name, text) in files.items():
        (tmp_path / name).write_text(text)
        paths[key] = str(tmp_path / name)
    args = [a.format(ex=examples, **paths) for a in argv]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert says in err and "Traceback" not in err
    # argparse's own errors add a usage line.
    if not ("required" in says or "choice" in says or "empty path" in says):
        assert err.count("\n") == 1


def test_policy_file_turns_a_denial_into_a_warning(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  can-reach-in-eip: warn\n  can-reach-service-ip: off\n")
    code, out, _ = run_cli(
        capsys, "check", "-f", str(examples / "eip-bad.yaml"),
        "--cluster", str(examples / "cluster.yaml"), "--policy", str(policy), "-o", "json",
    )  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["allowed"] is True
    assert [w.split(":")[0] for w in result["warnings"]] == ["eip-guard can-reach-in-eip"]


def test_update_via_old_and_text_output(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text((examples / "eip-good.yaml").read_text().replace(".80", ".81"))
    code, out, _ = run_cli(
        capsys, "check", "-f", str(changed), "--old", str(examples / "eip-good.yaml"),
        "--cluster", str(examples / "cluster.yaml"),
    )  # fmt: skip
    assert code == 1
    assert out.splitlines()[0] == "Eip eip-layer2: DENIED"
    assert "[address-immutable] spec.address: Invalid value" in out


def test_a_name_the_cluster_holds_is_judged_as_its_update(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    # kubectl apply makes that an UPDATE, which the webhook judges as one: a gate judging a
    # CREATE passed a widened pool the webhook then refused (address-immutable).
    widened = tmp_path / "widened.yaml"
    widened.write_text(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: eip-pool}\n"
        "spec: {address: 172.16.236.40-172.16.236.70, protocol: layer2, interface: eth0}\n"
    )
    cluster = str(examples / "cluster.yaml")
    code, out, err = run_cli(capsys, "check", "-f", str(widened), "--cluster", cluster)
    assert code == 1
    assert "[address-immutable] spec.address" in out
    assert "(was '172.16.236.40-172.16.236.60')" in out
    assert err == (
        "eip-guard: note: the cluster holds Eip eip-pool: judged as an update of it, as "
        "'kubectl apply' would be (--old gives another old version)\n"
    )
    code, out, err = run_cli(
        capsys, "check", "-f", str(examples / "eip-good.yaml"), "--cluster", cluster
    )  # a new name: a create, with nothing said
    assert (code, err) == (0, "")
    # The manifest itself in the snapshot (a gate over the cluster and its manifests): as an
    # update of itself every violation would only warn; nothing to apply, so a create.
    bad = str(examples / "eip-bad.yaml")
    code, out, err = run_cli(capsys, "check", "-f", bad, "--cluster", cluster, "--cluster", bad)
    assert code == 1 and "DENIED" in out
    assert "holds Eip eip-layer2 as written: judged as a create" in err


def test_audit_on_a_snapshot_directory(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    (tmp_path / "cluster.yaml").write_text((examples / "cluster.yaml").read_text())
    (tmp_path / "late.yaml").write_text(
        (examples / "eip-bad.yaml").read_text().replace("eip-layer2", "late")
    )
    code, out, _ = run_cli(capsys, "audit", "--cluster", str(tmp_path), "-o", "json")
    report = json.loads(out)
    assert code == 1
    # Both sides of the conflict are reported: late's can_reach IP lies in eip-pool's pool.
    assert report["eips"] == 2 and list(report["findings"]) == ["eip-pool", "late"]
    pool_rules = [v["rule"] for v in report["findings"]["eip-pool"]["violations"]]
    assert pool_rules == ["eip-covers-can-reach"]
    code, out, _ = run_cli(capsys, "audit", "--cluster", str(examples / "cluster.yaml"))
    assert code == 0 and out.strip().endswith("1 Eip(s) audited, 0 violating")


def test_what_the_snapshot_lacks_or_cannot_read_is_said_on_stderr(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    """A snapshot without Services and with a bad annotation on 15 nodes: the verdict stays
    on stdout (JSON with -o json); stderr says what was not checked or read, 10 lines at most."""
    nodes = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": f"n{i}", "annotations": {"eip-guard.io/network": "{"}},
         "status": {"addresses": [{"type": "InternalIP", "address": f"172.16.236.{i + 10}"}]}}
        for i in range(15)
    ]  # fmt: skip
    snapshot = tmp_path / "nodes.json"
    snapshot.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    code, out, err = run_cli(
        capsys, "check", "-f", str(examples / "eip-good.yaml"), "--cluster", str(snapshot),
        "-o", "json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["allowed"] is True
    lines = err.splitlines()
    assert lines[0] == (
        "eip-guard: note: not checked: Service IPs: no Service has an IP "
        "(a snapshot needs 'kubectl get services -A')"
    )
    assert (
        lines[1] == "eip-guard: note: Node n0 (annotation eip-guard.io/network): ignored: not JSON"
    )
    assert len(lines) == 11 and lines[-1] == "eip-guard: note: ... and 6 more"
    code, out, err = run_cli(capsys, "audit", "--cluster", str(snapshot), "-o", "json")
    notes = json.loads(out)["notes"]
    assert len(notes) == 16 and notes[0] == lines[0].removeprefix("eip-guard: note: ")
    code, out, err = run_cli(capsys, "audit", "--cluster", str(examples / "cluster.yaml"))
    assert code == 0 and err == ""  # a whole snapshot: nothing to say


def test_snapshot_mode_never_loads_the_kubernetes_client_or_pyroute2(examples: Path) -> None:
    # Start-up time and memory of `check` and `serve --cluster` (README Performance): the
    # heavy clients load only in the modes that use them. A fresh interpreter tells.
    script = (
        "import sys\n"
        "from app.cli.main import main, parser\n"
        "parser()\n"
        f"code = main(['check', '-f', {str(examples / 'eip-good.yaml')!r},"
        f" '--cluster', {str(examples / 'cluster.yaml')!r}])\n"
        "print(code, sorted(m for m in ('kubernetes', 'pyroute2') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.splitlines()[-1] == "0 []"


def test_rules_lists_every_rule_with_the_action_a_policy_gives_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "rules")
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:-2]}
    assert set(rows) == RULE_IDS
    assert set(rows.values()) == {"deny", "warn"}  # the advisory rules show as warn
    assert rows["can-reach-unknown-subnet"] == "warn"
    assert out.splitlines()[-2].endswith("annotation on an Eip: honoured")
    assert out.splitlines()[-1] == (
        "  except for spec-schema, address-overlap, default-eip-unique, address-immutable "
        "(only the policy changes those)"
    )

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  can-reach-pod-cidr: warn\n  can-reach-kube-vip: 'off'\n"
        "  can-reach-unknown-subnet: 'off'\nallowOverrides: false\n"
    )
    code, out, _ = run_cli(capsys, "rules", "--policy", str(policy), "-o", "json")
    assert code == 0
    listed = json.loads(out)
    actions = {r["id"]: r["action"] for r in listed["rules"]}
    assert actions["can-reach-pod-cidr"] == "warn"
    assert actions["can-reach-kube-vip"] == actions["can-reach-unknown-subnet"] == "off"
    assert actions["can-reach-node-ip"] == "deny"
    assert listed["allowOverrides"] is False
    assert all(r["deniesWhen"] for r in listed["rules"])
    fixed = {r["id"] for r in listed["rules"] if not r["overridable"]}
    assert fixed == {"spec-schema", "address-overlap", "default-eip-unique", "address-immutable"}

    policy.write_text("rules:\n  can-reach-nodeip: warn\n")
    code, _, err = run_cli(capsys, "rules", "--policy", str(policy))
    assert code == 2 and "unknown rule id" in err
    # deny where a rule can only warn would quietly pass what the admin meant to stop.
    policy.write_text("rules:\n  can-reach-unknown-subnet: deny\n")
    code, _, err = run_cli(capsys, "rules", "--policy", str(policy))
    assert code == 2 and "can-reach-unknown-subnet: this rule never denies, only warns" in err
    policy.write_text("rules:\n  can-reach-unknown-subnet: off\n")
    code, out, _ = run_cli(capsys, "rules", "--policy", str(policy))
    assert code == 0 and re.search(r"can-reach-unknown-subnet +off ", out)


def test_strict_fails_on_warnings_and_on_what_was_not_checked(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    good, cluster = str(examples / "eip-good.yaml"), str(examples / "cluster.yaml")
    assert run_cli(capsys, "check", "-f", good, "--cluster", cluster, "--strict")[0] == 0
    # A snapshot without Nodes or Services: allowed, with notes; --strict makes it a failure.
    empty = tmp_path / "empty-list.yaml"
    empty.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    assert run_cli(capsys, "check", "-f", good, "--cluster", str(empty))[0] == 0
    code, _, err = run_cli(capsys, "check", "-f", good, "--cluster", str(empty), "--strict")
    assert code == 1 and "--strict: 2 warning(s)" in err and "2 part(s) of the cluster" in err
    # A warning alone (a policy that turns the denial into one) fails it too.
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  can-reach-in-eip: warn\n  can-reach-service-ip: warn\n")
    bad = str(examples / "eip-bad.yaml")
    argv = ["check", "-f", bad, "--cluster", cluster, "--policy", str(policy)]
    assert run_cli(capsys, *argv)[0] == 0
    code, _, err = run_cli(capsys, *argv, "--strict")
    assert code == 1 and "--strict: 2 warning(s)" in err and "not checked" not in err
    # audit: the same for every Eip.
    assert run_cli(capsys, "audit", "--cluster", cluster, "--strict")[0] == 0
    code, _, err = run_cli(capsys, "audit", "--cluster", str(empty), "--strict")
    assert code == 1 and "2 part(s) of the cluster not checked" in err
    # What --strict counts, audit lists: an Eip whose only warning is a note included.
    noted = tmp_path / "noted.yaml"
    noted.write_text(
        (examples / "cluster.yaml").read_text()
        + "\n---\napiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\n"
        "metadata: {name: odd, annotations: {eip-guard.io/allow-rules: no-such-rule}}\n"
        "spec: {address: 192.168.77.10, protocol: layer2, interface: eth0}\n"
    )
    code, out, err = run_cli(capsys, "audit", "--cluster", str(noted), "--strict")
    assert code == 1 and "--strict: 1 warning(s)" in err
    assert "Eip odd: allowed\n  note  eip-guard: unknown rule id(s)" in out
    code, out, _ = run_cli(capsys, "audit", "--cluster", str(noted), "-o", "json")
    assert code == 0 and "unknown rule id" in json.dumps(json.loads(out)["findings"]["odd"])


def test_a_reader_that_goes_away_stops_the_output_quietly(tmp_path: Path) -> None:
    # `eip-guard audit | head`: the pipe closes while findings are still being written.
    items = [
        {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
         "metadata": {"name": f"e{i}"},
         "spec": {"address": f"10.1.{i // 250}.{i % 250}", "protocol": "layer2",
                  "interface": "can_reach:10.1.0.0"}}
        for i in range(2000)
    ]  # fmt: skip
    snapshot = tmp_path / "many.json"
    snapshot.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    audit = [sys.executable, "-m", "app.cli.main", "audit", "--cluster", str(snapshot)]
    with subprocess.Popen(audit, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        assert p.stdout.read(100).startswith(b"Eip e0: DENIED")
        p.stdout.close()
        err = p.stderr.read().decode()
        code = p.wait()
    assert code == 141  # as a tool killed by SIGPIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["rules"],
        ["rules", "-o", "json"],
        ["audit", "--cluster", "examples/cluster.yaml"],
        ["check", "-f", "examples/eip-good.yaml", "--cluster", "examples/cluster.yaml"],
        ["resolve", "lo"],
        # argparse prints these and drops a failed write: unbuffered, they exited 0.
        ["--help"],
        ["--version"],
        ["check", "--help"],
    ],
)
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_output_that_cannot_be_written_says_stdout_and_why_in_one_line(
    argv: list[str], unbuffered: str
) -> None:
    # `eip-guard audit > report` on a full disk; /dev/full fails every write with ENOSPC.
    # Buffered, the write fails at the last flush; unbuffered (PYTHONUNBUFFERED=1, as in
    # many images), at the first print. Python's error names no file: the message must.
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli.main", *argv],
            cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, check=False, env=env,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "eip-guard: cannot write to standard output: No space left on device"
    )
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_closed_or_failing_standard_streams_keep_the_output_and_the_exit_code_true(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "none.yaml"  # notes on stderr: no Node, no Service
    empty.write_text("kind: List\nitems: []\n")
    cli = [sys.executable, "-m", "app.cli.main"]
    # stderr closed (2>&-): its notes must not land in the JSON on stdout.
    done = subprocess.run([*cli, "audit", "--cluster", str(empty), "-o", "json"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                          preexec_fn=lambda: os.close(2), check=False)  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["eips"] == 0
    # stdout closed (>&-): the verdict is the exit code, with no traceback.
    bad = ROOT / "examples" / "eip-bad.yaml"
    judged = subprocess.run([*cli, "check", "-f", str(bad), "--cluster", str(ROOT / "examples" /
                             "cluster.yaml")], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.close(1), check=False)  # fmt: skip
    assert judged.returncode == 1 and "Traceback" not in judged.stderr
    # stderr full (2>/dev/full): exit 2, as for stdout, not 1 ("violations").
    with open("/dev/full", "w") as full:
        done = subprocess.run([*cli, "audit", "--cluster", str(empty)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=full, check=False)  # fmt: skip
    assert done.returncode == 2


def test_a_pool_over_what_the_cluster_uses_is_denied_and_an_in_use_eip_is_not(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    # The review's reproductions: a pool over the kube-vip VIP, over the ServiceCIDR. And
    # the manifest of the Eip in use, without the status OpenELB wrote (as kept in git):
    # its Service's ingress IP is its own hand-out, so the gate passes it.
    cluster = str(examples / "cluster.yaml")
    manifest = "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {{name: {}}}\n"
    manifest += "spec: {{address: {}, protocol: layer2, interface: eth0}}\n"
    cases = [
        ("vip", "172.16.236.95-172.16.236.105", 1, "[address-kube-vip]"),
        ("svc", "10.233.1.0/28", 1, "[address-cluster-network]"),
        ("eip-pool", "172.16.236.40-172.16.236.60", 0, "allowed"),
    ]
    for name, address, exit_code, says in cases:
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest.format(name, address))
        code, out, _ = run_cli(capsys, "check", "-f", str(path), "--cluster", cluster)
        assert (code, says in out) == (exit_code, True), out
    code, out, _ = run_cli(capsys, "audit", "--cluster", cluster)
    assert code == 0 and "0 violating" in out


def test_the_pool_subnet_rule_only_warns_and_a_policy_cannot_make_it_deny(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "rules")
    assert re.search(r"can-reach-pool-subnet +warn ", out)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  can-reach-pool-subnet: deny\n")
    code, _, err = run_cli(capsys, "rules", "--policy", str(policy))
    assert code == 2 and "can-reach-pool-subnet: this rule never denies, only warns" in err


def test_a_manifests_own_status_is_dropped_as_the_api_server_drops_it(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    # A create's status never reaches the webhook (status is a subresource): a manifest
    # listing a node's address in status.used must not hide it from address-node-ip.
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata: {name: new-pool}\n"
        "spec: {address: 172.16.236.150-172.16.236.155, protocol: bgp}\n"
        "status: {used: {172.16.236.152: shop/web}}\n"
    )
    code, out, _ = run_cli(
        capsys, "check", "-f", str(manifest), "--cluster", str(examples / "cluster.yaml")
    )
    assert code == 1
    assert "[address-node-ip]" in out and "172.16.236.152, an address of Node node1" in out


_EIP_HEAD = "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\n"
_EIP_SPEC = "spec: {address: 172.16.236.90, protocol: layer2, interface: can_reach:172.16.236.1}\n"


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ("metadata: {name: Eip_1}\n", "metadata.name 'Eip_1': the API server refuses this name"),
        ("metadata: {name: " + "a" * 254 + "}\n", "(254 characters): the API server refuses"),
        ("metadata: {name: 5}\n", "metadata.name is a number (5), not a string"),
        ("metadata: {generateName: eip-}\n", "no metadata.name: kubectl apply refuses"),
        ("metadata: null\n", "no metadata.name: kubectl apply refuses"),
        ("", "no metadata.name: kubectl apply refuses"),
        (
            "metadata:\n  name: eip-a\n  annotations:\n"
            "    eip.openelb.kubesphere.io/is-default-eip: true\n",
            "metadata.annotations['eip.openelb.kubesphere.io/is-default-eip'] is a boolean "
            "(true), not a string",
        ),
        ("metadata: {name: eip-a, annotations: [a]}\n", "metadata.annotations is a list"),
        ("metadata: {name: eip-a, labels: {team: 7}}\n", "metadata.labels['team'] is a number"),
    ],
)
def test_a_manifest_whose_metadata_the_api_server_refuses_is_bad_input(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path, metadata: str, says: str
) -> None:
    # "Eip : allowed" (exit 0) for a manifest kubectl apply then refuses: the gate passed
    # what never applies, and an unquoted is-default-eip: true was judged as no default.
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(_EIP_HEAD + metadata + _EIP_SPEC)
    cluster = str(examples / "cluster.yaml")
    for argv in (["-f", str(manifest)], ["-f", str(examples / "eip-good.yaml"),
                                         "--old", str(manifest)]):  # fmt: skip
        code, out, err = run_cli(capsys, "check", *argv, "--cluster", cluster)
        assert (code, out) == (2, ""), err
        assert err.startswith(f"eip-guard: {manifest}: ") and says in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_a_name_kubernetes_takes_is_judged(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "eip.yaml"
    for name in ("a", "0.pool-1", "a" * 253, "2024-05-01"):
        manifest.write_text(_EIP_HEAD + f"metadata: {{name: {name}}}\n" + _EIP_SPEC)
        code, out, err = run_cli(
            capsys, "check", "-f", str(manifest), "--cluster", str(examples / "cluster.yaml")
        )
        assert (code, out, err) == (0, f"Eip {name}: allowed\n", "")


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (
            "apiVersion: network.kubesphere.io/v1alpha3\nkind: Eip\n",
            "apiVersion 'network.kubesphere.io/v1alpha3': the Eip CRD serves "
            "network.kubesphere.io/v1alpha2 and network.kubesphere.io/v1alpha1 only",
        ),
        ("apiVersion: network.kubesphere.io\nkind: Eip\n", "apiVersion 'network.kubesphere.io'"),
        (
            "apiVersion: Network.kubesphere.io/v1alpha2\nkind: Eip\n",
            "not an Eip: apiVersion 'Network.kubesphere.io/v1alpha2', kind 'Eip'",
        ),
        (
            "apiVersion: network.kubesphere.io/v1alpha2\nkind: EIP\n",
            "not an Eip: apiVersion 'network.kubesphere.io/v1alpha2', kind 'EIP' (kinds are "
            "case-sensitive: write kind: Eip)",
        ),
        ("kind: Eip\n", "not an Eip: no apiVersion, kind 'Eip'"),
    ],
)
def test_a_manifest_of_no_eip_version_kubectl_knows_is_bad_input(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path, head: str, says: str
) -> None:
    # network.kubesphere.io/v1alpha3 passed as an Eip ("allowed", exit 0); kubectl apply
    # then refuses it: no matches for kind "Eip" in that version.
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(head + "metadata: {name: eip-a}\n" + _EIP_SPEC)
    code, out, err = run_cli(
        capsys, "check", "-f", str(manifest), "--cluster", str(examples / "cluster.yaml")
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"eip-guard: {manifest}: ") and says in err and err.count("\n") == 1


def test_a_snapshots_names_cannot_forge_lines_of_the_text_output(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    # A name is printed as written: a newline and an escape sequence in one made a line
    # "Eip y: allowed" (red) of their own, in a CI log or a terminal.
    snapshot = tmp_path / "forged.yaml"
    snapshot.write_text(
        "apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\n"
        'metadata: {name: "x\\n\\u001b[32mEip y: allowed\\u202e"}\n'
        "spec: {address: 10.0.0.1x, protocol: layer2, interface: eth0}\n"
    )
    code, out, err = run_cli(
        capsys, "audit", "--cluster", str(snapshot), "--cluster", str(examples / "cluster.yaml")
    )
    assert code == 1
    assert "Eip x\\n\\x1b[32mEip y: allowed\\u202e: DENIED\n" in out
    assert "Eip x\\n\\x1b[32mEip y: allowed\\u202e (spec.address): ignored" in err
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert len(out.splitlines()) == 3 and len(err.splitlines()) == 1


CALICO_POOLS = """\
apiVersion: v1
kind: List
items:
- apiVersion: crd.projectcalico.org/v1
  kind: IPPool
  metadata:
    name: default-ipv4-ippool
  spec:
    blockSize: 26
    cidr: 192.168.0.0/16
    ipipMode: Always
    natOutgoing: true
    nodeSelector: all()
- apiVersion: crd.projectcalico.org/v1
  kind: IPPool
  metadata:
    name: typo
  spec:
    cidr: 10.300.0.0/16
metadata:
  resourceVersion: ""
"""


def test_calico_pools_in_a_snapshot_deny_and_audit(
    capsys: pytest.CaptureFixture[str], examples: Path, tmp_path: Path
) -> None:
    """`kubectl get ippools.crd.projectcalico.org -o yaml` given as one more snapshot: the pod
    network calico-ipam hands out is denied as a can_reach IP, by check and by audit."""
    pools = tmp_path / "ippools.yaml"
    pools.write_text(CALICO_POOLS)
    manifest = (examples / "eip-good.yaml").read_text()
    assert "can_reach:172.16.236.1" in manifest
    eip = tmp_path / "eip.yaml"
    eip.write_text(manifest.replace("can_reach:172.16.236.1", "can_reach:192.168.3.4"))
    cluster = ["--cluster", str(examples / "cluster.yaml"), "--cluster", str(pools)]
    code, out, err = run_cli(capsys, "check", "-f", str(eip), *cluster)
    assert code == 1
    assert "[can-reach-pod-cidr]" in out
    assert "IPPool default-ipv4-ippool (spec.cidr)" in out
    assert "IPPool typo (spec.cidr): ignored '10.300.0.0/16'" in err
    code, out, _ = run_cli(capsys, "audit", *cluster, "--cluster", str(eip), "-o", "json")
    assert code == 1
    (finding,) = json.loads(out)["findings"].values()
    assert [v["rule"] for v in finding["violations"]] == ["can-reach-pod-cidr"]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = parser()
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return {"eip-guard": top, **sub.choices}


@pytest.mark.parametrize("name", list(_parsers()))
def test_no_parser_takes_an_abbreviated_flag(name: str) -> None:
    # `--clu` silently meant `--cluster`: the next flag sharing a prefix would change what an
    # old script means. Every parser, each subcommand's too, refuses abbreviations.
    assert _parsers()[name].allow_abbrev is False


@pytest.mark.parametrize(
    ("abbreviated", "unrecognized"),
    [
        (["--stri"], "--stri"),  # --strict
        (["--out", "json"], "--out json"),  # --output
        (["--kube-vip-config", "kube-system/kv"], "--kube-vip-config kube-system/kv"),
    ],
)
def test_an_abbreviated_flag_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], abbreviated: list[str], unrecognized: str
) -> None:
    examples = ROOT / "examples"
    good = [
        "check",
        "-f",
        str(examples / "eip-good.yaml"),
        "--cluster",
        str(examples / "cluster.yaml"),
    ]
    code, out, err = run_cli(capsys, *good, *abbreviated)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"eip-guard: unrecognized arguments: {unrecognized}"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["check", "-f", "eip.yaml", "--clu", "c.yaml"],
            "--clu (flags are written in full: --cluster)",
        ),
        (
            ["check", "--file", "eip.yaml", "--cluster", "c.yaml"],
            "--file (flags are written in full: --filename)",
        ),
        (["certs", "--dns", "x", "--ou", "d"], "--ou (flags are written in full: --out)"),
        (["audit", "--kubeconf"], "--kubeconf (flags are written in full: --kubeconfig)"),
    ],
)
def test_an_abbreviated_required_flag_is_named_not_said_missing(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    # argparse checks required flags first: `--clu` was answered "one of the arguments
    # --cluster --kubeconfig is required", as if the user had given none.
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"eip-guard: unrecognized arguments: {said}"


def test_a_missing_flag_is_still_said_missing(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "check", "--cluster", "c.yaml", "-o", "json")
    assert code == 2
    assert err.splitlines()[-1] == "eip-guard: the following arguments are required: -f/--filename"
