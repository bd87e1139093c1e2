"""classify(): every frame gets a reply or a reason (table tests, no sockets)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from app.agent.frames import (
    Drop,
    Nic,
    Reply,
    classify,
    gratuitous_arp,
    icmpv6_checksum,
    mac_bytes,
    solicited_node,
    unsolicited_advert,
)
from app.agent.speaker import burst
from app.core.addresses import IP

OURS = mac_bytes("02:00:00:00:00:01")
ASKER = mac_bytes("02:00:00:00:00:99")
OTHER = mac_bytes("02:00:00:00:00:55")
NIC = Nic(OURS)
V4 = ipaddress.IPv4Address("198.51.100.101")
V6 = ipaddress.IPv6Address("2001:db8::101")
ASKER4 = ipaddress.IPv4Address("198.51.100.10")
ASKER6 = ipaddress.IPv6Address("2001:db8::10")
ANNOUNCED: frozenset[IP] = frozenset({V4, V6})


def arp(*, op: int = 1, target: str = str(V4), dst: bytes = b"\xff" * 6, src: bytes = ASKER,
        htype: int = 1, ptype: int = 0x0800, sender: str = str(ASKER4)) -> bytes:  # fmt: skip
    eth = dst + src + b"\x08\x06"
    body = struct.pack("!HHBBH", htype, ptype, 6, 4, op)
    body += src + ipaddress.IPv4Address(sender).packed + b"\x00" * 6
    return eth + body + ipaddress.IPv4Address(target).packed


def ns(*, target: ipaddress.IPv6Address = V6, src: ipaddress.IPv6Address = ASKER6,
       dst: ipaddress.IPv6Address | None = None, hop: int = 255, options: bytes | None = None,
       icmp_type: int = 135, next_header: int = 58, fix_checksum: bool = True,
       eth_dst: bytes | None = None) -> bytes:  # fmt: skip
    dst = dst or solicited_node(target)
    if options is None:
        options = b"\x01\x01" + ASKER
    msg = struct.pack("!BBH4x", icmp_type, 0, 0) + target.packed + options
    if fix_checksum:
        msg = msg[:2] + struct.pack("!H", icmpv6_checksum(src, dst, msg)) + msg[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(msg), next_header, hop) + src.packed + dst.packed
    eth_dst = eth_dst or b"\x33\x33" + dst.packed[12:]
    return eth_dst + ASKER + b"\x86\xdd" + ip6 + msg


def test_arp_request_for_an_announced_ip_gets_our_mac() -> None:
    reply = classify(arp(), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)
    frame = reply.frame
    assert frame[0:6] == ASKER and frame[6:12] == OURS and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2)
    assert frame[22:28] == OURS and frame[28:32] == V4.packed  # sender: us, the IP
    assert frame[32:38] == ASKER and frame[38:42] == ASKER4.packed  # target: the asker
    assert reply.ip == V4


def test_unicast_arp_to_our_mac_is_answered() -> None:
    assert isinstance(classify(arp(dst=OURS), NIC, ANNOUNCED), Reply)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xff" * 10, Drop.TOO_SHORT),
        (arp()[:30], Drop.TOO_SHORT),
        (arp()[:12] + b"\x08\x00" + arp()[14:], Drop.OTHER_ETHERTYPE),
        (arp(src=OURS), Drop.OWN_FRAME),
        (arp(dst=OTHER), Drop.ETHERNET_DESTINATION),
        (arp(htype=6), Drop.NOT_IPV4_ARP),
        (arp(ptype=0x86DD), Drop.NOT_IPV4_ARP),
        (arp(op=2), Drop.NOT_REQUEST),
        (arp(target="198.51.100.110"), Drop.NOT_ANNOUNCED),
        (arp(sender="198.51.100.7", target="198.51.100.7"), Drop.GRATUITOUS),
        # Another MAC claims our IP (a second speaker): logged, never answered.
        (arp(sender=str(V4)), Drop.CONFLICT),
        (arp(op=2, sender=str(V4), dst=b"\xff" * 6), Drop.CONFLICT),
    ],
)
def test_arp_drops(frame: bytes, reason: Drop) -> None:
    assert classify(frame, NIC, ANNOUNCED) is reason


def test_nothing_is_answered_once_the_ip_is_lost() -> None:
    assert classify(arp(), NIC, frozenset()) is Drop.NOT_ANNOUNCED
    assert classify(ns(), NIC, frozenset({V4})) is Drop.NOT_ANNOUNCED


def _check_na(frame: bytes, dst_mac: bytes, dst: ipaddress.IPv6Address, flags: int) -> None:
    assert frame[0:6] == dst_mac and frame[6:12] == OURS and frame[12:14] == b"\x86\xdd"
    payload_len, next_header, hop = struct.unpack_from("!HBB", frame, 18)
    src = ipaddress.IPv6Address(frame[22:38])
    assert (next_header, hop, src) == (58, 255, V6)  # from the target, as the kernel does
    assert ipaddress.IPv6Address(frame[38:54]) == dst
    msg = frame[54 : 54 + payload_len]
    assert msg[0] == 136 and msg[4] == flags
    assert ipaddress.IPv6Address(msg[8:24]) == V6
    assert msg[24:26] == b"\x02\x01" and msg[26:32] == OURS  # target link-layer address
    assert icmpv6_checksum(src, dst, msg) == 0  # a correct checksum sums to zero


def test_neighbor_solicitation_gets_a_solicited_override_advert() -> None:
    reply = classify(ns(), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)
    _check_na(reply.frame, ASKER, ASKER6, 0x60)


def test_solicitation_without_source_option_goes_to_the_ethernet_source() -> None:
    reply = classify(ns(options=b"", dst=V6, eth_dst=OURS), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)
    _check_na(reply.frame, ASKER, ASKER6, 0x60)


def test_duplicate_address_detection_is_answered_to_all_nodes() -> None:
    reply = classify(ns(src=ipaddress.IPv6Address("::"), options=b""), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)
    _check_na(reply.frame, b"\x33\x33\x00\x00\x00\x01", ipaddress.IPv6Address("ff02::1"), 0x20)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (ns()[:60], Drop.TOO_SHORT),
        (ns(next_header=17), Drop.NOT_ICMPV6),
        (ns(icmp_type=128), Drop.NOT_SOLICITATION),
        (ns(hop=64), Drop.HOP_LIMIT),
        (ns(fix_checksum=False), Drop.BAD_CHECKSUM),
        (ns(options=b"\x01\x00" + b"\x00" * 6), Drop.MALFORMED),
        (ns(src=ipaddress.IPv6Address("::")), Drop.MALFORMED),
        (ns(dst=ipaddress.IPv6Address("ff02::1")), Drop.WRONG_GROUP),
        (ns(target=ipaddress.IPv6Address("2001:db8::110")), Drop.NOT_ANNOUNCED),
        (ns(eth_dst=OTHER), Drop.ETHERNET_DESTINATION),
    ],
)
def test_ndp_drops(frame: bytes, reason: Drop) -> None:
    assert classify(frame, NIC, ANNOUNCED) is reason


def test_an_advert_for_our_ip_from_another_mac_is_a_conflict() -> None:
    theirs = Nic(OTHER)
    advert = unsolicited_advert(theirs, V6)
    assert classify(advert, NIC, ANNOUNCED) is Drop.CONFLICT
    assert classify(advert, NIC, frozenset({V4})) is Drop.NOT_SOLICITATION


def test_an_arp_probe_is_answered() -> None:
    """RFC 5227: a host checking whether the IP is free (sender 0.0.0.0) learns it is not."""
    reply = classify(arp(sender="0.0.0.0"), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)


def test_a_flipped_bit_breaks_the_checksum() -> None:
    frame = bytearray(ns())
    frame[-1] ^= 0x01
    assert classify(bytes(frame), NIC, ANNOUNCED) is Drop.BAD_CHECKSUM


def test_gratuitous_arp_request_and_reply() -> None:
    request, reply = gratuitous_arp(OURS, V4)
    for frame, op in ((request, 1), (reply, 2)):
        assert frame[0:6] == b"\xff" * 6 and frame[6:12] == OURS
        assert struct.unpack_from("!H", frame, 20)[0] == op
        assert frame[22:28] == OURS
        assert frame[28:32] == frame[38:42] == V4.packed  # sender IP == target IP
    assert reply[32:38] == OURS  # Linux wants tha == sha to treat a reply as gratuitous


def test_unsolicited_advert_goes_to_all_nodes() -> None:
    frame = unsolicited_advert(NIC, V6)
    _check_na(frame, b"\x33\x33\x00\x00\x00\x01", ipaddress.IPv6Address("ff02::1"), 0x20)


def test_solicited_node_group() -> None:
    group = solicited_node(ipaddress.IPv6Address("2001:db8::1:2:3:abcd:ef01"))
    assert group == ipaddress.IPv6Address("ff02::1:ffcd:ef01")


def test_the_takeover_burst_is_at_once_then_every_1_1_s_for_5_s() -> None:
    times = burst(100.0)
    assert times == pytest.approx([100.0, 101.1, 102.2, 103.3, 104.4])
    assert all(t - 100.0 < 5 for t in times)


def test_mac_parsing() -> None:
    assert mac_bytes("0A:0b:00:00:00:01") == b"\x0a\x0b\x00\x00\x00\x01"
    with pytest.raises(ValueError, match="not a MAC"):
        mac_bytes("0a:0b")
