"""The README's Helm section tells the truth about the chart."""

from __future__ import annotations

import re
from typing import Any

import helm_python

from app.cli.main import parser
from tests.chart.rendering import CHART, ROOT

README = (ROOT / "README.md").read_text()


def test_every_top_level_value_is_in_the_values_table(chart: helm_python.Chart) -> None:
    section = README.split("### Values", 1)[1].split("\n### ", 1)[0]
    listed = {
        key
        for cell in re.findall(r"^\| ([^|]+) \|", section, re.M)
        for key in re.findall(r"`([A-Za-z]+):`", cell)
    }
    assert set(chart.values) <= listed, sorted(set(chart.values) - listed)


def test_the_documented_serve_flags_exist() -> None:
    section = README.split("### Certificates", 1)[1].split("\n### ", 1)[0]
    flags = set(re.findall(r"(--[a-z-]+)", section))
    known = set(serve_options())
    assert flags and flags <= known, sorted(flags - known)


def serve_options() -> list[str]:
    """Every option string `eip-guard serve` accepts."""
    sub: Any = next(a for a in parser()._actions if a.dest == "command")
    return [o for a in sub.choices["serve"]._actions for o in a.option_strings]


def _section(title: str) -> str:
    return README.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_the_values_sizing_comment_is_the_readme_table() -> None:
    # The resident sizes of README's Sizing table, and its growth beyond them.
    sizing = _section("Sizing")
    sizes = re.findall(r"^\|.*\| ([0-9][0-9-]*) MB \|$", sizing, re.M)
    growth = re.findall(r"about ([0-9]+) MB per 1,000 Services", sizing)
    assert len(sizes) == 4 and len(growth) == 1
    values = (CHART / "values.yaml").read_text()
    comment = re.search(r"((?:^#.*\n)+)^resources:", values, re.M)
    assert comment is not None
    assert re.findall(r"([0-9][0-9-]*) MB", comment.group(1)) == sizes + growth


def test_the_agent_timings_are_described_as_the_readme_says(chart: helm_python.Chart) -> None:
    assert chart.schema is not None
    agent = chart.schema["properties"]["agent"]["properties"]
    defaults = chart.values["agent"]
    # README, Failover: the Lease duration plus one renew interval plus one second.
    failover = defaults["leaseDurationSeconds"] + defaults["leaseRenewSeconds"] + 1
    said = f"plus one renew interval plus one second ({failover:g} s by default)"
    assert said in _section("Live mode")
    assert said in agent["leaseDurationSeconds"]["description"]
    # README, agent Limits: the kernel sends only the addresses of the node's own NICs.
    assert "the addresses of the node's own NICs" in _section("Limits")
    assert "own NICs" in agent["intervalSeconds"]["description"]
