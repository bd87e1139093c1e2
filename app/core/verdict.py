"""What a judgement returns, and the policy that shapes it."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from app.core.addresses import shown

WARNING_LIMIT = 119  # under 120 characters, as the admission docs ask (domain.md section 5)

# How Go's %q writes what it does not print as is (the rest: \xNN, \uNNNN, \UNNNNNNNN).
_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Action(enum.Enum):
    DENY = "deny"
    WARN = "warn"
    OFF = "off"


class Operation(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-rule actions (default deny) and whether the allow-rules annotation may override."""

    actions: Mapping[str, Action] = field(default_factory=lambda: MappingProxyType({}))
    allow_overrides: bool = True

    def action(self, rule: str) -> Action:
        return self.actions.get(rule, Action.DENY)


class Violation(NamedTuple):
    """One broken rule. Violation and Verdict are NamedTuples (immutable, made three times
    faster than frozen dataclasses): a denial makes several per admission review."""

    rule: str
    field: str  # e.g. "spec.interface"
    value: str  # the offending value, quoted in the message as Kubernetes does
    detail: str  # what conflicts, why it breaks OpenELB, what to do instead
    short: str  # one line for a kubectl warning
    advisory: bool = False  # at most a warning (e.g. can_reach on a bgp Eip, never used)

    @property
    def message(self) -> str:
        """Kubernetes field-error form: ``spec.interface: Invalid value: "x": detail``."""
        return f"{self.field}: {invalid_value(self.value)}: {self.detail}"


def go_quoted(text: str) -> str:
    """``text`` quoted as Go's %q (Kubernetes' field errors) quotes it: one line, whatever
    it holds."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for c in text:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        else:
            code = ord(c)
            out.append(
                f"\\x{code:02x}"
                if code < 0x80
                else f"\\u{code:04x}"
                if code <= 0xFFFF
                else f"\\U{code:08x}"
            )
    return '"' + "".join(out) + '"'


def invalid_value(value: str) -> str:
    """Kubernetes' ``Invalid value: "x"``, the value cut to a readable length."""
    return f"Invalid value: {go_quoted(shown(value))}"


def aggregate(messages: Sequence[str]) -> str:
    """Kubernetes' aggregate of field errors: one alone, several as ``[a, b]``."""
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


def clean_warning(text: str) -> str:
    """A kubectl warning: no control characters (the API server drops those), short."""
    if not text.isprintable():  # rare: spare the common case a loop over every character
        text = "".join(c if c.isprintable() else " " for c in text)
    if len(text) > WARNING_LIMIT:
        text = text[: WARNING_LIMIT - 3].rstrip() + "..."
    return text


class Verdict(NamedTuple):
    allowed: bool
    denied_by: tuple[Violation, ...] = ()
    warned_by: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = ()  # warnings that belong to no rule

    @property
    def warnings(self) -> tuple[str, ...]:
        texts = [f"eip-guard {v.rule}: {v.short}" for v in self.warned_by] + list(self.notes)
        return tuple(clean_warning(t) for t in texts)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.rule for v in self.denied_by + self.warned_by))

    @property
    def message(self) -> str:
        """All denials in one Kubernetes-style message."""
        return aggregate([v.message for v in self.denied_by])
