"""The README's Helm section tells the truth about the chart."""

from __future__ import annotations

import re
from typing import Any

import helm_python

from app.cli.main import parser
from tests.chart.rendering import ROOT

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
