"""The judgement: :func:`check` runs every rule on a review and shapes what they found by
the policy, ratcheting (what the old object already broke only warns) and the Eip's
overrides; ``audit`` judges every stored Eip as if created now."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.core.addresses import key_or_none, shown
from app.core.eips import ALLOW_RULES_ANNOTATION, Eip
from app.core.interfaces import CanReach
from app.core.inventory import Inventory, first_lines
from app.core.rules.can_reach import can_reach_rules
from app.core.rules.catalog import NOT_OVERRIDABLE, RULE_IDS, WARNS_ONLY
from app.core.rules.pools import address_rules
from app.core.rules.review import MAX_NAMED, Review, some_of
from app.core.rules.spec import address_immutable, default_unique, interface_required, spec_schema
from app.core.verdict import WARNING_LIMIT, Action, Operation, Policy, Verdict, Violation

DEFAULT_POLICY = Policy()
ALLOWED = Verdict(True)


RULE_FUNCTIONS: tuple[Callable[[Review], Iterable[Violation]], ...] = (
    spec_schema,
    address_rules,
    interface_required,
    can_reach_rules,
    default_unique,
)


def _violations(review: Review) -> list[Violation]:
    found = [v for fn in RULE_FUNCTIONS for v in fn(review)]
    if review.operation is Operation.UPDATE:
        found.extend(address_immutable(review))
    return found


def check(
    candidate: Eip,
    old: Eip | None,
    inventory: Inventory,
    policy: Policy = DEFAULT_POLICY,
    operation: Operation | None = None,
) -> Verdict:
    """The judgement: every violation, shaped by policy, ratcheting and overrides."""
    if operation is None:
        operation = Operation.UPDATE if old is not None else Operation.CREATE
    if operation is Operation.DELETE:
        gone = old or candidate
        return Verdict(True, notes=in_use_notes(gone)) if gone.used else Verdict(True)

    schema_on = policy.action("spec-schema") is not Action.OFF
    found = _violations(Review(candidate, old, inventory, operation, schema_on))
    if not found and not candidate.allow_rules and not inventory.gaps:
        return ALLOWED  # the usual answer, with nothing to note: spare the loop below
    # Ratcheting: what the old object already broke, on a field left as it was, only warns.
    # An advisory violation broke nothing (can_reach on a bgp Eip is never used): turning
    # that Eip to layer2 must be judged as a create would be (openelb#331's trap).
    before: set[tuple[str, str, str]] = set()
    if old is not None:
        before = {
            (v.rule, v.field, v.value)
            for v in _violations(Review(old, None, inventory, Operation.CREATE, schema_on))
            if not v.advisory
        }
    overrides = candidate.allow_rules if policy.allow_overrides else ()
    denied: list[Violation] = []
    warned: list[Violation] = []
    notes: list[str] = []
    for v in found:
        action = policy.action(v.rule)
        if action is Action.OFF:
            continue
        if action is Action.DENY:
            if (
                v.advisory
                or v.rule in WARNS_ONLY
                or (before and (v.rule, v.field, v.value) in before)
            ):
                action = Action.WARN
            elif v.rule in overrides:
                if not may_override(v.rule, candidate):
                    notes.append(_NO_OVERRIDE.format(v.rule))
                else:
                    notes.append(
                        f"eip-guard: {ALLOW_RULES_ANNOTATION} turned {v.rule} into a warning"
                    )
                    action = Action.WARN
        (denied if action is Action.DENY else warned).append(v)
    if candidate.allow_rules:
        unknown = sorted(set(candidate.allow_rules) - RULE_IDS)
        if unknown:
            what = f"unknown rule id(s) in {ALLOW_RULES_ANNOTATION}: {some_of(unknown)}"
            notes.append(f"eip-guard: {what}")
        if not policy.allow_overrides:
            notes.append(f"eip-guard: the policy does not allow {ALLOW_RULES_ANNOTATION}")
        else:  # said whether or not the rule is broken now: the annotation cannot mean it
            notes += [_NO_OVERRIDE.format(r) for r in sorted(overrides) if r in NOT_OVERRIDABLE]
    if inventory.gaps and (
        candidate.address is not None or isinstance(candidate.interface, CanReach)
    ):
        # Both the pool (node IPs, kube-vip VIPs, Service and pod ranges in it) and a
        # can_reach IP are judged against the cluster: what is missing is said for either.
        # One note each: a kubectl warning keeps 120 characters, and gaps come in any number.
        notes += [f"eip-guard: not checked: {g}" for g in first_lines(inventory.gaps, MAX_NAMED)]
    unique_notes = tuple(dict.fromkeys(notes)) if notes else ()
    return Verdict(not denied, tuple(denied), tuple(warned), unique_notes)


_NO_OVERRIDE = "eip-guard: {} cannot be overridden by " + ALLOW_RULES_ANNOTATION


def may_override(rule: str, candidate: Eip) -> bool:
    """Whether the allow-rules annotation may turn ``rule`` into a warning for ``candidate``:
    not what OpenELB's own webhook refuses whatever the annotation (NOT_OVERRIDABLE, and an
    address OpenELB cannot read at all)."""
    return rule not in NOT_OVERRIDABLE and not (
        rule == "address-syntax" and candidate.address is None
    )


def in_use_notes(gone: Eip) -> tuple[str, ...]:
    """What deleting an Eip whose status.used is not empty does, in two kubectl warnings
    (each within WARNING_LIMIT): what to do, then which IPs go to which Services (a few, and
    how many more)."""
    name = shown(gone.name, 28)
    count = len(gone.used)
    pairs = sorted(
        zip(gone.used, gone.used_by or ("",) * count, strict=False),
        key=lambda pair: (key_or_none(pair[0]) is None, key_or_none(pair[0]) or 0, pair[0]),
    )
    items = [
        f"{shown(ip, 40)} to {shown(by.replace(';', ', '), 48)}" if by else shown(ip, 40)
        for ip, by in pairs[:MAX_NAMED]
    ]
    listed = f"eip-guard: Eip {name} hands out "
    text = ""
    for shown_count in range(len(items), 0, -1):  # as many as fit one warning
        more = count - shown_count
        text = listed + ", ".join(items[:shown_count]) + (f" and {more} more" if more else "")
        if len(text) <= WARNING_LIMIT:
            break
    advice = (
        f"eip-guard: Eip {name}'s Services lose their IPs if it goes: move them to another "
        "Eip first"
    )
    return (text, advice)


def audit(inventory: Inventory, policy: Policy = DEFAULT_POLICY) -> dict[str, Verdict]:
    """Judge every existing Eip as if it were created now (the others stay as they are)."""
    return {
        name: check(eip, None, inventory, policy, Operation.CREATE)
        for name, eip in sorted(inventory.eips.items())
    }
