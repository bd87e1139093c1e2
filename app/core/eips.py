"""The Eip as the rules see it, parsed once from a plain Kubernetes object (a dict)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from app.core.addresses import AddressError, Span, parse_eip_address
from app.core.fields import as_mapping, as_str
from app.core.interfaces import InterfaceSpec, parse_interface

GROUP = "network.kubesphere.io"
VERSIONS = ("v1alpha2", "v1alpha1")
DEFAULT_EIP_ANNOTATION = "eip.openelb.kubesphere.io/is-default-eip"
ALLOW_RULES_ANNOTATION = "eip-guard.io/allow-rules"
EIP_ANNOTATIONS = (DEFAULT_EIP_ANNOTATION, ALLOW_RULES_ANNOTATION)  # all that from_object reads
EIP_SPEC_FIELDS = ("address", "protocol", "interface", "disable")  # all that from_object reads
PROTOCOLS = ("bgp", "layer2", "vip")


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
    address: Span | None  # None when the address does not parse
    address_error: str  # why it does not parse, else ""
    protocol: str  # "bgp" when empty, as OpenELB defaults
    interface_text: str
    interface: InterfaceSpec
    is_default: bool
    allow_rules: tuple[str, ...]  # rule ids from the eip-guard.io/allow-rules annotation
    used: tuple[str, ...]  # status.used keys: the IPs the speaker announces
    disabled: bool

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
        if type(spec) is not dict:
            spec = as_mapping(spec)
        annotations = meta.get("annotations")
        if type(annotations) is not dict:
            annotations = as_mapping(annotations)
        address_text = spec.get("address")
        if type(address_text) is not str:
            address_text = as_str(address_text)
        try:
            address: Span | None = parse_eip_address(address_text)
            error = ""
        except AddressError as exc:
            address, error = None, str(exc)
        # A shared copy, also as the parse cache's key: the parsed object's string would
        # keep its memory page (and the snapshot's pages around it) resident.
        interface_text = shared(as_str(spec.get("interface")))
        allow = as_str(annotations.get(ALLOW_RULES_ANNOTATION))
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
                shared(as_str(spec.get("protocol"))) or "bgp",  # protocol
                interface_text,
                parse_interface(interface_text),
                annotations.get(DEFAULT_EIP_ANNOTATION) == "true",  # is_default
                tuple([r.strip() for r in allow.split(",") if r.strip()]) if allow else (),
                tuple([own(str(k)) for k in used]) if used else (),
                spec.get("disable") is True,  # disabled
            ),
        )


_new = tuple.__new__  # in the order of the fields; without NamedTuple's Python __new__
