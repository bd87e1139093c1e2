"""spec.interface parsing, as OpenELB's speaker (ParseInterface) reads it."""

from __future__ import annotations

import ipaddress

import pytest

from app.core.interfaces import BadInterface, CanReach, NicName, NoInterface, parse_interface


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
        ("can_reach:172.016.236.1", "not an IP"),
        ("can_reach:gateway.local", "not an IP"),
        ("can-reach:172.16.236.1", "not supported"),
        ("Can_Reach:172.16.236.1", "not supported"),
        ("eth0:1", "not supported"),
        (" can_reach:172.16.236.1", "not supported"),
    ],
)
def test_rejected_like_openelb(text: str, reason: str) -> None:
    spec = parse_interface(text)
    assert isinstance(spec, BadInterface)
    assert reason in spec.reason
