"""The one address model of eip-guard: Eip addresses, plain IPs, CIDRs and interval indexes.

Every caller (webhook, CLI, agent, live inventory) parses through here, so admission and
runtime can never disagree about what an address means (MetalLB's lesson).

Addresses become integer *keys*: an IPv4 address is its 32-bit value, an IPv6 address is
its 128-bit value plus ``V6_OFFSET``. Both families then live on one number line without
ever touching, so an interval of one family can never overlap one of the other.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Generic, TypeVar

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V6_OFFSET = 1 << 32
_DIGITS = frozenset("0123456789")

T = TypeVar("T")

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Exactly the dotted quads ipaddress accepts (no leading zeros, each octet <= 255): a fast
# path for the common case; anything else takes the full parser and its error messages.
_DOTTED_QUAD = re.compile(r"\.".join([_OCTET] * 4))


def _dotted_quad_key(text: str) -> int | None:
    """The key of a plain IPv4 address in the common form, else None (take the full parser)."""
    quad = _DOTTED_QUAD.fullmatch(text)
    if quad is None:
        return None
    a, b, c, d = quad.groups()
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


class AddressError(ValueError):
    """An address string that eip-guard (and OpenELB) does not accept, with the reason."""


def parse_ip(text: str) -> IP:
    """Parse one plain IP, as strictly as OpenELB's Go parser and a little stricter.

    Rejected: whitespace, zone IDs (``fe80::1%eth0``), leading-zero IPv4 octets and
    IPv4-mapped IPv6 (Go silently turns ``::ffff:1.2.3.4`` into IPv4; we make the admin
    write the IPv4 form so both sides agree).
    """
    key = _dotted_quad_key(text)
    if key is not None:
        return ipaddress.IPv4Address(key)
    if text == "":
        raise AddressError("empty address")
    if text != text.strip() or any(c.isspace() for c in text):
        raise AddressError(f"{text!r} contains whitespace")
    if "%" in text:
        raise AddressError(f"{text!r} has a zone ID; zone IDs are not allowed")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"{text!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise AddressError(f"{text!r} is an IPv4-mapped IPv6 address; write {ip.ipv4_mapped}")
    return ip


def ip_key(ip: IP) -> int:
    """The position of ``ip`` on the shared number line (see the module docstring)."""
    return int(ip) if ip.version == 4 else int(ip) + V6_OFFSET


def key_ip(key: int) -> IP:
    """The inverse of :func:`ip_key`."""
    if key < V6_OFFSET:
        return ipaddress.IPv4Address(key)
    return ipaddress.IPv6Address(key - V6_OFFSET)


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive range of addresses of one family: a pool, a CIDR, or a single IP."""

    first: int  # key of the first address
    last: int  # key of the last address (inclusive, as OpenELB counts)
    prefix: int | None = None  # set when the span came from CIDR notation

    @property
    def version(self) -> int:
        return 4 if self.first < V6_OFFSET else 6

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def first_ip(self) -> IP:
        return key_ip(self.first)

    @property
    def last_ip(self) -> IP:
        return key_ip(self.last)

    def contains(self, key: int) -> bool:
        return self.first <= key <= self.last

    def overlaps(self, other: Span) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        if self.prefix is not None:
            return f"{self.first_ip}/{self.prefix}"
        if self.first == self.last:
            return str(self.first_ip)
        return f"{self.first_ip}-{self.last_ip}"

    @classmethod
    def of_ip(cls, ip: IP) -> Span:
        key = ip_key(ip)
        return cls(key, key)

    @classmethod
    def of_network(cls, net: Network) -> Span:
        first = ip_key(net.network_address)
        return cls(first, first + net.num_addresses - 1, net.prefixlen)


def parse_cidr(text: str) -> Span:
    """``ip/prefix`` with a decimal prefix only (no netmask notation); host bits allowed.

    ``192.168.0.1/24`` is the pool 192.168.0.0-192.168.0.255, as OpenELB reads it.
    """
    ip_text, _, prefix_text = text.partition("/")
    ip = parse_ip(ip_text)
    if prefix_text == "" or not set(prefix_text) <= _DIGITS:
        raise AddressError(f"{text!r} needs a decimal prefix length after '/'")
    if len(prefix_text) > 1 and prefix_text[0] == "0":
        raise AddressError(f"{text!r} has a prefix length with a leading zero")
    prefix = int(prefix_text)
    if prefix > ip.max_prefixlen:
        raise AddressError(f"{text!r} has a prefix longer than {ip.max_prefixlen}")
    host_bits = ip.max_prefixlen - prefix
    network = int(ip) >> host_bits << host_bits  # clear the host bits, as strict=False does
    first = network if ip.version == 4 else network + V6_OFFSET
    return Span(first, first + (1 << host_bits) - 1, prefix)


def parse_range(text: str) -> Span:
    """``a-b``: split at the first ``-``; both ends plain IPs of one family, ``a <= b``."""
    left, _, right = text.partition("-")
    first, last = parse_ip(left), parse_ip(right)
    if first.version != last.version:
        raise AddressError(f"{text!r} mixes IPv{first.version} and IPv{last.version}")
    if int(first) > int(last):
        raise AddressError(f"{text!r} is reversed: {first} comes after {last}")
    return Span(ip_key(first), ip_key(last))


def parse_eip_address(text: str) -> Span:
    """Parse an Eip ``spec.address``: a single IP, a CIDR, or an ``a-b`` range."""
    if "-" in text:
        return parse_range(text)
    if "/" in text:
        return parse_cidr(text)
    return Span.of_ip(parse_ip(text))


def parse_ip_or_cidr(text: str) -> Span:
    """A plain IP or a CIDR: what Kubernetes objects carry in pod CIDRs, ServiceCIDRs, etc."""
    if "/" in text:
        return parse_cidr(text)
    key = _dotted_quad_key(text)  # most Service and node IPs: no IPv4Address object needed
    return Span(key, key) if key is not None else Span.of_ip(parse_ip(text))


def parse_ip_with_prefix(text: str) -> tuple[IP, Span]:
    """``10.0.0.5/24`` as Calico annotates a node: the address and its connected subnet."""
    ip_text, _, _ = text.partition("/")
    return parse_ip(ip_text), parse_cidr(text)


EVERYWHERE = Span(0, V6_OFFSET + (1 << 128) - 1)  # both families, end to end


class IntervalIndex(Generic[T]):
    """An immutable index of (span, item) pairs answering stabbing and overlap queries.

    The spans are cut into disjoint elementary segments, each listing the items that
    cover it, so "which items contain x" is one binary search and "which items overlap
    [a, b]" is one binary search plus the segments in between. Spans of one category
    rarely nest (pools must not overlap, pod CIDRs are disjoint), so the cut costs little;
    identical spans (10,000 nodes on one subnet) share one segment. Segments are kept as
    three parallel lists (first, last, items), not one object each: 50,000 pools.
    """

    __slots__ = ("_firsts", "_items", "_lasts", "_size")

    def __init__(self, pairs: Iterable[tuple[Span, T]]) -> None:
        by_span: dict[tuple[int, int], list[T]] = {}
        for span, item in pairs:
            by_span.setdefault((span.first, span.last), []).append(item)
        self._size = sum(len(v) for v in by_span.values())
        # Sweep over boundaries: a span opens at `first` and closes after `last`.
        opens: dict[int, list[tuple[int, int]]] = {}
        closes: dict[int, list[tuple[int, int]]] = {}
        for key in by_span:
            opens.setdefault(key[0], []).append(key)
            closes.setdefault(key[1] + 1, []).append(key)
        active: dict[tuple[int, int], None] = {}
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._items: list[tuple[T, ...]] = []
        bounds = sorted(opens.keys() | closes.keys())
        for i, point in enumerate(bounds):
            for key in closes.get(point, ()):
                del active[key]
            for key in opens.get(point, ()):
                active[key] = None
            if active and i + 1 < len(bounds):
                self._firsts.append(point)
                self._lasts.append(bounds[i + 1] - 1)
                self._items.append(tuple(item for key in active for item in by_span[key]))

    def __len__(self) -> int:
        return self._size

    def all(self) -> tuple[T, ...]:
        """Every item, once each, in address order of its first segment."""
        return tuple(self.overlapping(EVERYWHERE))

    def first(self, n: int) -> tuple[T, ...]:
        """``all()[:n]`` without walking the rest (10,000 nodes share few subnets)."""
        return tuple(islice(self.overlapping(EVERYWHERE), n))

    def containing(self, key: int) -> tuple[T, ...]:
        """Every item whose span contains the address ``key``."""
        i = bisect_right(self._firsts, key) - 1
        if i >= 0 and self._lasts[i] >= key:
            return self._items[i]
        return ()

    def overlapping(self, span: Span) -> Iterator[T]:
        """Every item whose span shares at least one address with ``span``, once each."""
        i = max(bisect_right(self._firsts, span.first) - 1, 0)
        seen: set[int] = set()
        firsts, lasts, items = self._firsts, self._lasts, self._items
        while i < len(firsts) and firsts[i] <= span.last:
            if lasts[i] >= span.first:
                for item in items[i]:
                    if id(item) not in seen:
                        seen.add(id(item))
                        yield item
            i += 1


class PointIndex(Generic[T]):
    """An immutable index of (address key, item) pairs: exact lookups and range scans.

    Two parallel lists sorted by key, one entry per pair: about 16 bytes a pair, where a
    dict of tuples took about 110 (100,000 Service IPs make this most of an inventory).
    """

    __slots__ = ("_distinct", "_items", "_keys")

    def __init__(self, pairs: Iterable[tuple[int, T]]) -> None:
        ordered = sorted(pairs, key=_pair_key)  # stable: one key's items keep their order
        self._keys = [key for key, _ in ordered]
        self._items = [item for _, item in ordered]
        self._distinct = len(set(self._keys))

    def __len__(self) -> int:
        """The number of distinct keys."""
        return self._distinct

    def at(self, key: int) -> tuple[T, ...]:
        keys = self._keys
        lo = bisect_left(keys, key)
        if lo == len(keys) or keys[lo] != key:
            return ()
        if lo + 1 == len(keys) or keys[lo + 1] != key:  # the usual case: one item
            return (self._items[lo],)
        return tuple(self._items[lo : bisect_right(keys, key, lo)])

    def within(self, span: Span) -> Iterator[tuple[int, T]]:
        """Every (key, item) with ``span.first <= key <= span.last``, in address order."""
        lo = bisect_left(self._keys, span.first)
        hi = bisect_right(self._keys, span.last, lo)
        yield from zip(self._keys[lo:hi], self._items[lo:hi], strict=True)

    def next_at_or_after(self, key: int) -> int | None:
        """The smallest indexed key ``>= key``, or None."""
        i = bisect_left(self._keys, key)
        return self._keys[i] if i < len(self._keys) else None


def _pair_key(pair: tuple[int, object]) -> int:
    return pair[0]
