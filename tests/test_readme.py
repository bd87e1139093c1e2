"""The README tells the truth: every rule is listed, and the example output is real."""

from __future__ import annotations

import argparse
import json
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.agent.health import Status
from app.agent.probes import StatusMetrics
from app.cli.main import main, parser
from app.cli.serve_tls import Tls, register_metrics
from app.core.rules import RULE_IDS
from app.kube.metrics import AuditMetrics, KubeMetrics
from app.pki.hot_tls import HotContext
from app.webhook.metrics import Metrics
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


# --- Links, flags, defaults and metrics: what the README names, the program has. ------------

# What the README documents of the program (the Performance section's numbers are the bench's).
DOCUMENTED = README.split("\n## Performance\n", 1)[0]
VALUE = re.compile(r"[0-9][0-9.]*")  # a value in a synopsis that claims a default, not a NAME


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def code_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    lines: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if lines is not None:
                blocks.append("\n".join(lines))
            lines = None if lines is not None else []
        elif lines is not None:
            lines.append(line)
    return blocks


def headings(text: str) -> list[str]:
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"^#{1,6} (.+)$", outside, flags=re.M)


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def synopses() -> list[tuple[str, str]]:
    """(command, text) of every `eip-guard COMMAND ...` line in the README's code blocks, with
    the lines that continue it (indented, or after a trailing backslash)."""
    found: list[tuple[str, str]] = []
    for block in code_blocks(DOCUMENTED):
        going = False  # the line before began or continued a synopsis
        for line in block.splitlines():
            start = re.match(r"eip-guard ([a-z]+|--[a-z]+)(?!\S)(.*)", line)
            if start:
                found.append((start.group(1), start.group(2)))
            elif going and line.startswith(" "):
                found[-1] = (found[-1][0], found[-1][1] + " " + line.strip())
            going = bool(start) or (going and line.startswith(" "))
    return found


def options(command: str) -> dict[str, argparse.Action]:
    p = parser() if command.startswith("-") else commands()[command]
    return {o: a for a in p._actions for o in a.option_strings}


def test_every_in_page_link_resolves_to_a_heading() -> None:
    anchors: set[str] = set()
    for heading in headings(README):
        anchor = github_anchor(heading)
        n = sum(1 for a in anchors if a == anchor or re.fullmatch(re.escape(anchor) + r"-\d+", a))
        anchors.add(f"{anchor}-{n}" if n else anchor)
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links <= anchors, sorted(links - anchors)


def test_every_flag_of_a_synopsis_is_a_flag_of_that_command() -> None:
    found = synopses()
    assert {c for c, _ in found} >= {"check", "audit", "rules", "serve", "certs", "resolve"}
    assert {c for c, _ in found} >= {"agent", "--version"}
    for command, text in found:
        flags = re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", text)
        if command.startswith("-"):
            flags.append(command)
        known = options(command)
        assert set(flags) <= set(known), (command, sorted(set(flags) - set(known)))


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help(action: argparse.Action) -> str:
    return " ".join((action.help or "").split())


def _claims() -> list[tuple[str, str, str]]:
    """(command, flag, default) the README claims: `[--flag VALUE]` in a synopsis, in the
    serve flags of Certificates, and the Default column of live mode's flags table."""
    claims = [
        (command, flag, value)
        for command, text in synopses()
        for flag, value in re.findall(r"\[(--[a-z-]+) ([^]\s|]+)\]", text)
        if VALUE.fullmatch(value)
    ]
    certificates = DOCUMENTED.split("`eip-guard serve` flags for this:", 1)[1].split("\n\n")[0]
    claims += [
        ("serve", flag, value)
        for flag, value in re.findall(r"\[(--[a-z-]+) ([^]\s|]+)\]", certificates)
        if VALUE.fullmatch(value)
    ]
    live = DOCUMENTED.split("**Flags of live mode**", 1)[1].split("\n\n", 2)[1]
    claims += [
        ("serve", flag, value)
        for flag, value in re.findall(r"^\| `(--[a-z-]+)[^`]*` \| `?([^|`]+?)`? \|", live, re.M)
        if VALUE.fullmatch(value) or value == "kube-system"
    ]
    return claims


def test_every_default_the_readme_gives_is_the_programs_and_its_help_says_so() -> None:
    claims = _claims()
    assert len(claims) >= 10, claims
    for command, flag, value in claims:
        action = options(command)[flag]
        if action.default is not None:
            assert _text(action.default) == value, (command, flag, action.default, value)
        said = re.search(r"default:? ([^;),]+)", _help(action))
        assert said and value in said.group(1).split(), (
            f"eip-guard {command} --help does not give {flag} the default the README gives "
            f"({value}): {_help(action)!r}"
        )


def exported() -> dict[str, tuple[str, ...]]:
    """Every metric the webhook, live mode and the agent export, as scraped (counters with
    `_total`), with its label names: each labelled series made to exist once."""
    out: dict[str, tuple[str, ...]] = {}
    for family in scraped().collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        out[name] = tuple(sorted(labels))
    return out


def scraped() -> CollectorRegistry:
    """A registry with every metric of the webhook, live mode and the agent, each labelled
    series made to exist once."""
    registry = CollectorRegistry(auto_describe=True)
    webhook = Metrics(registry)
    webhook.decisions.record("CREATE", "denied", 0.001, ["can-reach-in-eip"], [])
    webhook.rejected.labels("400").inc()
    webhook.closed("head_timeout")
    register_metrics(registry, Tls(HotContext()))
    KubeMetrics(registry).source("nodes")
    AuditMetrics(registry)
    status = Status(0.0, 0.5, announced={"eth0": 1}, drops={"NOT_ANNOUNCED": 1})
    registry.register(StatusMetrics(lambda: status))
    return registry


def test_every_metric_the_readme_names_is_exported_and_the_reverse() -> None:
    named = set(re.findall(r"\beip_guard_[a-z_]+[a-z]", DOCUMENTED))
    have = exported()
    assert named == set(have), (
        f"named in the README, not exported: {sorted(named - set(have))}; "
        f"exported, not in the README: {sorted(set(have) - named)}"
    )


def test_every_series_scraped_is_one_the_readme_names() -> None:
    # prometheus_client added a `<counter>_created` gauge per counter series (seven
    # counters), which no table names: a scrape holds the named metrics and nothing else.
    named = set(re.findall(r"\beip_guard_[a-z_]+[a-z]", DOCUMENTED))
    text = generate_latest(scraped()).decode()
    series = set(re.findall(r"^(eip_guard_[a-z_]+)", text, re.M))
    histograms = {f"{n}{end}" for n in named for end in ("_bucket", "_sum", "_count")}
    assert series - histograms <= named, sorted(series - histograms - named)


def test_the_labels_the_readme_tables_give_are_the_metrics() -> None:
    have = exported()
    rows = re.findall(r"^ *\| `(eip_guard_[^|]*)\| ([^|]*)\|", DOCUMENTED, re.M)
    assert len(rows) >= 25, rows
    for cell, second in rows:
        for name, braces in re.findall(r"`?(eip_guard_[a-z_]+)(\{[a-z_,]+\})?", cell):
            said = braces.strip("{}").split(",") if braces else re.findall(r"`([a-z_]+)`", second)
            assert tuple(sorted(said)) == have[name], (name, said, have[name])


# --- Every flag of a command is named where the README documents that command. -------------

# Where the README documents each command (headings; a section runs to the next heading of its
# level or above). `serve` takes its TLS flags in Certificates, live flags in Live mode.
DOCUMENTED_IN = {
    "check": ("## Check an Eip before you apply it", "## Live mode: watching the cluster"),
    "audit": ("## Check an Eip before you apply it", "## Live mode: watching the cluster"),
    "rules": ("## Check an Eip before you apply it", "## Rules"),
    "serve": (
        "## The admission webhook",
        "## Install with Helm",
        "## Live mode: watching the cluster",
    ),
    "certs": ("### `eip-guard certs`",),
    "resolve": ("### Which NIC: `eip-guard resolve`",),
    "agent": ("## Node agent",),
}


def section(heading: str) -> str:
    level = heading.split(" ", 1)[0]
    text = DOCUMENTED.split(f"\n{heading}\n", 1)[1]
    ends = [f"\n{'#' * n} " for n in range(1, len(level) + 1)]
    return text[: min([len(text)] + [text.find(e) for e in ends if e in text])]


def undocumented(parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """`command --flag` for each option (none of whose spellings the sections of its command
    name), `-h` aside."""
    missing = []
    for command, p in parsers.items():
        text = "".join(section(h) for h in DOCUMENTED_IN[command])
        for action in p._actions:
            spellings = [o for o in action.option_strings if o not in ("-h", "--help")]
            named = (re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text) for o in spellings)
            if spellings and not any(named):
                missing.append(f"{command} {spellings[-1]}")
    return missing


def test_every_flag_of_every_command_is_named_where_the_readme_documents_it() -> None:
    assert set(commands()) == set(DOCUMENTED_IN)
    assert undocumented(commands()) == []


def test_a_flag_the_readme_does_not_name_is_found() -> None:
    parsers = commands()
    parsers["resolve"].add_argument("--table", help="a flag added, and not documented")
    parsers["serve"].add_argument("--members", help="named in the README, for `agent` only")
    assert undocumented(parsers) == ["serve --members", "resolve --table"]


@pytest.mark.parametrize("command", sorted(DOCUMENTED_IN))
def test_every_commands_help_lists_its_exit_codes(command: str) -> None:
    # The README (Check an Eip): `eip-guard COMMAND --help` lists the exit codes too.
    assert "Exit codes: 0 " in " ".join(commands()[command].format_help().split())
