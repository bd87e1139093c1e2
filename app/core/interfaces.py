"""The one parser of an Eip ``spec.interface``, mirroring OpenELB's speaker (``ParseInterface``).

No ``:`` means a NIC name. ``can_reach:<IP>`` names an IP whose route picks the NIC. Any
other ``x:y`` form is an error to OpenELB, so it is one here. Nothing is trimmed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from app.core.addresses import IP, AddressError, as_openelb_reads, ip_key, parse_ip, quoted

CAN_REACH_PREFIX = "can_reach:"


@dataclass(frozen=True, slots=True)
class NoInterface:
    """``spec.interface`` is empty or absent."""


@dataclass(frozen=True, slots=True)
class NicName:
    name: str


@dataclass(frozen=True, slots=True)
class CanReach:
    ip: IP
    # Derived once per parsed value (the parser is cached); every verdict reads them.
    key: int = field(init=False, compare=False, repr=False)
    text: str = field(init=False, compare=False, repr=False)  # the IP as messages print it

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", ip_key(self.ip))
        object.__setattr__(self, "text", str(self.ip))

    def __str__(self) -> str:
        return f"{CAN_REACH_PREFIX}{self.ip}"


@dataclass(frozen=True, slots=True)
class BadInterface:
    """A value OpenELB's speaker rejects; ``reason`` says why in words an admin acts on."""

    reason: str


InterfaceSpec = NoInterface | NicName | CanReach | BadInterface


# The longest value worth caching: "can_reach:" and the longest IPv6 text is 55 characters,
# a NIC name at most 15. Longer ones are parsed each time: any Eip writer could otherwise
# pin 4,096 values of megabytes each in the webhook's memory.
CACHED_LENGTH = 64


def parse_interface(text: str | None) -> InterfaceSpec:
    if text is not None and len(text) > CACHED_LENGTH:
        return _parse(text)
    return _parse_cached(text)


def _parse(text: str | None) -> InterfaceSpec:
    if not text:
        return NoInterface()
    if ":" not in text:
        return NicName(text)
    prefix, _, value = text.partition(":")
    if prefix != "can_reach":
        return BadInterface(
            f"the prefix {quoted(prefix + ':')} is not supported; OpenELB only understands "
            f"'can_reach:<IP>' (a NIC name cannot contain ':')"
        )
    if value == "":
        return BadInterface("'can_reach:' needs one plain IP after the colon")
    if "/" in value:
        return BadInterface(f"{quoted(value)} is a CIDR; 'can_reach:' takes one plain IP")
    try:
        return CanReach(parse_ip(value))
    except AddressError as exc:
        # OpenELB's speaker reads ::ffff:a.b.c.d as a.b.c.d and routes it as IPv4: so do we.
        reads = as_openelb_reads(value)
        if reads is not None and "-" not in reads:
            return CanReach(parse_ip(reads))
        return BadInterface(f"'can_reach:' takes one plain IP: {exc}")


# Cached: the results are immutable, and a cluster's Eips repeat a few values (50,000 Eips,
# a can_reach gateway per rack), so they share one spec and one IP object each.
_parse_cached = functools.lru_cache(maxsize=4096)(_parse)
