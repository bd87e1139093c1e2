"""The Eip as the rules see it, parsed once from a plain Kubernetes object (a dict)."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from app.core.addresses import AddressError, Span, as_openelb_reads, parse_eip_address
from app.core.fields import as_mapping, as_str
from app.core.interfaces import InterfaceSpec, parse_interface

GROUP = "network.kubesphere.io"
VERSIONS = ("v1alpha2", "v1alpha1")
V1ALPHA1 = f"{GROUP}/v1alpha1"
DEFAULT_EIP_ANNOTATION = "eip.openelb.kubesphere.io/is-default-eip"
ALLOW_RULES_ANNOTATION = "eip-guard.io/allow-rules"
# Of the allow-rules annotation, the characters read: every rule id fits in 700. A client
# on the webhook's port sent 5 MB of ids (an API server caps annotations at 256 KiB), and
# parsing and sorting them held the event loop for half a second a review.
ALLOW_RULES_CHARS = 4096
EIP_ANNOTATIONS = (DEFAULT_EIP_ANNOTATION, ALLOW_RULES_ANNOTATION)  # all that from_object reads
EIP_SPEC_FIELDS = ("address", "protocol", "interface", "disable")  # all that from_object reads
PROTOCOLS = ("bgp", "layer2", "vip")  # absent means bgp; "" is not in the CRD's enum
V1ALPHA1_PROTOCOLS = ("bgp", "layer2")
_PROTOCOL_VALUES = frozenset(PROTOCOLS)
# The served v1alpha1 schema's pattern of spec.address (IPv4 only); Go's regexp reads "$" as
# the end of the text, so a fullmatch without the anchors.
V1ALPHA1_ADDRESS_PATTERN = (
    r"^([0-9]{1,3}\.){3}[0-9]{1,3}((\/([0-9]|[1-2][0-9]|3[0-2]))|(\-([0-9]{1,3}\.){3}[0-9]{1,3}))?$"
)
_V1ALPHA1_ADDRESS = re.compile(V1ALPHA1_ADDRESS_PATTERN[1:-1])
_TO_V1ALPHA2 = "write this Eip as network.kubesphere.io/v1alpha2"


class FieldError(NamedTuple):
    """A spec field the Eip CRD's schema rejects (the API server would refuse the object
    before any webhook; a manifest checked by the CLI has not been through it)."""

    field: str  # e.g. "spec.address"
    value: str  # the JSON type or the value, as the API server quotes it
    detail: str  # the API server's words, starting with the field (a warning shows only these)
    advice: str  # what to write instead


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "number")


def _field_errors(
    spec: Any, address: Any, interface: Any, protocol: Any, disable: Any, *, v1alpha1: bool
) -> tuple[FieldError, ...]:
    """What the Eip CRD's schema says of the fields the rules read; the slow path only.

    v1alpha1 (openelb config/crd/bases/network.kubesphere.io_eips.yaml) has its own: an
    IPv4-only pattern on address, protocol bgp or layer2, and no interface at all."""
    if type(spec) is not dict:
        if spec is None:  # as a missing address: address-syntax says "empty address"
            return ()
        return (
            FieldError(
                "spec",
                _json_type(spec),
                "spec in body must be of type object",
                "Write spec as a mapping with address, protocol and interface.",
            ),
        )
    errors = []
    if address is not None and type(address) is not str:
        errors.append(
            FieldError(
                "spec.address",
                _json_type(address),
                "spec.address in body must be of type string",
                'Quote it in YAML, e.g. address: "192.168.0.10".',
            )
        )
    elif v1alpha1 and address is not None and not _V1ALPHA1_ADDRESS.fullmatch(address):
        errors.append(
            FieldError(
                "spec.address",
                address,
                f"spec.address in body should match '{V1ALPHA1_ADDRESS_PATTERN}'",
                "network.kubesphere.io/v1alpha1 takes an IPv4 address, CIDR or range only: "
                f"{_TO_V1ALPHA2} for anything else.",
            )
        )
    if v1alpha1 and interface is not None:
        errors.append(
            FieldError(
                "spec.interface",
                interface if type(interface) is str else _json_type(interface),
                'unknown field "spec.interface"',
                "network.kubesphere.io/v1alpha1 has no spec.interface: the API server drops it "
                f"(kubectl's strict field validation refuses it): {_TO_V1ALPHA2} to set it.",
            )
        )
    elif interface is not None and type(interface) is not str:
        errors.append(
            FieldError(
                "spec.interface",
                _json_type(interface),
                "spec.interface in body must be of type string",
                "Write one NIC name or can_reach:<IP>.",
            )
        )
    protocols = V1ALPHA1_PROTOCOLS if v1alpha1 else PROTOCOLS
    if protocol is not None and not (type(protocol) is str and protocol in protocols):
        supported = ", ".join(f'"{p}"' for p in protocols)
        if type(protocol) is str:
            value, detail = protocol, f"spec.protocol must be one of {supported}"
        else:
            value, detail = _json_type(protocol), "spec.protocol in body must be of type string"
        near = protocol.strip().lower() if type(protocol) is str else ""
        if protocol == "":  # a Helm value left unset: only an absent protocol means bgp
            advice = f"Leave spec.protocol out for bgp, or write one of {supported}."
        elif near in protocols:
            advice = f'Did you mean "{near}"?'
        else:
            advice = f"Write one of {supported}."
        if v1alpha1:
            advice += f" For vip, {_TO_V1ALPHA2}."
        errors.append(FieldError("spec.protocol", value, detail, advice))
    if disable is not None and type(disable) is not bool:
        errors.append(
            FieldError(
                "spec.disable",
                _json_type(disable),
                "spec.disable in body must be of type boolean",
                "Write true or false, unquoted.",
            )
        )
    return tuple(errors)


def is_eip(obj: Mapping[str, Any]) -> bool:
    api_version = obj.get("apiVersion")
    return (
        obj.get("kind") == "Eip"
        and isinstance(api_version, str)
        and api_version.partition("/")[0] == GROUP
    )


_SHARED: dict[str, str] = {}
_SHARED_KEPT = 4096
_SHARED_LENGTH = 128


def shared(text: str) -> str:
    """``own(text)`` for strings that many objects repeat (a namespace, an Eip's protocol or
    interface): interned and kept, so once known it is one lookup instead of a copy. Only
    short ones, a few thousand, then the table starts over (reviews bring values too)."""
    found = _SHARED.get(text)
    if found is None:
        if len(text) > _SHARED_LENGTH:  # longer than a namespace or interface: not kept
            return own(text)
        found = sys.intern(own(text))
        if len(_SHARED) >= _SHARED_KEPT:
            _SHARED.clear()
        _SHARED[found] = found
    return found


_LAST_OWNED = [("", "")]  # the last string copied and its copy, one tuple swapped atomically


def own(text: str) -> str:
    """A private copy of a string read from a parsed object, for what outlives the parse.

    A few surviving strings per memory page of a parsed snapshot keep every page resident
    (hundreds of MB at 100,000 objects); copies made after the parse sit together instead.
    The same string asked again gets the same copy, as long as nothing else was copied in
    between: live mode copies each object's name for its store key, then for its facts'
    source or its Eip (10 MB of duplicates at 160,000 objects otherwise).
    """
    last = _LAST_OWNED[0]
    if last[0] is text:
        return last[1]
    copy = text.encode().decode() if text else ""
    _LAST_OWNED[0] = (text, copy)
    return copy


class Eip(NamedTuple):
    """An Eip, as the rules see it. A NamedTuple (immutable) rather than a frozen dataclass,
    whose __init__ sets eleven fields one object.__setattr__ at a time: from_object runs
    50,000 times for a snapshot and once per admission review."""

    name: str
    address_text: str
    address: Span | None  # the pool as OpenELB reads it; None when it reads none
    # Why eip-guard refuses the text, else "". With an address: a form OpenELB reads and we
    # refuse to admit (IPv4-mapped IPv6), so a stored Eip written so still counts as its pool.
    address_error: str
    protocol: str  # "bgp" when empty, as OpenELB defaults
    interface_text: str
    interface: InterfaceSpec
    is_default: bool
    allow_rules: tuple[str, ...]  # rule ids from the eip-guard.io/allow-rules annotation
    used: tuple[str, ...]  # status.used keys: the IPs the speaker announces
    disabled: bool
    field_errors: tuple[FieldError, ...] = ()  # what the CRD's schema rejects; rarely any
    v1alpha1: bool = False  # written as network.kubesphere.io/v1alpha1: no spec.interface there
    # status.used values, one per key of ``used``: the Services ("ns/name", several joined
    # by ";" when they share the IP) that OpenELB serves from this Eip.
    used_by: tuple[str, ...] = ()

    def served(self) -> frozenset[str]:
        """The Services ("ns/name") that status.used names."""
        return frozenset(
            part.strip() for value in self.used_by for part in value.split(";") if part.strip()
        )

    @property
    def speaks_layer2(self) -> bool:
        """Whether the speaker resolves ``spec.interface`` for this Eip."""
        return self.protocol in ("layer2", "vip")

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Eip:
        # Also on the webhook's per-request path: no generator where a test suffices, and
        # the usual types (dict, str) tested inline, not by a call per field (50,000 Eips).
        meta, spec = obj.get("metadata"), obj.get("spec")
        if type(meta) is not dict:
            meta = as_mapping(meta)
        name = meta.get("name")
        name = own(name if type(name) is str else as_str(name))  # first: see own()
        annotations = meta.get("annotations")
        if type(annotations) is not dict:
            annotations = as_mapping(annotations)
        raw_spec = spec
        if type(spec) is not dict:
            spec = as_mapping(spec)
        address_text = spec.get("address")
        interface, protocol, disable = (
            spec.get("interface"),
            spec.get("protocol"),
            spec.get("disable"),
        )
        errors: tuple[FieldError, ...] = ()
        v1alpha1 = obj.get("apiVersion") == V1ALPHA1
        if v1alpha1 or not (
            type(address_text) is str
            and (interface is None or type(interface) is str)
            and (protocol is None or (type(protocol) is str and protocol in _PROTOCOL_VALUES))
            and (disable is None or type(disable) is bool)
            and type(raw_spec) is dict
        ):
            errors = _field_errors(
                raw_spec, address_text, interface, protocol, disable, v1alpha1=v1alpha1
            )
            address_text = as_str(address_text)
            if v1alpha1:
                interface = None  # not in its schema: the API server drops it
        try:
            address: Span | None = parse_eip_address(address_text)
            error = ""
        except AddressError as exc:
            address, error = None, str(exc)
            reads = as_openelb_reads(address_text)
            if reads is not None:
                with contextlib.suppress(AddressError):  # mixed or reversed once rewritten
                    address = parse_eip_address(reads)
        # A shared copy, also as the parse cache's key: the parsed object's string would
        # keep its memory page (and the snapshot's pages around it) resident.
        interface_text = shared(as_str(interface))
        allow = as_str(annotations.get(ALLOW_RULES_ANNOTATION))[:ALLOW_RULES_CHARS]
        status = obj.get("status")
        status = status if type(status) is dict else as_mapping(status)
        used = as_mapping(status.get("used"))
        return _new(
            cls,
            (
                name,
                own(address_text),
                address,
                error,
                shared(as_str(protocol)) or "bgp",  # protocol
                interface_text,
                parse_interface(interface_text),
                # is_default, as OpenELB reads it (strings.ToLower(value) == "true")
                as_str(annotations.get(DEFAULT_EIP_ANNOTATION)).lower() == "true",
                tuple([r.strip() for r in allow.split(",") if r.strip()]) if allow else (),
                tuple([own(str(k)) for k in used]) if used else (),
                disable is True,  # disabled
                errors,
                v1alpha1,
                tuple([own(as_str(v)) for v in used.values()]) if used else (),  # used_by
            ),
        )


# What makes two copies of an Eip two different Eips, by the manifest's name for each field.
# Not status.used: OpenELB rewrites it all the time (the rules read it only to warn of a
# DELETE), so two dumps of one cluster taken seconds apart differ there.
SPEC_FIELDS = (
    ("address_text", "spec.address"), ("protocol", "spec.protocol"),
    ("interface_text", "spec.interface"), ("disabled", "spec.disable"),
    ("is_default", "annotations"), ("allow_rules", "annotations"),
)  # fmt: skip


def same_spec(one: Eip, other: Eip) -> bool:
    """Whether the two are the same Eip to the rules (status aside)."""
    return all(getattr(one, attr) == getattr(other, attr) for attr, _ in SPEC_FIELDS)


_new = tuple.__new__  # in the order of the fields; without NamedTuple's Python __new__
