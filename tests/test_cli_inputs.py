"""Bad input to every command is one line on stderr and exit 2, never a traceback; output
survives any encoding; `-` reads stdin; `certs` says how to get back a caBundle it could
not print."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import live
from app.cli.main import parser
from app.pki.certs import make_bundle, write_bundle
from app.sources.errors import InputError
from tests.conftest import EXAMPLES, ROOT
from tests.support import run_cli

Capsys = pytest.CaptureFixture[str]
CLI = [sys.executable, "-m", "app.cli.main"]
GOOD, BAD, CLUSTER = (str(EXAMPLES / n) for n in ("eip-good.yaml", "eip-bad.yaml", "cluster.yaml"))

KUBECONFIGS = {
    "not YAML": ("garbage: [\n", "not valid YAML: line 2"),
    "a list": ("[1, 2]\n", "not a kubeconfig of the expected shape"),
    "a string": ('"str"\n', "not a kubeconfig of the expected shape"),
    "not UTF-8": ("\udcff\udcfe: x\n", "not UTF-8 text (byte 0xff at offset 0)"),
    "server: 5": (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 5}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
        "users:\n- name: u\n  user: {token: abc}\n",
        "not a kubeconfig of the expected shape",
    ),
    # Said at the first request as "the API server's answer could not be read
    # (LocationParseError...)", and retried without end by serve and the agent.
    "server with a space": (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n"
        "  cluster: {server: 'https://ho st:6443'}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
        "users:\n- name: u\n  user: {token: abc}\n",
        "the server 'https://ho st:6443': a URL has no spaces",
    ),
    "server IPv6 without brackets": (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://fd00::1:6443'}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
        "users:\n- name: u\n  user: {token: abc}\n",
        "the server 'https://fd00::1:6443': an IPv6 address goes in brackets",
    ),
}


@pytest.fixture(autouse=True)
def _not_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def _tls(tmp_path: Path) -> list[str]:
    write_bundle(make_bundle(["a.svc"]), tmp_path / "tls")
    return ["--tls-cert-file", str(tmp_path / "tls/tls.crt"),
            "--tls-key-file", str(tmp_path / "tls/tls.key")]  # fmt: skip


@pytest.mark.parametrize("case", sorted(KUBECONFIGS))
@pytest.mark.parametrize("command", ["check", "audit", "serve", "agent"])
def test_a_malformed_kubeconfig_is_one_line_and_exit_2(
    capsys: Capsys, tmp_path: Path, case: str, command: str
) -> None:
    text, says = KUBECONFIGS[case]
    config = tmp_path / "kubeconfig"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    argv = {
        "check": ["check", "-f", GOOD, "--kubeconfig", str(config)],
        "audit": ["audit", "--kubeconfig", str(config)],
        "serve": ["serve", "--kubeconfig", str(config), "--host", "127.0.0.1", "--port", "0",
                  *_tls(tmp_path)],
        "agent": ["agent", "--live", "--node-name", "n1", "--kubeconfig", str(config)],
    }[command]  # fmt: skip
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    line = f"eip-guard: cannot load Kubernetes credentials from {config}: {says}"
    assert err.startswith(line) and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "-f", GOOD, "--kubeconfig", ""],
        ["audit", "--kubeconfig", " "],
        ["agent", "--live", "--node-name", "n1", "--kubeconfig", ""],
    ],
)
def test_an_empty_kubeconfig_path_is_refused_not_read_as_the_default(
    capsys: Capsys, argv: list[str]
) -> None:
    # `--kubeconfig "$KC"` with KC unset read ~/.kube/config: maybe another cluster.
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert "argument --kubeconfig: an empty path (an unset shell variable?)" in err


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("a/b/c", "the name must be a DNS-1123 subdomain"),
        ("A_B/c", "the namespace must be a DNS-1123 label"),
        ("kube-system/" + "a" * 5000, "(5012 characters): the name must be a DNS-1123"),
        ("kubevip", "expected NS/NAME, e.g. kube-system/kubevip"),
    ],
)
def test_the_kube_vip_configmap_is_checked_as_kubernetes_names(
    capsys: Capsys, value: str, says: str
) -> None:
    code, _, err = run_cli(capsys, "audit", "--cluster", CLUSTER, "--kube-vip-configmap", value)
    assert code == 2 and says in err and err.count("\n") == 1 and len(err) < 400


CONTEXTS = (
    "apiVersion: v1\nkind: Config\ncurrent-context: {current}\n"
    "clusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:9'}}\n"
    "users:\n- name: u\n  user: {{token: abc}}\ncontexts:\n"
    + "".join(f"- name: ctx-{i}\n  context: {{{{cluster: c, user: u}}}}\n" for i in range(7))
)


@pytest.mark.parametrize(
    "case",
    [
        ("", "ctx-0", "--context is empty (an unset shell variable?)"),
        ("nope", "ctx-0", 'context "nope" does not exist'),
        (None, "gone", 'the current-context "gone" does not exist: pass --context'),
        (None, "''", "no current-context is set: pass --context"),
    ],
)
@pytest.mark.parametrize("command", ["check", "audit", "serve", "agent"])
def test_an_unknown_context_is_named_with_the_contexts_the_kubeconfig_has(
    capsys: Capsys, tmp_path: Path, command: str, case: tuple[str | None, str, str]
) -> None:
    """As kubectl says `context "x" does not exist`; the library said "Invalid kube-config
    file. Expected object with name  in .../contexts list"."""
    context, current, says = case
    config = tmp_path / "kubeconfig"
    config.write_text(CONTEXTS.format(current=current))
    argv = {
        "check": ["check", "-f", GOOD, "--kubeconfig", str(config)],
        "audit": ["audit", "--kubeconfig", str(config)],
        "serve": ["serve", "--kubeconfig", str(config), "--host", "127.0.0.1", "--port", "0",
                  *_tls(tmp_path)],
        "agent": ["agent", "--live", "--node-name", "n1", "--kubeconfig", str(config)],
    }[command]  # fmt: skip
    code, out, err = run_cli(capsys, *argv, *(() if context is None else ("--context", context)))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (
        f": {says}; the kubeconfig's contexts: ctx-0, ctx-1, ctx-2, ctx-3, ctx-4 and 2 more. "
        in err
    )
    assert "Expected" not in err


def test_an_empty_listen_address_names_the_flag(capsys: Capsys, tmp_path: Path) -> None:
    # `--host "$HOST"` with HOST unset said "cannot listen on :0: Name or service not known".
    code, out, err = run_cli(capsys, "serve", "--cluster", CLUSTER, "--host", "", *_tls(tmp_path))
    assert code == 2 and out == ""
    assert "argument --host: an empty address (an unset shell variable?)" in err


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("A,,b", "--kube-vip-namespace 'A,,b': 'A' is no namespace"),
        ("a,,b", "--kube-vip-namespace 'a,,b': an empty namespace"),
        ("", "--kube-vip-namespace '': an empty namespace"),
        ("kube_system", "--kube-vip-namespace 'kube_system': 'kube_system' is no namespace"),
    ],
)
@pytest.mark.parametrize("command", ["check", "audit", "serve"])
def test_kube_vip_namespaces_are_checked_as_kubernetes_names_before_connecting(
    capsys: Capsys, tmp_path: Path, command: str, value: str, says: str
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(CONTEXTS.format(current="ctx-0"))
    argv = ["--kubeconfig", str(config), "--kube-vip-namespace", value]
    if command == "serve":  # which would serve for ever, watching: its settings say it
        args = parser().parse_args(["serve", *argv])
        with pytest.raises(InputError) as refused:
            live.live_settings(args)
        err = f"eip-guard: {refused.value}\n"
    else:  # the API server (port 9) is never reached: the names are refused first
        code, out, err = run_cli(
            capsys, *(["check", "-f", GOOD] if command == "check" else ["audit"]), *argv
        )
        assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"eip-guard: {says}"), err
    assert "DNS-1123 label" in err


def _unicode_eip(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """examples/eip-bad.yaml with ``old`` written as ``new`` (non-ASCII text)."""
    path = tmp_path / name
    path.write_text((EXAMPLES / "eip-bad.yaml").read_text().replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize("output", ["text", "json"])
def test_output_survives_a_stdout_that_cannot_spell_it(tmp_path: Path, output: str) -> None:
    """An Eip named eip-ü-☃ where stdout is ASCII: UnicodeEncodeError, exit 1, mid-verdict."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    uni = str(_unicode_eip(tmp_path, "uni.yaml", "eip-layer2", "eip-\u00fc-\u2603"))
    # The API server refuses a name that is no DNS-1123 subdomain (`check -f` too): a
    # manifest carries other text in its spec.
    spec = str(_unicode_eip(tmp_path, "uni-spec.yaml", "236.40", "236.4\u00fc\u2603"))
    for argv, said in (
        (["check", "-f", spec, "--cluster", CLUSTER], b'"can_reach:172.16.236.4\\xfc\\u2603"'),
        (["audit", "--cluster", CLUSTER, "--cluster", uni], b"Eip eip-\\xfc-\\u2603: DENIED"),
    ):
        done = subprocess.run([*CLI, *argv, "-o", output], cwd=ROOT, env=env,
                              capture_output=True, check=False)  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert b"Traceback" not in done.stderr
        if output == "json":  # ASCII already (json.dumps escapes), and valid
            report = json.loads(done.stdout)
            assert argv[0] == "check" or "eip-\u00fc-\u2603" in report["findings"]
        else:
            assert said in done.stdout
    # A bad path spelt the same way, said on stderr.
    missing = str(tmp_path / "n\u00f6.yaml")
    done = subprocess.run([*CLI, "audit", "--cluster", missing], cwd=ROOT, env=env,
                          capture_output=True, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode("ascii").endswith("n\\xf6.yaml: no such file or directory\n")


def test_dash_reads_stdin_once(tmp_path: Path) -> None:
    def run(*argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *argv], cwd=ROOT, input=stdin, capture_output=True,
                              text=True, check=False)  # fmt: skip

    # kubectl's `-f -`: the manifest from a pipe.
    done = run("check", "-f", "-", "--cluster", CLUSTER, stdin=Path(BAD).read_text())
    assert done.returncode == 1 and done.stdout.startswith("Eip eip-layer2: DENIED")
    done = run("check", "-f", GOOD, "--cluster", "-", stdin=Path(CLUSTER).read_text())
    assert done.returncode == 0 and done.stdout == "Eip eip-layer2: allowed\n"
    # `kubectl get ... -o yaml | eip-guard audit --cluster -`
    done = run("audit", "--cluster", "-", stdin=Path(CLUSTER).read_text())
    assert done.returncode == 0 and done.stdout.endswith("1 Eip(s) audited, 0 violating\n")
    # Errors name it as stdin, not as a file called "-".
    done = run("check", "-f", "-", "--cluster", CLUSTER, stdin="a: [\n")
    assert done.returncode == 2
    assert done.stderr.startswith("eip-guard: - (stdin): not valid YAML: line 2")
    # A second reader would find it empty: refused, saying why.
    done = run("check", "-f", "-", "--old", "-", "--cluster", CLUSTER, stdin="")
    assert done.returncode == 2
    assert "- (stdin) given 2 times (-f, --old): stdin can be read once" in done.stderr
    # The agent reads its snapshot again on every change.
    done = run("agent", "--cluster", "-", "--node-name", "n1", stdin="")
    assert done.returncode == 2 and "--cluster -: the agent reads its snapshot again" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "-f", "-", "--cluster", CLUSTER],
        ["check", "-f", GOOD, "--cluster", "-"],
        ["check", "-f", GOOD, "--old", "-", "--cluster", CLUSTER],
        ["audit", "--cluster", "-"],
    ],
)
@pytest.mark.parametrize("stdin", ["closed", "write-only"])
def test_a_dash_on_a_stdin_that_cannot_be_read_is_one_line(argv: list[str], stdin: str) -> None:
    # `<&-`, and `0>file` (a descriptor opened for writing only): exit 2 and why, not a
    # traceback. (`< somedir` never reaches us: CPython refuses to start, "Fatal Python
    # error: init_sys_streams: <stdin> is a directory", exit 1, before any of our code.)
    def no_stdin() -> None:
        os.close(0)

    def write_only() -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 0)

    done = subprocess.run([*CLI, *argv], cwd=ROOT, capture_output=True, text=True, check=False,
                          preexec_fn=no_stdin if stdin == "closed" else write_only)  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    expected = {
        "closed": "eip-guard: - (stdin): standard input is closed: pipe the file in\n",
        "write-only": "eip-guard: - (stdin): cannot read: Bad file descriptor\n",
    }[stdin]
    assert done.stderr.endswith(expected) and "Traceback" not in done.stderr


def test_a_cabundle_that_cannot_be_printed_is_said_with_how_to_get_it(tmp_path: Path) -> None:
    """`certs > /dev/full`: the four files are written (a rerun would need --force and so a
    new CA); the caBundle is ca.crt in base64, and the message says how to print it."""
    out = tmp_path / "c4"
    with open("/dev/full", "w") as full:
        certs = [*CLI, "certs", "--out", str(out), "--dns", "a.svc"]
        done = subprocess.run(
            certs, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, check=False
        )
    assert done.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    last = done.stderr.splitlines()[-1]
    assert last == (
        "eip-guard: the certificates are written, but the caBundle could not be printed on "
        f"stdout: No space left on device. It is {out}/ca.crt in base64: print it with "
        f"'base64 -w0 {out}/ca.crt'"
    )
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    # What the message says to run prints what `certs` prints.
    again = tmp_path / "c5"
    printed = subprocess.run([*CLI, "certs", "--out", str(again), "--dns", "a.svc"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    advised = subprocess.run(["base64", "-w0", str(again / "ca.crt")], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert (
        printed
        == advised + "\n"
        == base64.b64encode((again / "ca.crt").read_bytes()).decode() + "\n"
    )


def test_file_errors_are_clean_lines(capsys: Capsys, tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"ki\xcb\x00nd: Eip\n")
    code, _, err = run_cli(capsys, "check", "-f", str(binary), "--cluster", CLUSTER)
    assert code == 2 and err == (
        f"eip-guard: {binary}: not UTF-8 text (byte 0xcb at offset 2): give a YAML or JSON file "
        "(a binary file, or another encoding?)\n"
    )
    long = str(tmp_path / ("a" * 5000))
    code, _, err = run_cli(capsys, "check", "-f", long, "--cluster", CLUSTER)
    assert code == 2
    assert err.endswith(f" ({len(long)} characters): cannot read: File name too long\n")
    assert len(err) < 300
    code, _, err = run_cli(capsys, "audit", "--cluster", long)
    assert code == 2 and err.endswith(": cannot read: File name too long\n") and len(err) < 300
    items = tmp_path / "items.yaml"
    items.write_text("kind: List\nitems: [1]\n")
    code, _, err = run_cli(capsys, "audit", "--cluster", str(items))
    assert (
        code == 2
        and err == f"eip-guard: {items}: expected Kubernetes objects, found a number (1)\n"
    )


def test_a_file_that_cannot_be_read_is_named_once(tmp_path: Path) -> None:
    # Root reads everything: the command runs as nobody, on a file nobody may read.
    tmp_path.chmod(0o755)
    unread = tmp_path / "unread.yaml"
    unread.write_text(Path(GOOD).read_text())
    unread.chmod(0)
    code = (
        # What the command imports, imported first: nobody may not read the interpreter's.
        "import locale, os, sys\nfrom app.cli import check_run\nfrom app.cli.main import main\n"
        "if os.geteuid() == 0:\n    os.setgid(65534)\n    os.setuid(65534)\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [sys.executable, "-c", code, "check", "-f", str(unread), "--cluster", CLUSTER]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == f"eip-guard: {unread}: cannot read: Permission denied\n"


# Values an admin's hand or a broken pipeline puts where the rules read strings: YAML 1.1's
# look-alikes (dates, base 60, yes/off), numbers, nulls, text with control characters.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["172.16.236.90", "10.0.0.0/24", "1.1.1.1-1.1.1.9", "layer2", "vip", "eth0", "Eip",
         "can_reach:172.16.236.1", "can_reach:", "2024-05-01", "1:20", "off", "List", "EipList",
         "network.kubesphere.io/v1alpha2", "network.kubesphere.io/v1alpha1", "v1", "a\n\x1b[2J"]
    ),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_KINDS = st.sampled_from(["Eip", "Node", "Service", "List", "EipList"]) | _SCALARS
_EIP_VERSIONS = st.sampled_from(
    ["network.kubesphere.io/v1alpha2", "network.kubesphere.io/v1alpha1"]
)
_METADATA = st.fixed_dictionaries({"name": _SCALARS}, optional={"annotations": _VALUES})
_SPEC = st.fixed_dictionaries(
    {}, optional={k: _SCALARS for k in ("address", "protocol", "interface", "disable")}
)
_OBJECTS = st.fixed_dictionaries(
    {"apiVersion": _EIP_VERSIONS | _SCALARS, "kind": _KINDS},
    optional={
        "metadata": _METADATA | _VALUES,
        "spec": _SPEC | _VALUES,
        "status": _VALUES,
        "items": st.lists(_VALUES, max_size=2) | _VALUES,
    },
)


def _text(docs: list[object], form: str) -> str:
    if form == "json":
        return json.dumps(docs[0] if docs else None)
    text = yaml.safe_dump_all(docs)
    if form == "yaml, a key twice":  # as a hand-edited manifest has it
        text = text.replace("kind:", "kind: Eip\nkind:", 1)
    return text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(_OBJECTS | _VALUES, max_size=3),
    form=st.sampled_from(["json", "yaml", "yaml, a key twice"]),
    output=st.sampled_from(["text", "json"]),
)
def test_any_yaml_or_json_gives_a_documented_exit_and_never_a_traceback(
    capsys: Capsys, tmp_path: Path, docs: list[object], form: str, output: str
) -> None:
    path = tmp_path / ("in.json" if form == "json" else "in.yaml")
    path.write_text(_text(docs, form), encoding="utf-8")
    for argv in (
        ["check", "-f", str(path), "--cluster", CLUSTER, "-o", output],
        ["audit", "--cluster", str(path), "--cluster", CLUSTER, "-o", output],
        ["rules", "--policy", str(path), "-o", output],
    ):
        code, out, err = run_cli(capsys, *argv)  # an exception escaping main() fails here
        assert code in (0, 1, 2), (argv, err)
        if code == 2:  # bad input: one line on stderr, nothing on stdout
            assert out == "" and err.startswith("eip-guard: ") and err.count("\n") == 1, err
        elif output == "json":
            assert isinstance(json.loads(out), dict)
        else:  # one line, one finding: nothing in a name makes a line of its own
            assert out.endswith("\n") and all(line.isprintable() for line in out.splitlines())
