"""`eip-guard check` and `eip-guard audit` against snapshot files or a live cluster, and
`eip-guard rules`: what they run (their flags are in check_cmd)."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.cli import live
from app.cli.flags import object_ref
from app.cli.render import dumps, printable, verdict_json, verdict_text
from app.cli.streams import output
from app.core.eips import ALLOW_RULES_ANNOTATION, GROUP, VERSIONS, Eip, is_eip, same_spec
from app.core.inventory import Inventory, Options, build, first_lines
from app.core.rules import RULES, Rule, audit, check
from app.core.verdict import Action, Policy
from app.sources.errors import InputError, shown
from app.sources.files import is_stdin, load_one, load_policy, load_snapshot
from app.sources.gc_pause import gc_paused
from app.sources.manifest import metadata_problem


def resolve_dns(name: str) -> list[str]:
    """The resolver the edge hands the core for kube-vip addresses given as DNS names."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def options(args: argparse.Namespace) -> Options:
    return Options(kube_vip_configmap=object_ref("--kube-vip-configmap", args.kube_vip_configmap))


# The flags that read a file, and read stdin when given -.
STDIN_FLAGS = (
    ("filename", "-f"),
    ("old", "--old"),
    ("cluster", "--cluster"),
    ("policy", "--policy"),
)


def stdin_once(args: argparse.Namespace) -> None:
    """``-`` (stdin) given at most once: stdin can be read once, and a second reader would
    find it empty, which says something else."""
    given = []
    for dest, flag in STDIN_FLAGS:
        value = getattr(args, dest, None)
        for one in value if isinstance(value, list) else [value]:
            if one is not None and is_stdin(one):
                given.append(flag)
    if len(given) > 1:
        raise InputError(
            f"- (stdin) given {len(given)} times ({', '.join(given)}): stdin can be read "
            "once; give the others as files"
        )


def snapshot_inventory(args: argparse.Namespace) -> Inventory:
    live.check_exclusive(args)
    opts = options(args)  # a typo said before a large snapshot is read
    if live.live_requested(args):
        return live.live_inventory(args, opts, resolve_dns)
    with gc_paused():  # a snapshot's objects all survive the build: no collection helps
        snapshot = load_snapshot(*args.cluster)
        inventory = build(snapshot.objects, opts, resolve_dns)
        notes = snapshot.notes
        # Gone before collections resume: alive, the parsed objects made the first young
        # collection walk them all (0.28 s at the xl size, a review measured).
        del snapshot
    if not notes:
        return inventory
    # What the files held but the inventory skips (an Eip of another apiVersion) joins what
    # it ignored: printed on stderr, listed under "notes" by `audit -o json`.
    return replace(inventory, notes=(*notes, *inventory.notes))


def noted_inventory(args: argparse.Namespace) -> Inventory:
    """The inventory, with what it could not read or check noted on stderr (stdout stays the
    verdict, JSON with -o json)."""
    inventory = snapshot_inventory(args)
    for line in first_lines(inventory.problems):
        print(f"eip-guard: note: {printable(line)}", file=sys.stderr)
    return inventory


def _eip(path: Path) -> Eip:
    obj = load_one(path)
    problem = _not_an_eip(obj)
    # What kubectl apply refuses, refused here: judged, an Eip without a name passed the
    # gate as "Eip : allowed", and an unquoted is-default-eip: true as no default at all.
    if problem is None:
        problem = metadata_problem(obj)
    if problem is not None:
        raise InputError(f"{shown(path)}: {problem}")
    return Eip.from_object(obj)


_SERVED = tuple(f"{GROUP}/{v}" for v in VERSIONS)  # the apiVersions the Eip CRD serves


def _not_an_eip(obj: Mapping[str, Any]) -> str | None:
    """Why ``obj`` is no Eip kubectl can apply, or None."""
    kind, version = obj.get("kind"), obj.get("apiVersion")
    if not is_eip(obj):
        given = f"apiVersion {version!r}" if version is not None else "no apiVersion"
        case = (
            " (kinds are case-sensitive: write kind: Eip)"
            if isinstance(kind, str) and kind != "Eip" and kind.lower() == "eip"
            else ""
        )
        return f"not an Eip: {given}, kind {kind!r}{case}; give one Eip ({GROUP}/{VERSIONS[0]})"
    if version not in _SERVED:
        return (
            f"apiVersion {version!r}: the Eip CRD serves {' and '.join(_SERVED)} only; kubectl "
            "apply refuses any other (no matches for kind Eip in that version)"
        )
    return None


def run_check(args: argparse.Namespace) -> int:
    stdin_once(args)
    policy = load_policy(args.policy)
    candidate = _eip(args.filename)
    old = _eip(args.old) if args.old else None
    if old is not None and old.name != candidate.name:
        raise InputError(f"--old names Eip {old.name!r}, but -f names {candidate.name!r}")
    inventory = noted_inventory(args)
    stored = inventory.eips.get(candidate.name) if old is None else None
    if stored is not None and same_spec(stored, candidate):
        # Nothing to apply (kubectl sends no request): what a gate asks is whether the
        # manifest passes, as a create. (Judged as its own update, every violation it has
        # would only warn, when the snapshot holds the manifest itself.)
        print(
            f"eip-guard: note: the cluster holds Eip {candidate.name} as written: judged as "
            "a create ('kubectl apply' would change nothing)",
            file=sys.stderr,
        )
    elif stored is not None:
        # kubectl apply of a name the cluster holds is an UPDATE, and the webhook judges it
        # as one (address-immutable, ratcheting): judged as a CREATE, a gate passed what the
        # webhook then refused.
        old = stored
        print(
            f"eip-guard: note: the cluster holds Eip {candidate.name}: judged as an update of "
            "it, as 'kubectl apply' would be (--old gives another old version)",
            file=sys.stderr,
        )
    # As the API server hands the manifest to the webhook: a create's status is dropped, an
    # update keeps the stored one (status is a subresource). A manifest's own status.used
    # would otherwise hide a node IP from address-node-ip.
    candidate = candidate._replace(
        used=old.used if old is not None else (), used_by=old.used_by if old is not None else ()
    )
    verdict = check(candidate, old, inventory, policy)
    if args.output == "json":
        output(dumps(verdict_json(verdict)))
    else:
        output(verdict_text(candidate.name, verdict))
    if not verdict.allowed:
        return 1
    return _strict_exit(args, len(verdict.warnings), inventory)


def _strict_exit(args: argparse.Namespace, warnings: int, inventory: Inventory) -> int:
    """--strict: 1 when what passed was warned about or judged without part of the cluster
    (values ignored in other objects do not count: they are not about the Eip)."""
    if not args.strict or not (warnings or inventory.gaps):
        return 0
    failing = [f"{warnings} warning(s) (as kubectl would show them)"] if warnings else []
    if inventory.gaps:
        failing.append(f"{len(inventory.gaps)} part(s) of the cluster not checked")
    print(f"eip-guard: --strict: {' and '.join(failing)}", file=sys.stderr)
    return 1


def run_audit(args: argparse.Namespace) -> int:
    stdin_once(args)
    policy = load_policy(args.policy)
    inventory = noted_inventory(args)
    verdicts = audit(inventory, policy)
    # Notes count as warnings (kubectl shows them as such, and --strict fails on them), so an
    # Eip with only a note is listed too: --strict never fails on something not shown.
    bad = {name: v for name, v in verdicts.items() if not v.allowed or v.warnings}
    if args.output == "json":
        findings = {n: verdict_json(v) for n, v in bad.items()}
        # Every problem, uncapped: a pipeline may count them (stderr shows the first ten).
        output(dumps({"eips": len(verdicts), "findings": findings, "notes": inventory.problems}))
    else:
        for name, v in bad.items():
            output(verdict_text(name, v))
        violating = sum(not v.allowed for v in verdicts.values())
        output(f"{len(verdicts)} Eip(s) audited, {violating} violating")
    if not all(v.allowed for v in verdicts.values()):
        return 1
    return _strict_exit(args, sum(len(v.warnings) for v in verdicts.values()), inventory)


def _action(rule: Rule, policy: Policy) -> str:
    action = policy.action(rule.id)
    return Action.WARN.value if rule.warns_only and action is Action.DENY else action.value


def run_rules(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    rows = [(rule.id, _action(rule, policy), rule.denies_when) for rule in RULES]
    if args.output == "json":
        listed = [
            {"id": r.id, "action": a, "deniesWhen": d, "overridable": r.overridable}
            for r, (_, a, d) in zip(RULES, rows, strict=True)
        ]
        output(dumps({"rules": listed, "allowOverrides": policy.allow_overrides}))
        return 0
    width = max(len(i) for i, _, _ in rows)
    output(f"{'RULE':<{width}}  ACTION  DENIES WHEN")
    for rule_id, action, denies_when in rows:
        output(f"{rule_id:<{width}}  {action:<6}  {denies_when}")
    overrides = "honoured" if policy.allow_overrides else "ignored (allowOverrides: false)"
    output(f"the {ALLOW_RULES_ANNOTATION} annotation on an Eip: {overrides}")
    if policy.allow_overrides:  # what OpenELB's own webhook refuses, an Eip cannot waive
        fixed = ", ".join(r.id for r in RULES if not r.overridable)
        output(f"  except for {fixed} (only the policy changes those)")
    return 0
