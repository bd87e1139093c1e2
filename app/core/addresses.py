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
from itertools import pairwise
from typing import Generic, NamedTuple, TypeVar

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V6_OFFSET = 1 << 32
_new = tuple.__new__  # a Span without NamedTuple's Python-level __new__ (hot path)

T = TypeVar("T")

# Exactly the octets ipaddress accepts ("0" to "255", ASCII digits, no leading zeros), each
# with its value: one dict lookup both checks and converts (the regex and int() took 2x).
_OCTETS = {str(value): value for value in range(256)}


_HEADS: dict[str, int] = {}  # "a.b.c" -> the key of a.b.c.0, for _dotted_quad_key
_HEADS_KEPT = 4096


def _dotted_quad_key(text: str) -> int | None:
    """The key of a plain IPv4 address in the common form, else None (take the full parser).

    Addresses repeat their first three octets (a rack, a Service range), so those are read
    once and kept (a few thousand at most): half the cost of reading four octets each time.
    """
    head, _, last = text.rpartition(".")
    base = _HEADS.get(head)
    if base is None:
        parts = head.split(".")
        if len(parts) != 3:
            return None
        get = _OCTETS.get
        a, b, c = get(parts[0]), get(parts[1]), get(parts[2])
        if a is None or b is None or c is None:
            return None
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        base = _HEADS[head] = a << 24 | b << 16 | c << 8
    d = _OCTETS.get(last)
    return None if d is None else base | d


_GROUPS = r"(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?"  # hex groups of 1-4 digits
_HEX_GROUPS = re.compile(f"{_GROUPS}(?:::{_GROUPS})?")
_ADDRESS_CHARS = re.compile(r"[0-9a-fA-F:.]+")  # every IP ipaddress reads, zones aside
_IPV4_MAPPED = 0xFFFF  # the high 96 bits of ::ffff:a.b.c.d


def _hex_groups_key(text: str) -> int | None:
    """The key of an IPv6 address written as hex groups with at most one ``::``, else None.

    The common form, without ipaddress's objects and its IPv4 attempt first (10 us). Only
    what ipaddress accepts with the same value, and not IPv4-mapped addresses: anything
    else (embedded IPv4, zones, errors) takes the full parser and its messages.
    """
    if _HEX_GROUPS.fullmatch(text) is None:
        return None
    head, double, tail = text.partition("::")  # the pattern allows one "::" at most
    if double:
        groups = head.split(":") if head else []
        after = tail.split(":") if tail else []
        missing = 8 - len(groups) - len(after)
        if missing < 1:  # "::" stands for at least one group
            return None
    else:
        groups, after, missing = text.split(":"), [], 0
        if len(groups) != 8:
            return None
    value = 0
    for group in groups:  # 1-4 hex digits each (the pattern), so int() reads exactly them
        value = value << 16 | int(group, 16)
    value <<= 16 * missing
    for group in after:
        value = value << 16 | int(group, 16)
    if value >> 32 == _IPV4_MAPPED:
        return None
    return value + V6_OFFSET


def _common_key(text: str) -> int | None:
    """The key of an address in one of the two common forms, else None (take the full parser)."""
    if "." in text:
        return _dotted_quad_key(text)
    return _hex_groups_key(text) if ":" in text else None


class AddressError(ValueError):
    """An address string that eip-guard (and OpenELB) does not accept, with the reason."""


# Of a value quoted in a message (an IPv6 range is up to 91 characters): values come from
# anyone who may write an Eip, and a megabyte of garbage must not come back several times.
SHOWN_LENGTH = 128


def shown(value: str, limit: int = SHOWN_LENGTH) -> str:
    """``value`` cut to ``limit`` characters."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def quoted(value: str) -> str:
    return repr(shown(value))


def parse_ip(text: str) -> IP:
    """Parse one plain IP, as strictly as OpenELB's Go parser and a little stricter.

    Rejected: whitespace, zone IDs (``fe80::1%eth0``), leading-zero IPv4 octets and
    IPv4-mapped IPv6 (Go silently turns ``::ffff:1.2.3.4`` into IPv4; we make the admin
    write the IPv4 form so both sides agree).
    """
    key = _common_key(text)
    if key is not None:
        return key_ip(key)
    if text == "":
        raise AddressError("empty address")
    if text != text.strip() or any(c.isspace() for c in text):
        raise AddressError(f"{quoted(text)} contains whitespace")
    if "%" in text:
        raise AddressError(f"{quoted(text)} has a zone ID; zone IDs are not allowed")
    if _ADDRESS_CHARS.fullmatch(text) is None:  # a hostname: spare ipaddress's two attempts
        raise AddressError(f"{quoted(text)} is not an IP address")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        octets = text.split(".")
        dotted = len(octets) == 4 and all(  # int() of 4,301 digits or more: ValueError
            o.isdigit() and o.isascii() and len(o) <= 3 and int(o) < 256 for o in octets
        )
        if dotted and any(len(o) > 1 and o[0] == "0" for o in octets):  # octal to some
            fixed = ".".join(str(int(o)) for o in octets)
            raise AddressError(
                f"{quoted(text)} has an octet with a leading zero; write {fixed}"
            ) from None
        raise AddressError(f"{quoted(text)} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise AddressError(f"{quoted(text)} is an IPv4-mapped IPv6 address; write {ip.ipv4_mapped}")
    return ip


def ip_key(ip: IP) -> int:
    """The position of ``ip`` on the shared number line (see the module docstring)."""
    return int(ip) if ip.version == 4 else int(ip) + V6_OFFSET


def key_ip(key: int) -> IP:
    """The inverse of :func:`ip_key`."""
    if key < V6_OFFSET:
        return ipaddress.IPv4Address(key)
    return ipaddress.IPv6Address(key - V6_OFFSET)


def key_text(key: int) -> str:
    """``str(key_ip(key))``; IPv4 without an ipaddress object (a denial names several IPs)."""
    if key < V6_OFFSET:
        return f"{key >> 24}.{key >> 16 & 255}.{key >> 8 & 255}.{key & 255}"
    return str(ipaddress.IPv6Address(key - V6_OFFSET))


def parse_key(text: str) -> int:
    """``ip_key(parse_ip(text))``, without making an ipaddress object in the common forms."""
    key = _common_key(text)
    return key if key is not None else ip_key(parse_ip(text))


def key_or_none(text: str) -> int | None:
    """:func:`parse_key`, or None for text that is no IP: no exception (and no message) for
    what quiet callers skip, such as a node's Hostname (10,000 nodes)."""
    key = _common_key(text)
    if key is not None:
        return key
    if _ADDRESS_CHARS.fullmatch(text) is None:  # no IP has other characters (parse_ip)
        return None
    try:
        return ip_key(parse_ip(text))
    except AddressError:
        return None


LOOPBACK, LINK_LOCAL = "a loopback address", "a link-local address"
UNSPECIFIED = "the unspecified address"


def special_kind_of_key(key: int) -> str | None:
    """Which block that never routes to a NIC holds the address, as a phrase; else None.

    The blocks of ipaddress's is_loopback, is_unspecified, is_multicast and is_link_local
    (and IPv4 broadcast), by arithmetic: the properties are slow, and this runs per verdict
    (tests/bench/test_fast_paths.py holds them as the oracle).
    """
    if key < V6_OFFSET:
        if key >> 24 == 127:  # 127.0.0.0/8
            return LOOPBACK
        if key == 0:
            return UNSPECIFIED
        if key >> 28 == 0xE:  # 224.0.0.0/4
            return "a multicast address"
        if key >> 16 == 0xA9FE:  # 169.254.0.0/16
            return LINK_LOCAL
        if key == 0xFFFFFFFF:
            return "the broadcast address"
        return None
    value = key - V6_OFFSET
    if value == 1:
        return LOOPBACK
    if value == 0:
        return UNSPECIFIED
    if value >> 120 == 0xFF:  # ff00::/8
        return "a multicast address"
    if value >> 118 == 0x3FA:  # fe80::/10
        return LINK_LOCAL
    return None


def special_route(kind: str) -> str:
    """What 'ip route get' answers for an address of a :func:`special_kind_of_key` block."""
    if kind == LOOPBACK:
        return "'ip route get' answers lo for it"
    if kind == UNSPECIFIED:  # checked in a network namespace, Linux 6.18
        return (
            "it is no destination: 'ip route get' answers lo for 0.0.0.0, the default route for ::"
        )
    # Multicast, broadcast and link-local routes: a NIC of the kernel's choosing, or none.
    return "'ip route get' answers a NIC by rules of its own, not by the Eip's network"


def is_loopback_or_link_local(key: int) -> bool:
    """ipaddress's ``is_loopback or is_link_local`` for the address ``key``."""
    return special_kind_of_key(key) in (LOOPBACK, LINK_LOCAL)


class Span(NamedTuple):
    """An inclusive range of addresses of one family: a pool, a CIDR, or a single IP.

    A NamedTuple, not a frozen dataclass: as immutable, and made three times faster (an
    inventory makes 200,000 of them). It also equals a plain tuple of the same values;
    nothing compares spans with tuples.
    """

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
            return f"{key_text(self.first)}/{self.prefix}"
        if self.first == self.last:
            return key_text(self.first)
        return f"{key_text(self.first)}-{key_text(self.last)}"

    @classmethod
    def of_ip(cls, ip: IP) -> Span:
        key = ip_key(ip)
        return cls(key, key)


def parse_cidr(text: str) -> Span:
    """``ip/prefix`` with a decimal prefix only (no netmask notation); host bits allowed.

    ``192.168.0.1/24`` is the pool 192.168.0.0-192.168.0.255, as OpenELB reads it.
    """
    return _key_and_cidr(text)[1]


_PREFIXES = {str(length): length for length in range(129)}  # decimal, no leading zero


def _key_and_cidr(text: str) -> tuple[int, Span]:
    ip_text, _, prefix_text = text.partition("/")
    key = parse_key(ip_text)
    prefix = _PREFIXES.get(prefix_text)
    offset, max_prefixlen = (0, 32) if key < V6_OFFSET else (V6_OFFSET, 128)
    if prefix is None:
        if any(c.isspace() for c in prefix_text):
            raise AddressError(f"{quoted(text)} contains whitespace")
        if not (prefix_text.isascii() and prefix_text.isdigit()):  # "" too
            raise AddressError(f"{quoted(text)} needs a decimal prefix length after '/'")
        if len(prefix_text) > 1 and prefix_text[0] == "0":
            raise AddressError(f"{quoted(text)} has a prefix length with a leading zero")
        prefix = max_prefixlen + 1  # decimal, no leading zero, not 0-128: longer than any
    if prefix > max_prefixlen:
        raise AddressError(f"{quoted(text)} has a prefix longer than {max_prefixlen}")
    host_bits = max_prefixlen - prefix
    first = (key - offset) >> host_bits << host_bits  # clear the host bits, as strict=False
    first += offset
    return key, _new(Span, (first, first + (1 << host_bits) - 1, prefix))


def parse_range(text: str) -> Span:
    """``a-b``: split at the first ``-``; both ends plain IPs of one family, ``a <= b``."""
    left, _, right = text.partition("-")
    if not left or not right or "-" in right:
        raise AddressError(
            f"{quoted(text)} is not a range: write one IP, a CIDR, or 'first-last' "
            "(two IPs joined by one '-')"
        )
    first, last = parse_key(left), parse_key(right)
    if (first < V6_OFFSET) != (last < V6_OFFSET):
        first_ip, last_ip = key_ip(first), key_ip(last)
        raise AddressError(f"{quoted(text)} mixes IPv{first_ip.version} and IPv{last_ip.version}")
    if first > last:
        raise AddressError(
            f"{quoted(text)} is reversed: {key_ip(first)} comes after {key_ip(last)}"
        )
    if _as_int64(last - first) < 0:  # GetSize: ord := big.Int.Int64(last-first); ord < 0
        raise AddressError(
            f"{quoted(text)} holds {last - first + 1} addresses: OpenELB counts last-first in "
            "a 64-bit integer, which comes out negative here, and refuses the range (keep it "
            "under 2^63 addresses)"
        )
    return _new(Span, (first, last, None))


def parse_eip_address(text: str) -> Span:
    """Parse an Eip ``spec.address``: a single IP, a CIDR, or an ``a-b`` range."""
    if "-" in text:
        return parse_range(text)
    if "/" in text:
        return parse_cidr(text)
    key = parse_key(text)
    return _new(Span, (key, key, None))


def as_openelb_reads(text: str) -> str | None:
    """``text`` (one IP or an ``a-b`` range) with its IPv4-mapped IPv6 addresses written as
    IPv4, as Go's ``net.ParseIP`` and OpenELB read them (``::ffff:10.0.0.1`` is 10.0.0.1);
    None when there is none to rewrite (or the text is no such IP or range).

    eip-guard refuses the mapped form in what it admits, but a stored Eip written so is
    still the IPv4 pool (or can_reach IP) that OpenELB serves: it must count as one. So is
    a CIDR whose prefix length has leading zeros (``10.0.0.0/024`` is a /24 to Go).
    """
    if "/" in text:
        zeros = _leading_zero_prefix(text)
        if zeros is not None:
            return zeros
    if "::" not in text.lower() and "ffff" not in text.lower():
        return None  # every mapped address has one of the two: the common case in one test
    if "/" in text:  # ::ffff:10.0.0.0/120 is 10.0.0.0/24 to OpenELB (GetSize, IPToBigInt)
        ip_text, _, prefix_text = text.partition("/")
        mapped_ip, prefix = _mapped(ip_text), _go_dtoi(prefix_text)
        if mapped_ip is None or prefix is None or prefix > 128:
            return None
        if prefix < 96:  # the mask clears (part of) ffff: an IPv6 network, To4() is nil
            return str(ipaddress.IPv6Network(f"{ip_text}/{prefix}", strict=False))
        return f"{mapped_ip}/{prefix - 96}"
    rewritten = []
    for part in text.split("-", 1):
        mapped = _mapped(part)
        if mapped is None and key_or_none(part) is None:
            return None
        rewritten.append(str(mapped) if mapped is not None else part)
    joined = "-".join(rewritten)
    return joined if joined != text else None


def _leading_zero_prefix(text: str) -> str | None:
    """``10.0.0.0/024`` as ``10.0.0.0/24``: Go's ``net.ParseCIDR`` reads the prefix length
    with ``dtoi``, which takes leading zeros, so OpenELB serves that /24. None when the
    prefix has no leading zero, or the text is no plain IP and decimal prefix."""
    ip_text, _, prefix_text = text.partition("/")
    prefix = _go_dtoi(prefix_text)
    if not (
        len(prefix_text) > 1
        and prefix_text[0] == "0"
        and prefix is not None
        and key_or_none(ip_text) is not None
    ):
        return None
    return f"{ip_text}/{prefix}"


_DTOI_BIG = 0xFFFFFF  # Go's net package gives up on a decimal number this big


def _go_dtoi(text: str) -> int | None:
    """The whole of ``text`` as Go's ``net.ParseCIDR`` reads a prefix length (``dtoi``):
    ASCII digits, leading zeros as many as given, None from 0xFFFFFF up or if empty; no
    ``int()`` of thousands of digits (Python refuses more than 4,300 with a ValueError)."""
    if not (text.isascii() and text.isdigit()):  # "" too
        return None
    digits = text.lstrip("0")
    if len(digits) > 8:
        return None
    value = int(digits or "0")
    return value if value < _DTOI_BIG else None


def _mapped(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``text`` maps (``::ffff:a.b.c.d``), else None (also with a zone ID,
    which ipaddress takes and Go's ``net.ParseIP`` refuses)."""
    if "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None


def parse_ip_or_cidr(text: str) -> Span:
    """A plain IP or a CIDR: what Kubernetes objects carry in pod CIDRs, ServiceCIDRs, etc."""
    if "/" in text:
        return parse_cidr(text)
    key = _common_key(text)  # most Service and node IPs: no ipaddress object needed
    if key is None:
        key = ip_key(parse_ip(text))
    return _new(Span, (key, key, None))


def parse_key_with_prefix(text: str) -> tuple[int, Span]:
    """``10.0.0.5/24`` as Calico annotates a node: the address's key and its connected subnet."""
    return _key_and_cidr(text)


_INT64 = 1 << 64


def _as_int64(value: int) -> int:
    """``value`` wrapped as Go wraps an int64 (two's complement)."""
    value &= _INT64 - 1
    return value - _INT64 if value >> 63 else value


def openelb_size(span: Span) -> int:
    """The pool size OpenELB's ``GetSize`` computes, in Go's 64-bit int arithmetic: a CIDR
    is ``1 << uint(bits-ones)`` (0 for 64 or more host bits, MinInt64 for 63), a range
    ``big.Int.Int64()`` of last-first, plus 1. Its IPAM hands out offsets below this size,
    and its overlap test adds size-1 to the first address."""
    if span.prefix is not None:
        host_bits = (32 if span.first < V6_OFFSET else 128) - span.prefix
        return 0 if host_bits >= 64 else _as_int64(1 << host_bits)
    return _as_int64(_as_int64(span.last - span.first) + 1)


class IntervalIndex(Generic[T]):
    """An immutable index of (span, item) pairs answering stabbing and overlap queries.

    The spans are cut into disjoint elementary segments, each listing the items that
    cover it, so "which items contain x" is one binary search and "which items overlap
    [a, b]" is one binary search plus the segments in between. Spans of one category
    rarely nest (pools must not overlap, pod CIDRs are disjoint), so the cut costs little;
    identical spans (10,000 nodes on one subnet) share one segment. Segments are kept as
    three parallel lists (first, last, items), not one object each: 50,000 pools.
    """

    __slots__ = ("_disjoint", "_firsts", "_items", "_lasts", "_size")

    def __init__(self, pairs: Iterable[tuple[Span, T]]) -> None:
        by_span: dict[tuple[int, int], list[T]] = {}
        for span, item in pairs:
            by_span.setdefault((span.first, span.last), []).append(item)
        self._size = sum(len(v) for v in by_span.values())
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._items: list[tuple[T, ...]] = []
        ordered = sorted(by_span)
        self._disjoint = all(a[1] < b[0] for a, b in pairwise(ordered))
        if self._disjoint:
            # The common case (pools, pod CIDRs, racks): no two distinct spans share an
            # address, so each is one segment; the sweep below would find just these.
            self._firsts = [first for first, _ in ordered]
            self._lasts = [last for _, last in ordered]
            self._items = [tuple(by_span[key]) for key in ordered]
            return
        # Sweep over boundaries: a span opens at `first` and closes after `last`.
        opens: dict[int, list[tuple[int, int]]] = {}
        closes: dict[int, list[tuple[int, int]]] = {}
        for key in by_span:
            opens.setdefault(key[0], []).append(key)
            closes.setdefault(key[1] + 1, []).append(key)
        active: dict[tuple[int, int], None] = {}
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

    def swapped(self, swaps: Iterable[tuple[Span, T, T]]) -> IntervalIndex[T] | None:
        """A new index with item ``new`` where ``old`` was, on the same span, for each
        (span, old, new); None if an ``old`` is not on its span. The segments stay as
        they are: a few changed Eips in 50,000 pools, without sorting them all again."""
        index: IntervalIndex[T] = IntervalIndex.__new__(IntervalIndex)
        index._firsts, index._lasts, index._size = self._firsts, self._lasts, self._size
        index._disjoint = self._disjoint
        items = index._items = list(self._items)
        for span, old, new in swaps:
            i = bisect_right(self._firsts, span.first) - 1
            found = False
            while 0 <= i < len(items) and self._firsts[i] <= span.last:
                if old in items[i]:
                    items[i] = tuple(new if item == old else item for item in items[i])
                    found = True
                i += 1
            if not found:
                return None
        return index

    def all(self) -> tuple[T, ...]:
        """Every item, once each, in address order of its first segment."""
        return tuple(self._each())

    def _each(self) -> Iterator[T]:
        seen: set[int] = set()
        for items in self._items:
            for item in items:
                if id(item) not in seen:
                    seen.add(id(item))
                    yield item

    def containing(self, key: int) -> tuple[T, ...]:
        """Every item whose span contains the address ``key``."""
        i = bisect_right(self._firsts, key) - 1
        if i >= 0 and self._lasts[i] >= key:
            return self._items[i]
        return ()

    def covering(self, span: Span) -> tuple[T, ...]:
        """Every item whose span holds all of ``span``: those containing both its ends (a
        span is contiguous), so two binary searches and, only when the ends fall in two
        segments of nested spans, one intersection."""
        firsts, lasts, items = self._firsts, self._lasts, self._items
        i = bisect_right(firsts, span.first) - 1
        if i < 0 or lasts[i] < span.first:
            return ()
        if lasts[i] >= span.last:
            return items[i]
        j = bisect_right(firsts, span.last) - 1
        if self._disjoint or lasts[j] < span.last:  # disjoint: no item is in two segments
            return ()
        at_last = {id(item) for item in items[j]}
        return tuple(item for item in items[i] if id(item) in at_last)

    def overlapping(self, span: Span) -> list[T]:
        """Every item whose span shares at least one address with ``span``, once each."""
        firsts, lasts, items = self._firsts, self._lasts, self._items
        # Segments are disjoint and sorted, so the last one starting by span.last ends last
        # of those: if it ends before span.first, nothing overlaps (every admission review).
        end = bisect_right(firsts, span.last)
        if end == 0 or lasts[end - 1] < span.first:
            return []
        start = max(bisect_right(firsts, span.first) - 1, 0)
        found: list[T] = []
        seen: set[int] = set()
        for i in range(start, end):
            if lasts[i] >= span.first:
                for item in items[i]:
                    if id(item) not in seen:
                        seen.add(id(item))
                        found.append(item)
        return found


class PointIndex(Generic[T]):
    """An immutable index of (address key, item) pairs: exact lookups and range scans.

    Two parallel lists sorted by key, one entry per pair: about 16 bytes a pair, where a
    dict of tuples took about 110 (100,000 Service IPs make this most of an inventory).
    """

    __slots__ = ("_distinct", "_items", "_keys")

    def __init__(self, pairs: Iterable[tuple[int, T]]) -> None:
        pairs = list(pairs)
        self._fill([key for key, _ in pairs], [item for _, item in pairs])

    @classmethod
    def of_columns(cls, keys: list[int], items: list[T]) -> PointIndex[T]:
        """``PointIndex(zip(keys, items))`` without making the pairs (130,000 Service IPs)."""
        index: PointIndex[T] = cls.__new__(cls)
        index._fill(keys, items)
        return index

    def _fill(self, keys: list[int], items: list[T]) -> None:
        # The positions sorted by key, not the pairs: a third faster, and stable too (one
        # key's items keep their order).
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._keys = [keys[i] for i in order]
        self._items = [items[i] for i in order]
        self._distinct = len(set(keys))

    def __len__(self) -> int:
        """The number of distinct keys."""
        return self._distinct

    def patched(
        self, removed: Iterable[tuple[int, T]], added: Iterable[tuple[int, T]]
    ) -> PointIndex[T] | None:
        """A new index without one pair equal to each of ``removed`` and with ``added`` (each
        after the items its key has); None if a pair to remove is not here. A copy and a
        shift per change: a few changes to 130,000 Service IPs take a millisecond, where
        sorting all again took a tenth of a second."""
        keys, items, distinct = list(self._keys), list(self._items), self._distinct
        for key, item in removed:
            lo = bisect_left(keys, key)
            hi = bisect_right(keys, key, lo)
            at = next((i for i in range(lo, hi) if items[i] == item), None)
            if at is None:
                return None
            del keys[at], items[at]
            distinct -= hi - lo == 1
        for key, item in added:
            at = bisect_right(keys, key)
            distinct += at == 0 or keys[at - 1] != key
            keys.insert(at, key)
            items.insert(at, item)
        index: PointIndex[T] = PointIndex.__new__(PointIndex)
        index._keys, index._items, index._distinct = keys, items, distinct
        return index

    def at(self, key: int) -> tuple[T, ...]:
        keys = self._keys
        lo = bisect_left(keys, key)
        if lo == len(keys) or keys[lo] != key:
            return ()
        if lo + 1 == len(keys) or keys[lo + 1] != key:  # the usual case: one item
            return (self._items[lo],)
        return tuple(self._items[lo : bisect_right(keys, key, lo)])

    def within(self, span: Span) -> list[tuple[int, T]]:
        """Every (key, item) with ``span.first <= key <= span.last``, in address order."""
        lo = bisect_left(self._keys, span.first)
        hi = bisect_right(self._keys, span.last, lo)
        if lo == hi:
            return []
        return list(zip(self._keys[lo:hi], self._items[lo:hi], strict=True))

    def columns_within(self, span: Span) -> tuple[list[int], list[T]]:
        """``within`` as two slices, keys and items: no tuple a pair (a pool over 0.0.0.0/0
        meets every Service IP, and 100,000 pairs made cost more than reading them)."""
        lo = bisect_left(self._keys, span.first)
        hi = bisect_right(self._keys, span.last, lo)
        return self._keys[lo:hi], self._items[lo:hi]

    def next_at_or_after(self, key: int) -> int | None:
        """The smallest indexed key ``>= key``, or None."""
        i = bisect_left(self._keys, key)
        return self._keys[i] if i < len(self._keys) else None
