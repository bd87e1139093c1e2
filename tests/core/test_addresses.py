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
    parse_eip_address,
    parse_ip,
)

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
