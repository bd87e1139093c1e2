"""classify(): every frame gets a reply or a reason (table tests, no sockets); and the
speaker's checks around it, with stand-in sockets."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.agent import speaker as speaker_module
from app.agent.frames import (
    ETH_P_ARP,
    ETH_P_IPV6,
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
from app.agent.speaker import SO_ATTACH_FILTER, Speaker, _packet_socket, _Port, burst
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


def payload_len(frame: bytes, length: int) -> bytes:
    """``frame`` with another IPv6 payload length, the bytes left as they are."""
    return frame[:18] + struct.pack("!H", length) + frame[20:]


def refix(frame: bytes) -> bytes:
    """``frame`` with the ICMPv6 checksum right for the message its payload length declares."""
    if len(frame) < 58 or frame[12:14] != b"\x86\xdd":
        return frame
    (length,) = struct.unpack_from("!H", frame, 18)
    msg = frame[54 : 54 + length]
    if len(msg) < 4:
        return frame
    src, dst = ipaddress.IPv6Address(frame[22:38]), ipaddress.IPv6Address(frame[38:54])
    msg = msg[:2] + b"\x00\x00" + msg[4:]
    checksum = struct.pack("!H", icmpv6_checksum(src, dst, msg))
    return frame[:56] + checksum + frame[58:]


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
        (arp(htype=7), Drop.NOT_IPV4_ARP),
        (arp(htype=0x0100), Drop.NOT_IPV4_ARP),  # Ethernet's 1, byte-swapped
        (arp(ptype=0x86DD), Drop.NOT_IPV4_ARP),
        (arp(op=2), Drop.NOT_REQUEST),
        (arp(target="198.51.100.110"), Drop.NOT_ANNOUNCED),
        (arp(sender="198.51.100.7", target="198.51.100.7"), Drop.GRATUITOUS),
        # Sources no host sends from: the kernel drops them as martians, unanswered.
        (arp(sender="255.255.255.255"), Drop.BAD_SENDER),
        (arp(sender="224.0.0.1"), Drop.BAD_SENDER),
        (arp(sender="127.0.0.1"), Drop.BAD_SENDER),
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
        # The payload length, not the frame, bounds the message: a crash once (the BPF filter
        # passes this frame, reading the type at offset 54 whatever the length says).
        (payload_len(ns(), 0), Drop.TOO_SHORT),
        (payload_len(ns(), 3), Drop.TOO_SHORT),
        (payload_len(ns(), 200), Drop.TOO_SHORT),  # more than the frame holds
        (ns()[:70], Drop.TOO_SHORT),
        (ns()[:54], Drop.TOO_SHORT),
        (refix(payload_len(ns(), 23)), Drop.MALFORMED),
        (ns()[:14] + b"\x40" + ns()[15:], Drop.MALFORMED),  # IP version 4
        (ns(src=ipaddress.IPv6Address("ff02::5")), Drop.MALFORMED),
        (ns(src=ipaddress.IPv6Address("::1")), Drop.MALFORMED),  # ipv6_rcv drops it too
        # Options: a zero length (RFC 4861 4.6), past the end, or an Ethernet address option
        # of another size than 8 bytes.
        (ns(options=b"\x01\x01" + ASKER + b"\x0e\x00"), Drop.MALFORMED),
        (ns(options=b"\x01\x01" + ASKER[:4]), Drop.MALFORMED),
        (ns(options=b"\x01\x02" + ASKER + b"\x00" * 8), Drop.MALFORMED),
        (ns(options=b"\x01"), Drop.MALFORMED),
        # Duplicate address detection (source ::) must go to a solicited-node group (RFC 4861
        # 7.1.1; Linux: "bad DAD packet (wrong destination)"): it was answered to ff02::1.
        (ns(src=ipaddress.IPv6Address("::"), options=b"", dst=V6, eth_dst=OURS), Drop.MALFORMED),
    ],
)
def test_ndp_drops(frame: bytes, reason: Drop) -> None:
    assert classify(frame, NIC, ANNOUNCED) is reason


def test_an_advert_for_our_ip_from_another_mac_is_a_conflict() -> None:
    theirs = Nic(OTHER)
    advert = unsolicited_advert(theirs, V6)
    assert classify(advert, NIC, ANNOUNCED) is Drop.CONFLICT
    assert classify(advert, NIC, frozenset({V4})) is Drop.NOT_SOLICITATION


def test_a_solicitation_from_our_ip_by_another_mac_is_a_conflict() -> None:
    """A host using an announced IP as its own source (a static address, DAD off) asks for
    its neighbours with it: as an ARP request from that IP is, a conflict, never answered."""
    gateway = ipaddress.IPv6Address("2001:db8::1")
    assert classify(ns(src=V6, target=gateway), NIC, ANNOUNCED) is Drop.CONFLICT
    assert classify(ns(src=V6, target=V6), NIC, ANNOUNCED) is Drop.CONFLICT
    assert classify(ns(src=V6, options=b"", dst=V6, eth_dst=OURS), NIC, ANNOUNCED) is Drop.CONFLICT
    # Still validated first: a broken frame is no evidence (RFC 4861 7.1.1).
    assert classify(ns(src=V6, hop=64), NIC, ANNOUNCED) is Drop.HOP_LIMIT
    assert classify(ns(src=V6, fix_checksum=False), NIC, ANNOUNCED) is Drop.BAD_CHECKSUM


def test_arp_for_ieee_802_hardware_is_answered_as_the_kernel_does() -> None:
    """Hardware type 6 (IEEE 802, RFC 2625) is accepted on Ethernet by Linux's arp_process,
    which answers with the device's own type, Ethernet (1)."""
    reply = classify(arp(htype=6), NIC, ANNOUNCED)
    assert isinstance(reply, Reply)
    assert struct.unpack_from("!HHBBH", reply.frame, 14) == (1, 0x0800, 6, 4, 2)


def test_an_invalid_advert_is_no_evidence_of_a_conflict() -> None:
    """RFC 4861 7.1.2: an advertisement failing validation is discarded, not reported."""
    all_nodes = ipaddress.IPv6Address("ff02::1")
    zero_option = ns(icmp_type=136, dst=all_nodes, options=b"\x02\x00" + OTHER)
    assert classify(zero_option, NIC, ANNOUNCED) is Drop.MALFORMED
    crossed_a_router = ns(icmp_type=136, dst=all_nodes, hop=64, options=b"\x02\x01" + OTHER)
    assert classify(crossed_a_router, NIC, ANNOUNCED) is Drop.HOP_LIMIT
    short = unsolicited_advert(Nic(OTHER), V6)
    assert classify(payload_len(short, 0), NIC, ANNOUNCED) is Drop.TOO_SHORT
    assert classify(refix(payload_len(short, 20)), NIC, ANNOUNCED) is Drop.MALFORMED
    # Solicited, yet sent to a group: the kernel drops it ("solicited NA is multicasted").
    advert = bytearray(unsolicited_advert(Nic(OTHER), V6))
    advert[58] |= 0x40
    assert classify(refix(bytes(advert)), NIC, ANNOUNCED) is Drop.MALFORMED


def test_ethernet_padding_after_the_message_is_ignored() -> None:
    assert isinstance(classify(ns() + b"\x00" * 20, NIC, ANNOUNCED), Reply)
    assert isinstance(classify(arp() + b"\x00" * 18, NIC, ANNOUNCED), Reply)


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


# --- Any bytes at all: a Reply or a Drop, never an exception ---------------------------

UNSPECIFIED = ipaddress.IPv6Address("::")
VALID = [
    arp(),
    arp(dst=OURS),
    arp(sender="0.0.0.0"),
    ns(),
    ns(options=b"", dst=V6, eth_dst=OURS),
    ns(src=UNSPECIFIED, options=b""),
    unsolicited_advert(Nic(OTHER), V6),
    *gratuitous_arp(OTHER, V4),
]


def _verdict(frame: bytes) -> Reply | Drop:
    verdict = classify(frame, NIC, ANNOUNCED)
    assert isinstance(verdict, Reply | Drop)
    if isinstance(verdict, Reply):
        assert verdict.ip in ANNOUNCED
        assert verdict.frame[6:12] == OURS
    return verdict


@st.composite
def ndp_like(draw: st.DrawFn) -> bytes:
    """An IPv6 ICMPv6 frame the BPF filter passes: any payload length, any message."""
    length = draw(st.integers(0, 64) | st.integers(0, 0xFFFF))
    msg = bytes([draw(st.sampled_from([135, 136]))]) + draw(st.binary(max_size=80))
    ip6 = struct.pack("!IHBB", 6 << 28, length, 58, draw(st.sampled_from([255, 64])))
    src = draw(st.sampled_from([ASKER6, UNSPECIFIED]))
    head = b"\x33\x33\xff\x00\x01\x01" + ASKER + b"\x86\xdd" + ip6 + src.packed
    frame = head + solicited_node(V6).packed + msg
    return refix(frame) if draw(st.booleans()) else frame


@st.composite
def ndp_with_options(draw: st.DrawFn) -> bytes:
    """A checksummed solicitation or advertisement carrying any option bytes."""
    return ns(
        icmp_type=draw(st.sampled_from([135, 136])),
        src=draw(st.sampled_from([ASKER6, UNSPECIFIED])),
        target=draw(st.sampled_from([V6, ipaddress.IPv6Address("2001:db8::110")])),
        options=draw(st.binary(max_size=48)),
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid frame, then truncated, bit-flipped, extended or given another length."""
    frame = bytearray(draw(st.sampled_from(VALID) | ndp_with_options() | ndp_like()))
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["truncate", "flip", "extend", "length"]))
        if edit == "truncate":
            del frame[draw(st.integers(0, len(frame))) :]
        elif edit == "flip" and frame:
            at = draw(st.integers(0, len(frame) - 1))
            frame[at] ^= draw(st.integers(1, 255))
        elif edit == "extend":
            frame += draw(st.binary(min_size=1, max_size=24))
        elif edit == "length" and len(frame) >= 20:
            frame[18:20] = struct.pack("!H", draw(st.integers(0, len(frame) + 8)))
    return refix(bytes(frame)) if draw(st.booleans()) else bytes(frame)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=160))
def test_any_bytes_get_a_reply_or_a_drop(frame: bytes) -> None:
    _verdict(frame)


@settings(max_examples=1000, deadline=None)
@given(mutated())
def test_mangled_frames_get_a_reply_or_a_drop(frame: bytes) -> None:
    _verdict(frame)


# --- The speaker's checks around classify(), with stand-in sockets -----------------------

Addr = tuple[str, int, int, int, bytes]


class _Sock:
    """Stands in for a bound packet socket: hands out frames, records what is sent."""

    def __init__(self, received: list[tuple[bytes, Addr]]) -> None:
        self.received, self.sent = list(received), list[bytes]()
        self.error: int | None = None  # what send() fails with, if anything

    def recvfrom(self, size: int) -> tuple[bytes, Addr]:
        if not self.received:
            raise BlockingIOError
        return self.received.pop(0)

    def send(self, frame: bytes) -> int:
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        self.sent.append(frame)
        return len(frame)


def _receive(
    frames: list[tuple[bytes, Addr]], speaker: Speaker | None = None, error: int | None = None
) -> tuple[Speaker, _Sock]:
    port = _Port.__new__(_Port)  # no real sockets: only what _receive reads
    port.name, port.index, port.nic, port.ips = "eth0", 2, NIC, ANNOUNCED
    speaker = speaker or Speaker(lambda line: None)
    sock = _Sock(frames)
    sock.error = error
    speaker._receive(port, cast(socket.socket, sock))
    return speaker, sock


def addr(pkttype: int, name: str = "eth0") -> Addr:
    return (name, ETH_P_ARP, pkttype, 1, ASKER)


@pytest.mark.parametrize(
    ("pkttype", "answered", "dropped"),
    [
        (socket.PACKET_HOST, True, None),
        (socket.PACKET_BROADCAST, True, None),
        (socket.PACKET_MULTICAST, True, None),
        # A request tagged with a VLAN this node has no link for arrives untagged, marked
        # for another host; the kernel's own ARP and IPv6 drop it, and so does the speaker.
        (socket.PACKET_OTHERHOST, False, "OTHER_HOST"),
        (socket.PACKET_OUTGOING, False, None),  # our own frames: not even counted
    ],
)
def test_only_frames_delivered_to_this_host_are_answered(
    pkttype: int, answered: bool, dropped: str | None
) -> None:
    speaker, sock = _receive([(arp(), addr(pkttype))])
    assert bool(sock.sent) is answered
    assert speaker.replies == int(answered)
    assert dict(speaker.drops) == ({dropped: 1} if dropped else {})


def test_a_frame_from_another_nic_is_not_answered() -> None:
    speaker, sock = _receive([(arp(), addr(socket.PACKET_BROADCAST, name="eth1"))])
    assert sock.sent == []
    assert dict(speaker.drops) == {"OTHER_INTERFACE": 1}


def test_a_failing_classify_costs_one_frame_and_is_logged_once_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = classify
    poison = b"poison" + arp()[6:]

    def buggy(frame: bytes, nic: Nic, announced: Any) -> Reply | Drop:
        if frame == poison:
            raise IndexError("index out of range")
        return real(frame, nic, announced)

    monkeypatch.setattr(speaker_module, "classify", buggy)
    now = [100.0]
    lines: list[str] = []
    speaker = Speaker(lines.append, clock=lambda: now[0])
    bcast = addr(socket.PACKET_BROADCAST)
    _, sock = _receive([(poison, bcast), (poison, bcast), (arp(), bcast)], speaker)
    assert len(sock.sent) == 1 and speaker.replies == 1  # the next frame is still answered
    assert speaker.drops["ERROR"] == 2
    assert len(lines) == 1 and "bug" in lines[0] and "IndexError" in lines[0], lines
    now[0] += speaker_module.ERROR_LOG_EVERY
    _receive([(poison, bcast)], speaker)
    assert speaker.drops["ERROR"] == 3 and len(lines) == 2, lines
    assert "2 failed since the last" in lines[1], lines


def test_conflicts_from_many_macs_are_not_a_log_line_each() -> None:
    """Gratuitous ARPs for an announced IP from ever new (spoofed) MACs made a log line and a
    never-forgotten entry each: a frame flood became a log flood and a memory leak."""
    now = [100.0]
    lines: list[str] = []
    speaker = Speaker(lines.append, clock=lambda: now[0])
    macs = [struct.pack("!HI", 0x0200, 0x1000 + n) for n in range(2000)]
    claims = [(arp(sender=str(V4), target=str(V4), src=mac), addr(socket.PACKET_BROADCAST))
              for mac in macs]  # fmt: skip
    for start in range(0, len(claims), 64):  # _receive reads 64 frames a call
        _receive(claims[start : start + 64], speaker)
    assert speaker.drops["CONFLICT"] == 2000
    assert len(lines) == 1 and lines[0].startswith("conflict on eth0: 02:00:00:00:10:00 "), lines
    assert len(speaker._conflicts) <= 1  # one NIC
    now[0] += speaker_module.CONFLICT_LOG_EVERY
    _receive(claims[:1], speaker)
    assert len(lines) == 2, lines
    assert "1999 more conflicting frames" in lines[1], lines
    assert "02:00:00:00:10:01" in lines[1] and "and others" in lines[1], lines


@pytest.mark.parametrize("code", [errno.ENOBUFS, errno.ENETDOWN])
def test_replies_that_cannot_be_sent_are_counted_and_logged_once_a_while(code: int) -> None:
    """A full transmit queue (ENOBUFS) or a NIC set down (ENETDOWN) failed every reply, and
    each failure was a log line: a request storm made a log storm."""
    now = [100.0]
    lines: list[str] = []
    speaker = Speaker(lines.append, clock=lambda: now[0])
    bcast = addr(socket.PACKET_BROADCAST)
    _receive([(arp(), bcast)] * 50, speaker, error=code)
    assert speaker.replies == 0 and speaker.drops["NOT_SENT"] == 50
    assert len(lines) == 1, lines
    assert lines[0].startswith("eth0: cannot send") and os.strerror(code) in lines[0], lines
    now[0] += speaker_module.SEND_LOG_EVERY
    _receive([(arp(), bcast)] * 3, speaker, error=code)
    assert len(lines) == 2 and "50 frames not sent" in lines[1], lines  # 49 unsaid + 1
    _, sock = _receive([(arp(), bcast)], speaker)  # the queue drained, the NIC up again
    assert len(sock.sent) == 1 and speaker.replies == 1
    assert lines[2:] == ["eth0: sending again (2 frames not sent since the last log)"], lines


def test_a_packet_socket_hears_nothing_until_bound_to_its_nic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opened with protocol 0 (deaf), filtered, then bound to the NIC and protocol at once:
    opened with the protocol, it would queue frames of every NIC until bind()."""
    calls: list[tuple[Any, ...]] = []

    class Recorder:
        def __init__(self, family: int, kind: int, proto: int = 0) -> None:
            calls.append(("socket", family, kind, proto))

        def setsockopt(self, level: int, option: int, value: bytes) -> None:
            calls.append(("setsockopt", level, option))

        def bind(self, address: tuple[str, int]) -> None:
            calls.append(("bind", address))

        def setblocking(self, flag: bool) -> None:
            calls.append(("setblocking", flag))

    monkeypatch.setattr(socket, "socket", Recorder)
    _packet_socket("eth0", ETH_P_IPV6)
    _packet_socket("eth0", ETH_P_ARP)
    deaf = ("socket", socket.AF_PACKET, socket.SOCK_RAW, 0)
    assert calls == [
        deaf,
        ("setsockopt", socket.SOL_SOCKET, SO_ATTACH_FILTER),
        ("bind", ("eth0", ETH_P_IPV6)),
        ("setblocking", False),
        deaf,
        ("bind", ("eth0", ETH_P_ARP)),
        ("setblocking", False),
    ]
