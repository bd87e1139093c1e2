"""`eip-guard check` / `audit` read a live cluster (kmock over real HTTP) via a kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import kmock
import pytest
import yaml

from app.cli import live
from app.cli.main import main, parser
from app.kube.settings import LiveSettings, WatchSettings
from app.sources.errors import InputError
from tests.core.objects import calico_pool, cilium_node, eip, node, service
from tests.kmock_harness import (
    CALICO_IPPOOLS,
    CILIUMNODES,
    EIPS,
    FakeApi,
    Writer,
    kubeconfig,
    running,
)
from tests.support import answering, run_cli

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _not_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def _seed(writer: Writer) -> None:
    writer.create(eip("pool", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.50"))
    writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.50",)))
    writer.create(node("n1", "10.0.0.1"))


def test_audit_reads_the_live_cluster(
    api: FakeApi, writer: Writer, tmp_path: Path, capsys: Capsys
) -> None:
    _seed(writer)
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    code, out, _ = run_cli(
        capsys, "audit", "--kubeconfig", str(config), "--context", "kmock", "-o", "json"
    )
    assert code == 1
    result = json.loads(out)
    assert result["eips"] == 1
    rules = {v["rule"] for v in result["findings"]["pool"]["violations"]}
    assert rules == {"can-reach-service-ip"}


def test_kubeconfig_without_a_file_uses_the_env_like_kubectl(
    api: FakeApi, writer: Writer, tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(writer)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", api.url)))
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(json.dumps(eip("new", "192.168.60.1", interface="can_reach:10.0.0.1")))
    code, out, _ = run_cli(capsys, "check", "-f", str(manifest), "--kubeconfig", "-o", "json")
    assert code == 1
    assert {v["rule"] for v in json.loads(out)["violations"]} == {"can-reach-node-ip"}


@pytest.mark.parametrize(
    "case",
    [
        (False, "socks5://127.0.0.1:1080", "a SOCKS proxy needs the PySocks package"),
        (False, "ftp://proxy:21", "unsupported scheme ftp"),
        (True, "http://[proxy", "is not a valid host or port"),
    ],
)
def test_a_proxy_that_cannot_be_used_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, case: tuple[bool, str, str]
) -> None:
    """A kubeconfig's proxy-url or $HTTPS_PROXY the client cannot use (SOCKS without
    PySocks, another scheme, no URL) raised from inside the client, as a traceback."""
    env, proxy, said = case
    config = kubeconfig(tmp_path / "kubeconfig", "https://api.example:6443")
    if env:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    else:
        doc = yaml.safe_load(config.read_text())
        doc["clusters"][0]["cluster"]["proxy-url"] = proxy
        config.write_text(yaml.safe_dump(doc))
    code, _, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    where = "$HTTPS_PROXY" if env else "the kubeconfig's proxy-url"
    assert f"cannot use the proxy {proxy!r} ({where}" in err and said in err


def test_a_proxy_without_a_scheme_is_http_as_kubectl_reads_it(
    api: FakeApi, writer: Writer, tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY=proxy:3128 is common, and kubectl takes it as http://proxy:3128; the
    client refused it with a traceback. kmock answers absolute-form requests as a proxy would
    forward them: the API server's name need not resolve."""
    _seed(writer)
    monkeypatch.setenv("HTTP_PROXY", api.direct_url.removeprefix("http://"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config = kubeconfig(tmp_path / "kubeconfig", "http://api.cluster.invalid")
    code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(config), "-o", "json")
    assert code == 1, err
    assert json.loads(out)["eips"] == 1


def test_snapshot_and_live_flags_exclude_each_other(
    tmp_path: Path, capsys: Capsys, examples: Path
) -> None:
    code, _, err = run_cli(
        capsys, "audit", "--cluster", str(examples / "cluster.yaml"), "--context", "prod"
    )
    assert code == 2
    assert err == (
        "eip-guard: --cluster reads a snapshot; --kubeconfig/--context read a live cluster: "
        "pick one\n"
    )


@pytest.mark.parametrize(
    ("command", "flags", "named"),
    [
        ("audit", ["--kube-vip-namespace", "kv"], "--kube-vip-namespace applies only"),
        ("serve", ["--resync-interval", "-1"], "--resync-interval applies only"),
        (
            "serve",
            ["--watch-timeout", "5", "--no-background-audit", "--audit-interval", "1"],
            "--watch-timeout, --audit-interval, --no-background-audit apply only",
        ),
    ],
)
def test_live_only_flags_with_a_snapshot_are_refused(
    capsys: Capsys, examples: Path, command: str, flags: list[str], named: str
) -> None:
    # A snapshot ignores them: refused, so a wrong value or a mode mixed up does not pass.
    code, out, err = run_cli(capsys, command, "--cluster", str(examples / "cluster.yaml"), *flags)
    assert code == 2 and out == ""
    assert err.startswith(f"eip-guard: {named} to the live cluster")
    them = "it" if "applies" in named else "them"
    assert err.endswith(f"--cluster reads a snapshot: drop {them}, or --cluster\n")


def test_live_settings_default_to_live_settings_and_check_what_is_given() -> None:
    cli = parser()
    defaults = live.live_settings(cli.parse_args(["serve", "--kubeconfig"]))
    assert defaults == LiveSettings()
    given = live.live_settings(
        cli.parse_args(
            ["serve", "--kubeconfig", "--watch-timeout", "60", "--resync-interval", "0",
             "--audit-interval", "2.5", "--no-background-audit", "--kube-vip-namespace", "a,b"]
        )
    )  # fmt: skip
    assert given == LiveSettings(
        kube_vip_namespaces=("a", "b"),
        watch=WatchSettings(timeout_seconds=60),
        coalesce=0.0,
        audit_interval=2.5,
        audit=False,
    )
    for flags, error in (
        (["--watch-timeout", "0"], "--watch-timeout 0: expected whole seconds, 1 to 86400"),
        # A read timeout past what the platform's timers take: every watch raised
        # OverflowError, and serve never became ready.
        (["--watch-timeout", "99999999999"], "--watch-timeout 99999999999: expected whole"),
        (["--audit-interval", "nan"], "--audit-interval nan: expected a finite number"),
    ):
        with pytest.raises(InputError, match=error):
            live.live_settings(cli.parse_args(["serve", "--kubeconfig", *flags]))


def test_unreadable_kubeconfig_is_one_line_not_a_traceback(tmp_path: Path, capsys: Capsys) -> None:
    code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 2 and out == ""
    assert err.startswith("eip-guard: cannot load Kubernetes credentials from ")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("how", ["--kubeconfig", "$KUBECONFIG", "dangling symlink"])
def test_a_missing_kubeconfig_is_said_to_be_missing(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A typo in the path is no broken file: the library skips a missing file and said
    "Invalid kube-config file. No configuration found"."""
    missing = tmp_path / "missing"
    if how == "dangling symlink":
        (tmp_path / "link").symlink_to(missing)
        missing = tmp_path / "link"
    if how == "$KUBECONFIG":
        monkeypatch.setenv("KUBECONFIG", str(missing))
        code, out, err = run_cli(capsys, "audit", "--kubeconfig")
    else:
        code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(missing))
    assert code == 2 and out == ""
    assert err.startswith(
        f"eip-guard: cannot load Kubernetes credentials from {missing}: No such file or directory."
    ), err


def test_missing_eip_crd_is_a_note_and_the_audit_still_runs(tmp_path: Path, capsys: Capsys) -> None:
    with running(missing=(EIPS,)) as api:
        config = kubeconfig(tmp_path / "kubeconfig", api.url)
        code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
        json_code, json_out, json_err = run_cli(
            capsys, "audit", "--kubeconfig", str(config), "-o", "json"
        )
    missing = "the Eip CRD eips.network.kubesphere.io (version v1alpha2) is not installed"
    assert code == 0
    assert out == "0 Eip(s) audited, 0 violating\n"
    assert err.count(missing) == 1  # once, as an "eip-guard: note:" line
    assert f"eip-guard: note: {missing}" in err
    # A pipeline reading JSON sees it too, with the other notes.
    assert json_code == 0 and missing in json_err
    assert any(note.startswith(missing) for note in json.loads(json_out)["notes"])


def test_forbidden_list_names_the_rbac_fix(api: FakeApi, tmp_path: Path, capsys: Capsys) -> None:
    status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "no"}
    api.call(lambda: api.km[kmock.action.LIST, kmock.resource("v1/nodes")] << 403 << status)
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    code, _, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
    assert code == 2
    assert "grant list and watch on nodes" in err and "Traceback" not in err


def test_refused_credentials_are_not_sent_to_rbac(
    api: FakeApi, tmp_path: Path, capsys: Capsys
) -> None:
    """401 is who eip-guard is (an expired or revoked token), not what it may do: granting
    RBAC, as the 403 advice says, fixes nothing."""
    status = {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "no"}
    api.call(lambda: api.km[kmock.action.LIST, kmock.resource("v1/nodes")] << 401 << status)
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    code, _, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
    assert code == 2 and "Traceback" not in err
    assert "does not accept eip-guard's credentials (401 Unauthorized)" in err
    assert "grant" not in err


def test_a_server_error_says_the_status_message(
    api: FakeApi, tmp_path: Path, capsys: Capsys
) -> None:
    """As kubectl prints "Error from server (InternalError): boom": the Status's message is
    what says what broke (an etcd timeout, a webhook, a conversion), not "500"."""
    message = "boom:  etcdserver:\nrequest timed out"  # on one line, as said
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
              "reason": "InternalError", "message": message}  # fmt: skip
    api.call(lambda: api.km[kmock.action.LIST, kmock.resource("v1/nodes")] << 500 << status)
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
    assert (code, out) == (2, "")
    assert err == (
        "eip-guard: nodes: the API answers 500 Internal Server Error: boom: etcdserver: "
        "request timed out\n"
    )


@pytest.fixture
def not_http() -> Iterator[str]:
    """A server on a random port that answers anything but HTTP (a wrong port: SSH, a
    database), then closes."""
    with answering(b"SSH-2.0-OpenSSH_9.6\r\n") as address:
        yield f"http://{address}"


def test_an_answer_that_is_not_http_names_the_server(
    not_http: str, tmp_path: Path, capsys: Capsys
) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", not_http)
    code, out, err = run_cli(capsys, "audit", "--kubeconfig", str(config))
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith(f"eip-guard: nodes: cannot reach the API server at {not_http} ("), err
    assert "BadStatusLine" in err


def test_no_source_outside_a_pod_is_a_usage_error(capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit"])
    assert exit_info.value.code == 2
    assert "one of the arguments --cluster --kubeconfig is required" in capsys.readouterr().err


def test_inside_a_pod_the_default_is_the_service_account(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No token is mounted on this machine: the in-cluster attempt must fail in one line.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    code, out, err = run_cli(capsys, "audit")
    assert code == 2 and out == ""
    assert err.startswith("eip-guard: cannot load Kubernetes credentials from the pod's service")
    assert err.count("\n") == 1


def test_check_reads_calico_pools_and_cilium_nodes_and_their_absence_is_no_note(
    tmp_path: Path, capsys: Capsys
) -> None:
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(json.dumps(eip("new", "192.168.60.1", interface="can_reach:10.20.0.9")))
    argv = ("check", "-f", str(manifest), "--kubeconfig", str(tmp_path / "kubeconfig"))
    with running() as api:
        writer = Writer(api)
        try:
            _seed(writer)
            writer.create(calico_pool("default-ipv4-ippool", "10.20.0.0/16"))
            writer.create(cilium_node("n1", cilium_host="10.30.0.1"))
        finally:
            writer.close()
        kubeconfig(tmp_path / "kubeconfig", api.url)
        code, out, _ = run_cli(capsys, *argv, "-o", "json")
        assert code == 1
        (violation,) = json.loads(out)["violations"]
        assert violation["rule"] == "can-reach-pod-cidr"
        assert "IPPool default-ipv4-ippool (spec.cidr)" in violation["message"]
    with running(missing=(CALICO_IPPOOLS, CILIUMNODES)) as api:
        writer = Writer(api)
        try:
            _seed(writer)
        finally:
            writer.close()
        kubeconfig(tmp_path / "kubeconfig", api.url)
        code, out, err = run_cli(capsys, *argv)
    assert code == 0, out
    assert err == ""  # no Calico, no Cilium: nothing to say


def test_check_with_a_forbidden_optional_source_says_not_checked(
    api: FakeApi, writer: Writer, tmp_path: Path, capsys: Capsys
) -> None:
    """A user or service account without the ippools grant: check and audit go on without
    the IPPools, saying so, as live mode does (exit 2 refused the whole cluster)."""
    status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "no"}
    api.call(lambda: api.km[kmock.action.LIST, kmock.resource(CALICO_IPPOOLS)] << 403 << status)
    _seed(writer)
    writer.create(calico_pool("default-ipv4-ippool", "10.20.0.0/16"))
    manifest = tmp_path / "eip.yaml"
    manifest.write_text(json.dumps(eip("new", "192.168.60.1", interface="can_reach:10.20.0.9")))
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    argv = ("check", "-f", str(manifest), "--kubeconfig", str(config))
    gap = (
        "not checked: pod ranges in Calico IPPools "
        "(RBAC: grant list and watch on ippools.crd.projectcalico.org)"
    )
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and "Traceback" not in err
    assert f"eip-guard: note: {gap}" in err
    assert f"eip-guard: {gap}" in out  # the verdict's warning
    code, _, _ = run_cli(capsys, *argv, "--strict")
    assert code == 1  # --strict fails on what was not checked
