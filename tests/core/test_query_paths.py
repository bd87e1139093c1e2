"""The verdict's shortcuts must answer exactly as the plain code they stand for.

``key_text`` formats IPv4 without ipaddress, ``CanReach`` carries its key and text from
the parser, and ``Inventory.matching_any`` asks several kinds in one call: each is held
against the slower form here, as its oracle.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from app.core.addresses import V6_OFFSET, ip_key, key_ip, key_text
from app.core.facts import FactKind
from app.core.interfaces import CanReach, parse_interface
from app.core.inventory import build
from tests.core.objects import node, service, service_cidr

KEYS = st.one_of(
    st.integers(0, (1 << 32) - 1),
    st.integers(V6_OFFSET, V6_OFFSET + (1 << 128) - 1),
    st.sampled_from([0, 255, 256, (1 << 32) - 1, V6_OFFSET, V6_OFFSET + 1]),
)


@given(KEYS)
def test_key_text_is_the_text_of_key_ip(key: int) -> None:
    assert key_text(key) == str(key_ip(key))


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_can_reach_carries_the_key_and_text_of_its_ip(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    spec = parse_interface(f"can_reach:{ip}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return  # refused by the parser (tests/core/test_interfaces.py)
    assert isinstance(spec, CanReach)
    assert (spec.key, spec.text) == (ip_key(ip), str(ip))
    assert spec == CanReach(ip)  # the derived fields take no part in equality


INVENTORY = build(
    [
        node("n1", "10.0.0.5", pod_cidrs=("10.244.1.0/24",)),
        node("n2", "10.0.0.6", "10.0.0.5", pod_cidrs=("10.244.2.0/24",)),
        service("s1", cluster_ip="10.96.0.10"),
        service("s2", cluster_ip="10.96.0.11", external_ips=("10.0.0.6",)),
        service_cidr("kubernetes", "10.96.0.0/12"),
    ]
)
NEAR = [ip_key(ipaddress.ip_address(t)) for t in ("10.0.0.5", "10.96.0.10", "10.244.1.7")]


@given(
    st.lists(st.sampled_from(list(FactKind)), unique=True),
    st.one_of(st.sampled_from(NEAR), st.integers(0, (1 << 32) - 1)),
)
def test_matching_any_is_matching_kind_by_kind(kinds: list[FactKind], key: int) -> None:
    expected = [fact for kind in kinds for fact in INVENTORY.matching(kind, key)]
    assert INVENTORY.matching_any(tuple(kinds), key) == expected
