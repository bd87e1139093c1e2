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
PROTOCOLS = ("bgp", "layer2", "vip")


def is_eip(obj: Mapping[str, Any]) -> bool:
    api_version = obj.get("apiVersion")
    return (
        obj.get("kind") == "Eip"
        and isinstance(api_version, str)
        and api_version.partition("/")[0] == GROUP
    )


def own(text: str) -> str:
    """A private copy of a string read from a parsed object, for what outlives the parse.

    A few surviving strings per memory page of a parsed snapshot keep every page resident
    (hundreds of MB at 100,000 objects); copies made after the parse sit together instead.
    """
    return text.encode().decode() if text else ""


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
        # Also on the webhook's per-request path: no generator where a test suffices.
        meta = as_mapping(obj.get("metadata"))
        spec = as_mapping(obj.get("spec"))
        annotations = as_mapping(meta.get("annotations"))
        address_text = as_str(spec.get("address"))
        try:
            address: Span | None = parse_eip_address(address_text)
            error = ""
        except AddressError as exc:
            address, error = None, str(exc)
        # The interned copy, also as the parse cache's key: the parsed object's string
        # would keep its memory page (and the snapshot's pages around it) resident.
        interface_text = sys.intern(own(as_str(spec.get("interface"))))
        allow = as_str(annotations.get(ALLOW_RULES_ANNOTATION))
        used = as_mapping(as_mapping(obj.get("status")).get("used"))
        return _new(
            cls,
            (
                own(as_str(meta.get("name"))),
                own(address_text),
                address,
                error,
                sys.intern(own(as_str(spec.get("protocol")))) or "bgp",  # protocol
                interface_text,
                parse_interface(interface_text),
                annotations.get(DEFAULT_EIP_ANNOTATION) == "true",  # is_default
                tuple([r.strip() for r in allow.split(",") if r.strip()]) if allow else (),
                tuple([own(str(k)) for k in used]) if used else (),
                spec.get("disable") is True,  # disabled
            ),
        )


_new = tuple.__new__  # in the order of the fields; without NamedTuple's Python __new__
