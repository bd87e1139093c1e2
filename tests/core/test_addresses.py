"""The address model against Python's ipaddress as an oracle, IPv6 included."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.addresses import (
    V6_OFFSET,
    AddressError,
    IntervalIndex,
    PointIndex,
    Span,
    ip_key,
    key_ip,
    key_or_none,
    openelb_size,
    parse_eip_address,
    parse_ip,
)
from app.core.eips import Eip

v4 = st.ip_addresses(v=4)


def _not_mapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None


# IPv4-mapped IPv6 is rejected on purpose (see parse_ip), so the oracle skips it.
v6 = st.ip_addresses(v=6).filter(_not_mapped)
any_ip = st.one_of(v4, v6)


@given(any_ip)
def test_single_ip_is_a_span_of_one(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    span = parse_eip_address(str(ip))
    assert (span.first_ip, span.last_ip, span.size) == (ip, ip, 1)
    assert key_ip(ip_key(ip)) == ip


@given(st.one_of(v4.map(lambda ip: (ip, 32)), v6.map(lambda ip: (ip, 128))), st.data())
def test_cidr_matches_ipaddress_for_every_prefix(
    ip_bits: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int], data: st.DataObject
) -> None:
    ip, bits = ip_bits
    prefix = data.draw(st.integers(0, bits))
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    span = parse_eip_address(f"{ip}/{prefix}")
    # Host bits are allowed, network and broadcast are in the pool (OpenELB's GetSize).
    assert span.first_ip == net.network_address
    assert span.last_ip == net.broadcast_address
    assert span.size == net.num_addresses
    assert span.version == ip.version


@given(st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)))
def test_range_in_order_parses_reversed_fails(
    pair: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]
    | tuple[ipaddress.IPv6Address, ipaddress.IPv6Address],
) -> None:
    a, b = sorted(pair)
    if (int(b) - int(a)) & (1 << 63):  # Go's big.Int.Int64 of last-first is negative
        with pytest.raises(AddressError, match="64-bit integer"):
            parse_eip_address(f"{a}-{b}")
        return
    span = parse_eip_address(f"{a}-{b}")
    assert (span.first_ip, span.last_ip) == (a, b)
    assert span.size == int(b) - int(a) + 1
    if a != b:
        with pytest.raises(AddressError, match="reversed"):
            parse_eip_address(f"{b}-{a}")


@given(v4, v6)
def test_mixed_family_ranges_fail(a: ipaddress.IPv4Address, b: ipaddress.IPv6Address) -> None:
    for text in (f"{a}-{b}", f"{b}-{a}"):
        with pytest.raises(AddressError, match="mixes"):
            parse_eip_address(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 192.168.0.1",
        "192.168.0.1 ",
        "192.168.0.1 - 192.168.0.9",
        "192.168.0.1-192.168.0.5-192.168.0.9",
        "192.168.0.1/255.255.255.0",
        "192.168.0.1/",
        "192.168.0.1/33",
        "192.168.0.1/024",
        "192.168.0.1/+24",
        "192.168.01.1",
        "fe80::1%eth0",
        "fe80::1%eth0/64",
        "::ffff:192.168.0.1",
        "2001:db8::/129",
        "192.168.0.1-",
        "-192.168.0.1",
        "192.168.0.0/24-192.168.1.0/24",
        "not-an-ip",
    ],
)
def test_strict_grammar_rejects(text: str) -> None:
    with pytest.raises(AddressError):
        parse_eip_address(text)


def test_openelb_shapes() -> None:
    assert parse_eip_address("192.168.0.1/24").size == 256
    assert str(parse_eip_address("192.168.0.1/24").first_ip) == "192.168.0.0"
    assert parse_eip_address("192.168.0.9-192.168.0.9").size == 1
    assert parse_eip_address("2001:db8::/64").size == 2**64  # OpenELB gets this one wrong
    assert parse_eip_address("::/0").size == 2**128
    assert parse_eip_address("0.0.0.0/0").last < V6_OFFSET <= parse_eip_address("::").first


def test_parse_ip_messages_say_what_is_wrong() -> None:
    with pytest.raises(AddressError, match="zone"):
        parse_ip("fe80::1%lo")
    with pytest.raises(AddressError, match="whitespace"):
        parse_ip("10.0.0.1\t")
    with pytest.raises(AddressError, match=r"write 10\.0\.0\.1"):
        parse_ip("::ffff:10.0.0.1")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1.2.3.4-", "is not a range: write one IP, a CIDR, or 'first-last'"),
        ("-1.2.3.4", "is not a range"),
        ("1.2.3.4-1.2.3.5-1.2.3.9", "(two IPs joined by one '-')"),
        ("1.2.3.0/24 ", "contains whitespace"),
        ("01.2.3.4", r"'01.2.3.4' has an octet with a leading zero; write 1.2.3.4"),
        ("10.0.0.1-10.0.0.010", "leading zero; write 10.0.0.10"),
        ("1.2.3.256", "is not an IP address"),
        ("01.2.3.256", "is not an IP address"),
    ],
)
def test_eip_address_messages_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_eip_address(text)
    assert says in str(caught.value)


spans = st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda t: Span(t[0], t[0] + t[1]))


@given(st.lists(spans, max_size=25), st.integers(0, 80), spans)
def test_interval_index_matches_brute_force(items: list[Span], x: int, probe: Span) -> None:
    labelled = [(s, f"item{i}") for i, s in enumerate(items)]
    index = IntervalIndex(labelled)
    assert len(index) == len(items)
    assert sorted(index.containing(x)) == sorted(n for s, n in labelled if s.contains(x))
    got = list(index.overlapping(probe))
    assert len(got) == len(set(got)), "each item once"
    assert sorted(got) == sorted(n for s, n in labelled if s.overlaps(probe))
    assert sorted(index.all()) == sorted(n for _, n in labelled)


@given(st.lists(st.integers(0, 100), max_size=30), spans, st.integers(0, 110))
def test_point_index_matches_brute_force(keys: list[int], probe: Span, x: int) -> None:
    index = PointIndex((k, f"p{i}") for i, k in enumerate(keys))
    assert sorted(index.within(probe)) == sorted(
        (k, f"p{i}") for i, k in enumerate(keys) if probe.contains(k)
    )
    assert list(index.at(x)) == [f"p{i}" for i, k in enumerate(keys) if k == x]
    later = [k for k in keys if k >= x]
    assert index.next_at_or_after(x) == (min(later) if later else None)


# OpenELB's GetSize (api/v1alpha2/eip_types.go) for a range: both ends through Go's
# net.ParseIP, then ``ord := big.NewInt(0).Sub(last, base).Int64()`` and ``if ord < 0``
# "invalid eip address format". big.Int.Int64 keeps the low 64 bits, so a span of 2^63
# addresses or more can come out negative. Checked against Go 1.19 (GetSize copied).
@pytest.mark.parametrize(
    ("text", "go_accepts"),
    [
        ("fd00::-fd00::ffff:ffff:ffff:ffff", False),  # last-first 2^64-1: Int64 -1
        ("fd00::-fd00::8000:0:0:0", False),  # 2^63: Int64 MinInt64
        ("fd00::-fd00:0:0:1:8000::", False),  # 2^64+2^63: low 64 bits 2^63, negative
        ("fd00::-fd00::7fff:ffff:ffff:ffff", True),  # 2^63-1: ord+1 wraps (address-size)
        ("fd00::-fd00:0:0:1::5", True),  # 2^64+5: Int64 5, size 6 (address-size)
        ("10.0.0.0-10.255.255.255", True),  # IPv4 never comes near
    ],
)
def test_a_range_openelb_counts_negative_is_refused(text: str, go_accepts: bool) -> None:
    if go_accepts:
        parse_eip_address(text)
        return
    with pytest.raises(AddressError, match="OpenELB counts last-first in a 64-bit integer"):
        parse_eip_address(text)


# Go 1.19's net.ParseIP / net.ParseCIDR and OpenELB's GetSize against ours, row by row.
# "pool" is what GetSize reads (first address, size) or None when it returns an error;
# ``strict`` is whether eip-guard admits the text as written.
@pytest.mark.parametrize(
    ("text", "pool", "strict"),
    [
        ("2001:DB8::1", ("2001:db8::1", 1), True),  # uppercase hex: ParseIP takes it
        ("0001::1", ("1::1", 1), True),  # 4-digit groups with leading zeros
        ("::1.2.3.4", ("::102:304", 1), True),  # IPv4-compatible: IPv6, To4() is nil
        ("::ffff:1.2.3.4", ("1.2.3.4", 1), False),  # IPv4-mapped: To4() is 1.2.3.4
        ("::ffff:1.2.3.0/120", ("1.2.3.0", 256), False),  # a /120 of 128 bits, base To4()
        ("192.168.0.5/24", ("192.168.0.0", 256), True),  # ParseCIDR masks the host bits
        ("1.2.3.4/32", ("1.2.3.4", 1), True),
        ("2001:db8::1/128", ("2001:db8::1", 1), True),
        ("0.0.0.0/0", ("0.0.0.0", 1 << 32), True),
        ("10.0.0.0/024", ("10.0.0.0", 256), False),  # dtoi takes leading zeros
        ("1.2.3.4-1.2.3.4", ("1.2.3.4", 1), True),
        ("A::B-a::c", ("a::b", 2), True),
        ("1.2.3.0/24-1.2.4.0", None, False),  # a CIDR is no end of a range
        ("fe80::1%eth0", None, False),  # ParseIP refuses zones
        (" 1.2.3.4", None, False),  # no trimming
        ("１.２.３.４", None, False),  # fullwidth digits: ASCII only
        ("10.0.0.0/２４", None, False),
        ("01.2.3.4", None, False),  # leading-zero octet (Go 1.17+)
        ("::ffff:01.2.3.4", None, False),
        ("1.2.3.9-1.2.3.4", None, False),  # ord < 0
        ("1.2.3.4-2001:db8::1", None, False),  # 128-bit minus 32-bit: negative here
        ("::ffff:1.2.3.0/90", ("::ffc0:0:0", 1 << 38), False),  # /90 of 128 bits: IPv6
        ("::ffff:1.2.3.0/0120", ("1.2.3.0", 256), False),
        ("::ffff:1.2.3.0/\u0661\u0662\u0660", None, False),  # dtoi reads ASCII digits only
        ("::ffff:10.0.0.1%eth0", None, False),  # ParseIP refuses a zone, mapped or not
        ("::ffff:10.0.0.1%eth0-::ffff:10.0.0.9", None, False),
        ("10.0.0.0/" + "0" * 5000 + "24", ("10.0.0.0", 256), False),  # dtoi: zeros, any many
        ("10.0.0.0/16777214", None, False),  # dtoi gives up at 0xFFFFFF
        # Thousands of digits: refused by Go, and by Python's int() with a ValueError that
        # is no AddressError (the webhook answered 500, the inventory build raised).
        ("10.0.0.0/" + "1" * 5000, None, False),
        ("10.0.0.0/0" + "1" * 5000, None, False),
        ("::ffff:1.2.3.0/" + "1" * 5000, None, False),
        ("1." + "1" * 5000 + ".1.1", None, False),
    ],
)
def test_eip_address_as_openelb_getsize_reads_it(
    text: str, pool: tuple[str, int] | None, strict: bool
) -> None:
    read = Eip.from_object(
        {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
         "metadata": {"name": "p"}, "spec": {"address": text}}
    )  # fmt: skip
    if pool is None:
        assert read.address is None
    else:
        assert read.address is not None
        assert (str(read.address.first_ip), openelb_size(read.address)) == pool
    assert (read.address_error == "") is strict


def test_an_ip_of_thousands_of_digits_is_no_ip_not_an_exception() -> None:
    # Annotations and status.used keys are free text that quiet callers skip (key_or_none).
    huge = "1." + "1" * 5000 + ".1.1"
    assert key_or_none(huge) is None
    with pytest.raises(AddressError, match="is not an IP address"):
        parse_ip(huge)
    with pytest.raises(AddressError):
        parse_ip("1" * 5000 + ".1.1.01")
