"""`eip-guard agent` and `resolve`: bad input is one line and exit 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.agent.runner import SnapshotSource, SourceError
from tests.support import run_cli


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
        (["--interval", "0"], "--interval 0.0: expected a finite number of seconds, above 0"),
        (["--interval", "nan"], "--interval nan: expected a finite number of seconds, above 0"),
        # Past what the platform's timers take, a wait raised OverflowError after one tick.
        (
            ["--interval", "1e10"],
            "--interval 10000000000.0: expected a finite number of seconds, above 0, at most 86400",
        ),
        (["--live", "--server", "api:6443"], "expected an http:// or https:// URL with a host"),
        (["--live", "--server", "https://api:65536"], "'https://api:65536': Port out of range"),
        (["--live", "--lease-renew", "6"], "must be under half the Lease duration (6 s)"),
        (["--live", "--lease-renew", "4"], "must be under half the Lease duration (6 s)"),
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


def test_resolve_rejects_a_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "resolve", "can_reach:10.0.0.0/24", "-o", "json")
    assert code == 2
    assert "is a CIDR" in out


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
