"""What every rule reads (a :class:`Review`) and the wording their messages share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from app.core.eips import Eip
from app.core.facts import Fact, FactKind, Source
from app.core.inventory import Inventory
from app.core.verdict import Operation

LO_TRAP = (
    "an IP bound on a node makes 'ip route get' answer 'lo', so OpenELB's speaker "
    "loses its NIC at its next restart"
)
LO_TRAP_SENTENCE = LO_TRAP[0].upper() + LO_TRAP[1:] + "."
INTERFACE = "spec.interface"
PROTOCOL = "spec.protocol"
ADDRESS = "spec.address"
MAX_NAMED = 3  # conflicting objects named in one message; the rest are counted


class Review(NamedTuple):
    candidate: Eip
    old: Eip | None
    inventory: Inventory
    operation: Operation
    # Whether spec-schema reports the fields it finds (its policy is not "off"); if not, the
    # other rules judge those fields as read (a wrong type reads as empty) rather than say
    # nothing of them.
    schema_reported: bool = True


def erred(r: Review, field: str) -> bool:
    """Whether the schema rule already reported ``field`` (or the whole spec)."""
    return r.schema_reported and any(e.field in (field, "spec") for e in r.candidate.field_errors)


KIND_TEXT = {kind: kind.value for kind in FactKind}  # Enum's .value runs Python code


# Kinds that are ranges even when one holds a single IP ("lies in pool 10.0.0.9").
_RANGE_KINDS = frozenset({FactKind.POD_CIDR, FactKind.KUBE_VIP_POOL, FactKind.SERVICE_CIDR})


def describe(fact: Fact, ip: str) -> str:
    kind, span, source = fact
    if span.first == span.last and span.prefix is None and kind not in _RANGE_KINDS:
        return f"{ip} is a {KIND_TEXT[kind]} of {source.object_ref} ({source.field})"
    return f"{ip} lies in {KIND_TEXT[kind]} {span} of {source.object_ref} ({source.field})"


def owner_ref(source: Source) -> str:
    """The object a fact is of, for naming it once: a CiliumNode's facts are its Node's
    (Cilium writes its pod CIDRs and cilium_host IP into the Node's annotations too)."""
    return f"Node {source.name}" if source.kind == "CiliumNode" else source.object_ref


def some_of(items: Sequence[str]) -> str:
    """The first MAX_NAMED items, and how many more: a denial names a few of its conflicts."""
    shown = "; ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return shown + (f"; and {more} more" if more > 0 else "")


def first_of(items: Sequence[str]) -> str:
    """The first item, and how many more: a warning keeps one line, and must not hide them."""
    return items[0] + (f" and {len(items) - 1} more" if len(items) > 1 else "")
