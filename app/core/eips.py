"""The Eip as the rules see it, parsed once from a plain Kubernetes object (a dict)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Eip:
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
        interface_text = as_str(spec.get("interface"))
        allow = as_str(annotations.get(ALLOW_RULES_ANNOTATION))
        used = as_mapping(as_mapping(obj.get("status")).get("used"))
        return cls(
            name=own(as_str(meta.get("name"))),
            address_text=own(address_text),
            address=address,
            address_error=error,
            protocol=sys.intern(own(as_str(spec.get("protocol")))) or "bgp",
            interface_text=sys.intern(own(interface_text)),
            interface=parse_interface(interface_text),
            is_default=annotations.get(DEFAULT_EIP_ANNOTATION) == "true",
            allow_rules=tuple([r.strip() for r in allow.split(",") if r.strip()]) if allow else (),
            used=tuple([own(str(k)) for k in used]) if used else (),
            disabled=spec.get("disable") is True,
        )
