"""`eip-guard agent` and `resolve`: bad input is one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.agent.runner import SnapshotSource, SourceError
from app.cli.flags import server_url
from app.cli.main import parser
from app.kube.agent_api import AgentApi, KubeError, make_client
from tests.support import answering, run_cli


def test_a_missing_snapshot_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "agent", "--cluster", str(tmp_path / "nope.yaml"),
                       "--node-name", "n1")  # fmt: skip
    assert code == 2
    assert "nope.yaml" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_a_broken_snapshot_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    code, _, err = run_cli(capsys, "agent", "--cluster", str(bad), "--node-name", "n1")
    assert code == 2 and "bad.yaml: not valid YAML" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval 0.0: expected a finite number of seconds, at least"),
        (["--interval", "nan"], "--interval nan: expected a finite number of seconds, at least"),
        # Past what the platform's timers take, a wait raised OverflowError after one tick.
        (
            ["--interval", "1e10"],
            "--interval 10000000000.0: expected a finite number of seconds, at least 0.1, at "
            "most 86400",
        ),
        (["--live", "--server", "api:6443"], "expected an http:// or https:// URL with a host"),
        (["--live", "--server", "https://api:65536"], "'https://api:65536': Port out of range"),
        # A traceback (ValueError from urlsplit and ipaddress) before, exit 1.
        (["--live", "--server", "http://[::1"], "--server 'http://[::1': Invalid IPv6 URL"),
        (["--live", "--server", "http://[zz]:80"], "'zz' does not appear to be an IPv4 or"),
        # Each of these passed, and the agent ran, logging "cannot reach the API server
        # (LocationParseError...)" or resolving the wrong host every tick, instead of exiting.
        (["--live", "--server", "http://ho st:1"], "'http://ho st:1': a URL has no spaces"),
        (["--live", "--server", " http://api:1"], "a URL has no spaces or control characters"),
        (["--live", "--server", "http://api/a b"], "a URL has no spaces or control characters"),
        (["--live", "--server", "http://api:0"], "port 0 is no port to connect to"),
        (["--live", "--server", "http://fe80::1"], "an IPv6 address goes in brackets"),
        (["--live", "--server", "http://::1:8001"], "an IPv6 address goes in brackets"),
        (["--live", "--server", "http://a\\b:1"], "'a\\\\b' is not a host name or IP address"),
        (["--live", "--server", "http://api:1/?watch=1"], "a ?query or #fragment would end"),
        (["--live", "--server", "http://u:p@api:1"], "never sends a user:password@ of the URL"),
        (["--live", "--server", "ftp://api:1"], "'ftp://api:1': expected an http:// or https://"),
        (["--live", "--lease-renew", "6"], "must be under half the Lease duration (6 s)"),
        (["--live", "--lease-renew", "4"], "must be under half the Lease duration (6 s)"),
        # Not "the renew interval (-1 s) must be under half the Lease duration".
        (["--live", "--lease-renew", "-1"], "--lease-renew -1.0: expected a finite number of"),
        (["--live", "--lease-renew", "nan"], "--lease-renew nan: expected a finite number of"),
        (["--live", "--lease-duration", "0"], "--lease-duration 0: expected whole seconds, 1"),
        # An empty $POD_NAMESPACE or `--namespace "$NS"` unset named no namespace: every
        # Lease call went to the cluster-wide path, which a real API server refuses (405, or
        # 403 without a ClusterRole), logged as "create Lease /eip-guard-agent-n1".
        (["--live", "--namespace", ""], "--namespace '': expected a namespace's name"),
        (["--live", "--namespace", "EIP_Guard"], "--namespace 'EIP_Guard': expected a name"),
        # No Node is named so: the agent answered for nothing without a word, and a newline
        # forged log lines ("eip-guard agent [n1\nannounce ...]").
        (["--node-name", " n1"], "--node-name ' n1': expected a Node's name, a DNS-1123"),
        (["--node-name", "Node1"], "--node-name 'Node1': expected a Node's name"),
        (["--node-name", "n1\nannounce 10.0.0.1"], "--node-name 'n1\\nannounce 10.0.0.1'"),
        (["--node-name", "\udcff"], "--node-name '\\udcff': expected a Node's name"),
        (["--node-name", "a" * 254], "expected a Node's name, a DNS-1123 subdomain (at most 253"),
        # Looked without a pause: a core burnt.
        (
            ["--interval", "1e-9"],
            "--interval 1e-09: expected a finite number of seconds, at least 0.1",
        ),
    ],
)
def test_bad_settings_are_exit_2(
    capsys: pytest.CaptureFixture[str], examples: Path, argv: list[str], message: str
) -> None:
    source = [] if "--live" in argv else ["--cluster", str(examples / "cluster.yaml")]
    code, _, err = run_cli(capsys, "agent", *source, "--node-name", "n1", "--server",
                       "http://127.0.0.1:9", *argv)  # fmt: skip
    assert code == 2
    assert message in err


def test_a_node_name_is_required(
    capsys: pytest.CaptureFixture[str], examples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    code, _, err = run_cli(capsys, "agent", "--cluster", str(examples / "cluster.yaml"))
    assert code == 2 and "--node-name is required" in err


def test_static_and_live_exclude_each_other(
    capsys: pytest.CaptureFixture[str], examples: Path
) -> None:
    code, _, err = run_cli(capsys, "agent", "--cluster", str(examples / "cluster.yaml"), "--live",
                       "--node-name", "n1")  # fmt: skip
    assert code == 2 and "not allowed with argument" in err


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("can_reach:10.0.0.0/24", "'10.0.0.0/24' is a CIDR"),
        ("can_reach:127.0.0.1", "127.0.0.1 is a loopback address"),
        # Bytes that are no UTF-8, as a shell hands them over: UnicodeEncodeError before.
        (
            "\udcff\udcfe",
            "'\\udcff\\udcfe' cannot be a NIC name: it holds bytes that are not UTF-8 text",
        ),
        # What Linux refuses in a NIC name: exit 2 (wrong anywhere), not 1 (not on this node).
        (" eth0", "' eth0' cannot be a NIC name: Linux refuses whitespace (' ') in one"),
        ("a/b", "'a/b' cannot be a NIC name: Linux refuses '/' in one"),
        ("../x", "'../x' cannot be a NIC name: Linux refuses '/' in one"),
        ("..", "'..' cannot be a NIC name: Linux refuses '.' and '..'"),
        ("eth\x01", "'eth\\x01' cannot be a NIC name: it holds the control character"),
        ("a-nic-name-of-16b", "'a-nic-name-of-16b' cannot be a NIC name: Linux allows 15"),
        ("", "spec.interface is empty"),
    ],
)
@pytest.mark.parametrize("output", ["text", "json"])
def test_resolve_says_a_bad_spec_in_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str], spec: str, says: str, output: str
) -> None:
    code, out, err = run_cli(capsys, "resolve", spec, "-o", output)
    assert code == 2 and out == ""
    assert err.startswith(f"eip-guard: {says}") and err.count("\n") == 1, err


def test_resolve_says_route_get_was_not_asked_for_a_nic_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "resolve", "no-such-nic0")
    assert code == 1
    assert out.splitlines() == [
        "eip-guard picks:   (none)  (no NIC named 'no-such-nic0' on this node (it has: "
        + out.split("(it has: ")[1].split("\n")[0],
        "ip route get says: (not asked)  (OpenELB uses a NIC name as given)",
    ]
    code, out, _ = run_cli(capsys, "resolve", "no-such-nic0", "-o", "json")
    assert json.loads(out)["ip_route_get"] == {
        "nic": None,
        "why": "not asked: OpenELB uses a NIC name as given, with no route lookup",
    }


def test_a_snapshot_that_turns_into_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    # Opening a FIFO waits for a writer: the agent stopped ticking, answering and logging,
    # and ignored SIGTERM. It is refused, and the last view kept (SourceError).
    snap = tmp_path / "cluster.json"
    snap.write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    source = SnapshotSource([snap], "n1", None)
    assert source.objects() == []
    snap.unlink()
    os.mkfifo(snap)
    with pytest.raises(SourceError, match=r"cluster\.json: not a regular file"):
        source.objects()


def _listing(*nodes: str) -> str:
    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in nodes]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_a_rewrite_that_keeps_the_mtime_is_read_again(tmp_path: Path) -> None:
    # Written within one timestamp tick of the last read, or with the mtime put back (cp -p,
    # rsync -t, touch -r), the snapshot kept its mtime: the agent went on with the old one.
    snap = tmp_path / "cluster.json"
    snap.write_text(_listing("n1"))
    source = SnapshotSource([snap], "n1", None)
    assert [o["metadata"]["name"] for o in source.objects()] == ["n1"]
    before = snap.stat()
    snap.write_text(_listing("n1", "n2"))  # in place: the same inode, another size
    os.utime(snap, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert snap.stat().st_mtime_ns == before.st_mtime_ns
    assert [o["metadata"]["name"] for o in source.objects()] == ["n1", "n2"]
    before = snap.stat()
    tmp = tmp_path / "cluster.tmp"
    tmp.write_text(_listing("n1", "n3"))  # the same size, renamed over: another inode
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    tmp.replace(snap)
    assert (snap.stat().st_mtime_ns, snap.stat().st_size) == (before.st_mtime_ns, before.st_size)
    assert [o["metadata"]["name"] for o in source.objects()] == ["n1", "n3"]
    same = source.objects()
    assert source.objects() is same  # unchanged: the same objects, no view made again


def test_the_agent_is_report_only_unless_told_to_speak() -> None:
    # A root user running the README's command must not start answering ARP/NDP beside
    # OpenELB's speaker (two MACs for one IP): speaking is asked for, as the chart asks.
    args = parser().parse_args(["agent", "--cluster", "c.yaml", "--node-name", "n1"])
    assert args.speaker == "off"
    speaking = parser().parse_args(["agent", "--live", "--node-name", "n1", "--speaker", "on"])
    assert speaking.speaker == "on"


def test_a_server_url_loses_its_trailing_slash() -> None:
    # The client appends "/apis/..." to the URL as is: "http://127.0.0.1:8001//apis/...".
    assert server_url("--server", "http://127.0.0.1:8001/") == "http://127.0.0.1:8001"
    assert server_url("--server", "https://[fd00::1]:6443/k8s/") == "https://[fd00::1]:6443/k8s"


def test_an_api_that_is_no_api_server_is_named() -> None:
    # A bare ProtocolError carries no host: "cannot reach the API server (ProtocolError...)".
    with answering(b"SSH-2.0-OpenSSH_9.6\r\n") as where:
        api = AgentApi(make_client(server=f"http://{where}"), "eip-guard")
        with pytest.raises(KubeError) as raised:
            api.list_leases()
    assert f"cannot reach the API server at http://{where} (ProtocolError" in str(raised.value)
