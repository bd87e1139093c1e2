"""The README's Helm section tells the truth about the chart."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import yaml

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


# A default in prose: `name` (VALUE...) where VALUE is a number or in backquotes (not `x...`).
PROSE_DEFAULT = re.compile(r"`([A-Za-z][\w.]*)` \((`[^`.]*(?:\.[^`.]+)*`|[0-9][0-9.]*)[,;)]")


def _at(tree: Any, path: str) -> Any:
    for part in path.split("."):
        assert isinstance(tree, dict) and part in tree, f"no {path} ({part})"
        tree = tree[part]
    return tree


def _in_schema(schema: dict[str, Any], path: str) -> None:
    for part in path.split("."):
        properties = schema.get("properties", {})
        assert part in properties, f"values.schema.json has no {path} ({part})"
        schema = properties[part]


def _value(text: str) -> Any:
    return text.strip("`")


def _same(actual: Any, said: str) -> bool:
    """The value values.yaml holds is the README's text, read as YAML or as a string; an image
    mapping reads as `repository:tag`, an empty tag as the chart's `<appVersion>`."""
    if isinstance(actual, dict) and "image" in actual:
        actual = actual["image"]
    if isinstance(actual, dict) and "repository" in actual:
        return said == f"{actual['repository']}:{actual['tag'] or '<appVersion>'}"
    return bool(actual == said or actual == yaml.safe_load(said))


def documented_defaults() -> list[tuple[str, str]]:
    """(key path, default) the README gives: the Values table's default column (`a.b: v`, or
    one value for every key of the row) and its parenthesised `key` (default, ...), the agent's
    keys in "In the Helm chart", the self mode's in "Certificates" and the alerts' in "Alerts"."""
    found: list[tuple[str, str]] = []
    for keys, default, what in re.findall(
        r"^\| (`[A-Za-z]+:`(?:, `[A-Za-z]+:`)*) \|\s*([^|]*?)\s*\| (.*) \|$",
        _section("Values"),
        re.M,
    ):
        tops = re.findall(r"`([A-Za-z]+):`", keys)
        pairs = re.findall(r"`([\w.]+): ([^`]*)`", default)
        for path, value in pairs:
            found.append((f"{tops[0]}.{path}", _value(value)))
        if not pairs and re.fullmatch(r"`[^`]*`", default.strip()):
            found += [(top, _value(default.strip())) for top in tops]
        if len(tops) == 1:
            found += [(f"{tops[0]}.{k}", _value(v)) for k, v in PROSE_DEFAULT.findall(what)]
    agent = re.split(r"Further keys\s+under `agent:`", _section("In the Helm chart"))[1]
    found += [(f"agent.{k}", _value(v)) for k, v in PROSE_DEFAULT.findall(agent.split("\n\n")[0])]
    certificates = _section("Certificates").split("**`self`**", 1)[1].split("\n- ", 1)[0]
    found += [(f"certificates.{k}", _value(v)) for k, v in PROSE_DEFAULT.findall(certificates)]
    alerts = _section("Alerts")
    found += [(f"metrics.prometheusRule.{k}", v) for k, v in PROSE_DEFAULT.findall(alerts)]
    return found


def test_every_default_the_readme_gives_is_in_values_and_the_schema(
    chart: helm_python.Chart,
) -> None:
    assert chart.schema is not None
    found = documented_defaults()
    assert len(found) >= 30, found
    wrong = []
    for path, value in found:
        _in_schema(chart.schema, path)
        if not _same(_at(chart.values, path), value):
            wrong.append(f"{path}: README {value!r}, values.yaml {_at(chart.values, path)!r}")
    assert not wrong, wrong


# Keys whose insides are Kubernetes' or cert-manager's own shapes, documented upstream.
UPSTREAM_SHAPES = {"resources", "issuerRef", "nodeSelector", "labels", "podAnnotations"}


def _keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        out.append(prefix + key)
        if isinstance(value, dict) and key not in UPSTREAM_SHAPES:
            out += _keys(value, f"{prefix}{key}.")
    return out


def test_every_key_of_values_yaml_is_named_in_the_helm_sections(chart: helm_python.Chart) -> None:
    helm = README.split("\n## Install with Helm\n", 1)[1].split("\n## Build the image\n", 1)[0]
    helm += _section("In the Helm chart")
    named = set(re.findall(r"`([^`]*)`", helm))
    words = {w for code in named for w in re.findall(r"[A-Za-z]+", code)}
    missing = [k for k in _keys(chart.values) if k.rsplit(".", 1)[-1] not in words]
    assert not missing, f"values.yaml keys the README's Helm sections never name: {missing}"
