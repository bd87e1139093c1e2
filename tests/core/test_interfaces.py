"""spec.interface parsing, as OpenELB's speaker (ParseInterface) reads it."""

from __future__ import annotations

import ipaddress

import pytest

from app.core.eips import Eip
from app.core.interfaces import (
    BadInterface,
    CanReach,
    NicName,
    NoInterface,
    _parse_cached,
    parse_interface,
)
from app.core.inventory import build
from app.core.rules import check
from tests.core.objects import eip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, NoInterface()),
        ("", NoInterface()),
        ("eth0", NicName("eth0")),
        ("enp0s3.100", NicName("enp0s3.100")),
        ("can_reach:172.16.236.1", CanReach(ipaddress.ip_address("172.16.236.1"))),
        ("can_reach:2001:db8::1", CanReach(ipaddress.ip_address("2001:db8::1"))),
    ],
)
def test_valid(text: str | None, expected: object) -> None:
    assert parse_interface(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("can_reach:", "needs one plain IP"),
        ("can_reach: 172.16.236.1", "whitespace"),
        ("can_reach:172.16.236.1 ", "whitespace"),
        ("can_reach:172.16.236.0/24", "CIDR"),
        ("can_reach:fe80::1%eth0", "zone"),
        ("can_reach:172.016.236.1", "leading zero; write 172.16.236.1"),
        ("can_reach:gateway.local", "not an IP"),
        ("can-reach:172.16.236.1", "not supported"),
        ("Can_Reach:172.16.236.1", "not supported"),
        ("eth0:1", "not supported"),
        (" can_reach:172.16.236.1", "not supported"),
        ("can_reach:::ffff:172.16.236.1%eth0", "zone"),  # net.ParseIP refuses zones
        ("can_reach:1." + "1" * 5000 + ".1.1", "not an IP"),  # no ValueError from int()
    ],
)
def test_rejected_like_openelb(text: str, reason: str) -> None:
    spec = parse_interface(text)
    assert isinstance(spec, BadInterface)
    assert reason in spec.reason


@pytest.mark.parametrize(
    "text",
    [
        "x" * 3_000_000,
        "can_reach:" + "1" * 3_000_000,
        "p" * 3_000_000 + ":x",
        "can_reach:1/" + "2" * 3_000_000,
    ],
)
def test_a_huge_value_is_neither_kept_nor_echoed_whole(text: str) -> None:
    # Anyone who may write an Eip sends this; each one cached would pin megabytes, and the
    # denial would carry it back several times.
    before = _parse_cached.cache_info().currsize
    spec = parse_interface(text)
    assert _parse_cached.cache_info().currsize == before
    if isinstance(spec, BadInterface):
        assert len(spec.reason) < 400
    inventory = build([])
    verdict = check(
        Eip.from_object(eip("big", "10.0.0.1-10.0.0.9", interface=text)), None, inventory
    )
    assert all(len(v.message) < 1000 for v in verdict.denied_by + verdict.warned_by)


def test_usual_values_share_one_parsed_spec() -> None:
    assert parse_interface("can_reach:192.0.2.1") is parse_interface("can_reach:192.0.2.1")
    assert parse_interface("eth0") is parse_interface("eth0")


# NIC names as Linux takes them (dev_valid_name, dev_alloc_name), each row tried with
# 'ip link add name NAME type veth peer ...' in a network namespace on Linux 6.18.
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("pa%d", "'%'"),  # created as pa0: '%d' is a pattern, no NIC is named "pa%d"
        ("pa%b", "'%'"),  # Invalid argument: '%' other than one '%d'
        ("p\u00e0", "0xA0"),  # Invalid argument: UTF-8 C3 A0, and the kernel's isspace(0xA0)
        ("p\u0420", "0xA0"),  # Invalid argument: Cyrillic Er, UTF-8 D0 A0
        ("p\u00e9", None),  # created: UTF-8 C3 A9
        ("p!#$&*+=?", None),  # created
        ("p,;", None),  # created
    ],
)
def test_nic_names_as_linux_takes_them(name: str, why: str | None) -> None:
    problem = NicName(name).problem
    if why is None:
        assert problem is None
    else:
        assert problem is not None and why in problem
        assert problem.startswith(f"{name!r} cannot be a NIC name: ")
