"""The README tells the truth: every rule is listed, and the example output is real."""

from __future__ import annotations

import json
import re

import pytest

from app.cli.main import main
from app.core.rules import RULE_IDS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_rule_is_in_the_rules_table() -> None:
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", README, flags=re.MULTILINE))
    assert listed == RULE_IDS


def test_the_check_example_is_what_check_prints(capsys: pytest.CaptureFixture[str]) -> None:
    command = "eip-guard check -f examples/eip-bad.yaml --cluster examples/cluster.yaml"
    match = re.search(re.escape(command) + r"\n```\n\n```\n(.*?)```", README, flags=re.DOTALL)
    assert match, "README shows the check example followed by its output"
    argv = command.split()[1:]
    main([a if not a.startswith("examples/") else str(ROOT / a) for a in argv])
    assert capsys.readouterr().out == match.group(1)


def test_the_policy_example_is_the_file_in_examples(capsys: pytest.CaptureFixture[str]) -> None:
    match = re.search(r"`examples/policy.yaml`\):\n\n```yaml\n(.*?)```", README, flags=re.DOTALL)
    assert match, "README shows examples/policy.yaml"
    assert match.group(1) == (ROOT / "examples" / "policy.yaml").read_text()
    main(["rules", "--policy", str(ROOT / "examples" / "policy.yaml"), "-o", "json"])
    actions = {r["id"]: r["action"] for r in json.loads(capsys.readouterr().out)["rules"]}
    assert actions["can-reach-pod-cidr"] == "warn" and actions["can-reach-kube-vip"] == "off"
