"""`eip-guard check` / `audit` end to end on the example snapshot, through main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_331_mistake_is_denied(capsys: pytest.CaptureFixture[str], examples: Path) -> None:
    code, out, _ = run(
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
    code, out, _ = run(
        capsys, "check", "-f", str(examples / "eip-good.yaml"),
        "--cluster", str(examples / "cluster.yaml"), "-o", "json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {"allowed": True, "violations": [], "warnings": []}
