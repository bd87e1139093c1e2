"""The one parser of an Eip ``spec.interface``, mirroring OpenELB's speaker (``ParseInterface``).

No ``:`` means a NIC name. ``can_reach:<IP>`` names an IP whose route picks the NIC. Any
other ``x:y`` form is an error to OpenELB, so it is one here. Nothing is trimmed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

from app.core.addresses import IP, AddressError, as_openelb_reads, ip_key, parse_ip, quoted

CAN_REACH_PREFIX = "can_reach:"
MAX_NIC_NAME = 15  # IFNAMSIZ less the terminating byte
_PLAIN_NIC_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")  # eth0, br-lan, bond0.100: no more to check

# Name prefixes of devices that are never the node's network (MetalLB's list): the agent
# (app.agent.netlink, app.agent.resolve) never answers on them, nor should a speaker.
EXCLUDED_PREFIXES = (
    "kube-ipvs", "cni", "flannel", "cali", "tunl", "veth", "docker", "cbr", "virbr", "lxc",
    "nodelocaldns", "dummy",
    "kube-dummy-if", "kube-bridge",  # kube-router's: Service IPs, and its pod bridge
)  # fmt: skip


def nic_name_problem(name: str) -> str | None:
    """Why ``name`` can never name a NIC, or None.

    Linux refuses (``dev_valid_name``) an empty name, '.' and '..', '/', ':' and whitespace
    in one (its ``isspace`` counts the byte 0xA0, which the UTF-8 of U+00E0 'à' holds), and
    more than 15 bytes; it reads a '%' as a pattern (``dev_alloc_name``: '%d' becomes a
    number, another '%' is refused), so no NIC's name has one. Beyond the kernel:
    spec.interface is JSON text, so bytes that are no UTF-8 (a shell hands them over as
    surrogates) cannot be in it, and a control character, which the kernel would take, is a
    stray character from a copy, not a name.
    """
    if _PLAIN_NIC_NAME.fullmatch(name) and name not in (".", ".."):
        return None
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return (
            f"{quoted(name)} cannot be a NIC name: it holds bytes that are not UTF-8 text, "
            "and spec.interface is JSON text"
        )
    if size > MAX_NIC_NAME:
        return f"{quoted(name)} cannot be a NIC name: Linux allows {MAX_NIC_NAME} bytes"
    if name in (".", ".."):
        return f"{quoted(name)} cannot be a NIC name: Linux refuses '.' and '..'"
    for char in name:
        if char == "/" or char.isspace():
            what = "'/'" if char == "/" else f"whitespace ({char!r})"
            return f"{quoted(name)} cannot be a NIC name: Linux refuses {what} in one"
        if char == "%":
            return (
                f"{quoted(name)} cannot be a NIC name: Linux reads '%' as a pattern when it "
                "names a NIC ('%d' becomes a number, any other '%' is refused), so no NIC's "
                "name has one"
            )
        if char > "\x7f" and 0xA0 in char.encode():
            return (
                f"{quoted(name)} cannot be a NIC name: the UTF-8 of {char!r} holds the byte "
                "0xA0, which Linux counts as whitespace and refuses in one"
            )
        if unicodedata.category(char) == "Cc":
            return (
                f"{quoted(name)} cannot be a NIC name: it holds the control character "
                f"{char!r} (a stray character from a copy?)"
            )
    return None


def never_answering(name: str) -> str | None:
    """Why a speaker on the NIC named ``name`` never reaches the Eip's network, or None:
    the loopback device, or a virtual device of kube-proxy, the CNI or containers (by name,
    as the agent tells them; it also skips dummy devices by kind, which a name cannot show)."""
    if name == "lo":
        return "is the loopback device"
    prefix = next((p for p in EXCLUDED_PREFIXES if name.startswith(p)), None)
    if prefix is not None:
        return f"is a virtual device ({prefix}*) of kube-proxy, the CNI or containers"
    return None


@dataclass(frozen=True, slots=True)
class NoInterface:
    """``spec.interface`` is empty or absent."""


@dataclass(frozen=True, slots=True)
class NicName:
    name: str
    # Derived once per parsed value (the parser is cached), for the rules: why no NIC can
    # have this name, and why a NIC of this name never answers for the Eip; None if not.
    problem: str | None = field(init=False, compare=False, repr=False)
    never_answers: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "problem", nic_name_problem(self.name))
        object.__setattr__(self, "never_answers", never_answering(self.name))


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
