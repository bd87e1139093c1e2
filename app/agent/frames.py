"""ARP and NDP frames, pure: ``classify(frame, nic, announced) -> Reply | Drop`` and builders.

The socket loop (:mod:`app.agent.speaker`) only moves bytes; every decision about a frame's
content is made here and every ignored frame has a :class:`Drop` reason (MetalLB's
``arp.go`` does the same), so table tests can say why a frame is not answered. Any bytes
at all get a Reply or a Drop, never an exception: a frame is read only as far as it and
its own declared lengths go.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from app.core.addresses import IP

ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_HEADER = 14
ARP_SIZE = 28
IPV6_HEADER = 40
IPPROTO_ICMPV6 = 58
ND_SOLICIT, ND_ADVERT = 135, 136
OPT_SOURCE_LL, OPT_TARGET_LL = 1, 2
ARP_REQUEST, ARP_REPLY = 1, 2
ARP_ETHERNET = (1, 6)  # hardware types answered: Ethernet, IEEE 802
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
NA_SOLICITED, NA_OVERRIDE = 0x40, 0x20
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
UNSPECIFIED = ipaddress.IPv6Address("::")


class Drop(enum.Enum):
    """Why a frame gets no answer."""

    TOO_SHORT = "too short for its headers"
    OTHER_ETHERTYPE = "neither ARP nor IPv6"
    OWN_FRAME = "sent by this NIC"
    ETHERNET_DESTINATION = "addressed to another MAC"
    NOT_IPV4_ARP = "ARP for something other than IPv4 over Ethernet"
    NOT_REQUEST = "an ARP reply; only requests are answered"
    BAD_SENDER = "ARP from a multicast, broadcast or loopback IP, which the kernel drops too"
    NOT_ICMPV6 = "IPv6 but not ICMPv6 (or behind extension headers)"
    NOT_SOLICITATION = "ICMPv6 but not a Neighbor Solicitation"
    HOP_LIMIT = "hop limit is not 255, so it crossed a router (RFC 4861)"
    BAD_CHECKSUM = "ICMPv6 checksum is wrong"
    MALFORMED = "malformed Neighbor Solicitation or Advertisement (RFC 4861 7.1)"
    WRONG_GROUP = "IPv6 destination is neither the target nor its solicited-node group"
    NOT_ANNOUNCED = "asks for an IP this node does not announce on this NIC"
    GRATUITOUS = "a gratuitous announcement by another host"
    CONFLICT = "another MAC announces an IP this node announces: a second speaker?"
    # Decided by the socket loop (app.agent.speaker) when the kernel refuses the answer.
    NOT_SENT = "the answer could not be sent (the NIC is down, or its transmit queue full)"
    # Decided by the socket loop (app.agent.speaker) from where the kernel says a frame came
    # from, before classify() sees it; listed here so every reason is in one place.
    OTHER_HOST = "the kernel marked it for another host (a VLAN tag this node has no link for)"
    OTHER_INTERFACE = "received on another NIC than the socket's"
    ERROR = "classify() failed on it: a bug, logged"


@dataclass(frozen=True, slots=True)
class Nic:
    """What a reply needs to know about the NIC it leaves through."""

    mac: bytes  # 6 bytes


@dataclass(frozen=True, slots=True)
class Reply:
    frame: bytes
    ip: IP  # the announced IP asked for
    asker: str  # who asked, for the log


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ethernet(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return dst + src + struct.pack("!H", ethertype)


# --- ARP ------------------------------------------------------------------------------


def _arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH", 1, ETH_P_IPV4, 6, 4, op) + sha + spa + tha + tpa


def gratuitous_arp(mac: bytes, ip: ipaddress.IPv4Address) -> tuple[bytes, bytes]:
    """A gratuitous request and reply, both broadcast, as OpenELB and MetalLB send them.

    The reply names our MAC as target hardware address too: Linux only treats a reply as
    gratuitous (and overrides a fresh neighbour entry with it) when ``tha == sha``.
    """
    packed = ip.packed
    head = _ethernet(BROADCAST, mac, ETH_P_ARP)
    return (
        head + _arp(ARP_REQUEST, mac, packed, BROADCAST, packed),
        head + _arp(ARP_REPLY, mac, packed, mac, packed),
    )


def _classify_arp(frame: bytes, nic: Nic, announced: frozenset[IP]) -> Reply | Drop:
    if len(frame) < ETH_HEADER + ARP_SIZE:
        return Drop.TOO_SHORT
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, ETH_HEADER)
    # Hardware type 6 (IEEE 802) too: Linux's arp_process accepts it on Ethernet (RFC 2625).
    if htype not in ARP_ETHERNET or (ptype, hlen, plen) != (ETH_P_IPV4, 6, 4):
        return Drop.NOT_IPV4_ARP
    body = ETH_HEADER + 8
    sha, spa = frame[body : body + 6], frame[body + 6 : body + 10]
    tpa = frame[body + 16 : body + 20]
    sender = ipaddress.IPv4Address(spa)
    if sender.is_multicast or sender.is_loopback or sender == LIMITED_BROADCAST:
        return Drop.BAD_SENDER  # a martian source to the kernel's ip_route_input
    if sender in announced and sha != nic.mac:
        return Drop.CONFLICT  # never answered: replying would start an ARP fight
    if op != ARP_REQUEST:
        return Drop.NOT_REQUEST
    if spa == tpa:
        return Drop.GRATUITOUS
    target = ipaddress.IPv4Address(tpa)
    if target not in announced:
        return Drop.NOT_ANNOUNCED
    # The answer goes to the sender's hardware address, which may differ from the
    # Ethernet source when a proxy forwarded the request.
    reply = _ethernet(sha, nic.mac, ETH_P_ARP) + _arp(ARP_REPLY, nic.mac, tpa, sha, spa)
    return Reply(reply, target, f"{ipaddress.IPv4Address(spa)} ({mac_text(sha)})")


# --- NDP ------------------------------------------------------------------------------


def solicited_node(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX, the group a Neighbor Solicitation for ``ip`` is sent to."""
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip.packed[13:])


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    return b"\x33\x33" + group.packed[12:]


def icmpv6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, msg: bytes) -> int:
    """RFC 4443 section 2.3: one's complement sum over the pseudo-header and the message."""
    data = src.packed + dst.packed + struct.pack("!I3xB", len(msg), IPPROTO_ICMPV6) + msg
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload_len: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, payload_len, IPPROTO_ICMPV6, 255) + src.packed + dst.packed


def neighbor_advert(
    nic: Nic,
    target: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    dst_mac: bytes,
    solicited: bool,
) -> bytes:
    """A Neighbor Advertisement for ``target`` carrying this NIC's MAC, override set.

    Its source is the target itself, as when the kernel answers for an address it owns;
    tools such as ndisc6 ignore advertisements from any other source.
    """
    src = target
    flags = NA_OVERRIDE | (NA_SOLICITED if solicited else 0)
    body = struct.pack("!BBHB3x", ND_ADVERT, 0, 0, flags) + target.packed
    body += struct.pack("!BB", OPT_TARGET_LL, 1) + nic.mac
    checksum = icmpv6_checksum(src, dst, body)
    body = body[:2] + struct.pack("!H", checksum) + body[4:]
    return _ethernet(dst_mac, nic.mac, ETH_P_IPV6) + _ipv6(src, dst, len(body)) + body


def unsolicited_advert(nic: Nic, target: ipaddress.IPv6Address) -> bytes:
    return neighbor_advert(nic, target, ALL_NODES, multicast_mac(ALL_NODES), solicited=False)


def _options(data: bytes) -> dict[int, bytes] | None:
    """NDP options by type; None when one is malformed: a zero length (RFC 4861 4.6), a
    length running past the message, or a link-layer address option not of Ethernet's
    size (the kernel drops those too)."""
    found: dict[int, bytes] = {}
    while data:
        if len(data) < 2 or data[1] == 0 or len(data) < data[1] * 8:
            return None
        size = data[1] * 8
        kind, value = data[0], data[2:size]
        if kind in (OPT_SOURCE_LL, OPT_TARGET_LL) and size != 8:
            return None
        found.setdefault(kind, value)
        data = data[size:]
    return found


def _classify_ndp(frame: bytes, nic: Nic, announced: frozenset[IP]) -> Reply | Drop:
    # Every read below is of bytes known to be there: the IPv6 header by this length check,
    # the ICMPv6 message by its declared payload length (checked against the frame, and
    # long enough for the field read), the options by _options.
    if len(frame) < ETH_HEADER + IPV6_HEADER:
        return Drop.TOO_SHORT
    ip6 = ETH_HEADER
    if frame[ip6] >> 4 != 6:
        return Drop.MALFORMED
    payload_len, next_header, hop_limit = struct.unpack_from("!HBB", frame, ip6 + 4)
    if next_header != IPPROTO_ICMPV6:
        return Drop.NOT_ICMPV6
    # The payload length is what counts, not the frame: Ethernet pads short frames, and
    # the BPF filter reads the ICMPv6 type at a fixed offset whatever the length says.
    msg = frame[ip6 + IPV6_HEADER : ip6 + IPV6_HEADER + payload_len]
    if len(msg) < payload_len or len(msg) < 4:  # cut short, or no room for an ICMPv6 header
        return Drop.TOO_SHORT
    icmp_type = msg[0]
    if icmp_type not in (ND_SOLICIT, ND_ADVERT):
        return Drop.NOT_SOLICITATION
    # RFC 4861 7.1.1 and 7.1.2: the checks shared by solicitations and advertisements; an
    # advertisement failing them is no evidence of a second speaker either.
    if hop_limit != 255:
        return Drop.HOP_LIMIT
    if len(msg) < 24 or msg[1] != 0:
        return Drop.MALFORMED
    src = ipaddress.IPv6Address(frame[ip6 + 8 : ip6 + 24])
    dst = ipaddress.IPv6Address(frame[ip6 + 24 : ip6 + 40])
    if icmpv6_checksum(src, dst, msg) != 0:
        return Drop.BAD_CHECKSUM
    target = ipaddress.IPv6Address(msg[8:24])
    options = _options(msg[24:])
    # A loopback source never comes from the wire: ipv6_rcv drops it (RFC 4291 2.5.3).
    if options is None or target.is_multicast or src.is_multicast or src.is_loopback:
        return Drop.MALFORMED
    if icmp_type == ND_ADVERT:
        if dst.is_multicast and msg[4] & NA_SOLICITED:  # RFC 4861 7.1.2
            return Drop.MALFORMED
        their_mac = options.get(OPT_TARGET_LL, frame[6:12])[:6]
        if target in announced and their_mac != nic.mac:
            return Drop.CONFLICT
        return Drop.NOT_SOLICITATION
    source_ll = options.get(OPT_SOURCE_LL)
    asker_mac = source_ll[:6] if source_ll is not None else frame[6:12]
    if src in announced and asker_mac != nic.mac:
        return Drop.CONFLICT  # another host uses our IP as its own, as in _classify_arp
    # RFC 4861 7.1.1: duplicate address detection (source ::) carries no source link-layer
    # option and goes to a solicited-node group (Linux drops it too: "bad DAD packet").
    if src == UNSPECIFIED and (source_ll is not None or dst != solicited_node(target)):
        return Drop.MALFORMED
    if dst not in (target, solicited_node(target)):
        return Drop.WRONG_GROUP
    if target not in announced:
        return Drop.NOT_ANNOUNCED
    if src == UNSPECIFIED:  # duplicate address detection: answer all nodes (RFC 4861 7.2.4)
        reply = unsolicited_advert(nic, target)
        return Reply(reply, target, "duplicate address detection")
    reply = neighbor_advert(nic, target, src, asker_mac, solicited=True)
    return Reply(reply, target, f"{src} ({mac_text(asker_mac)})")


def classify(frame: bytes, nic: Nic, announced: Iterable[IP]) -> Reply | Drop:
    """The whole decision about one received frame."""
    if len(frame) < ETH_HEADER:
        return Drop.TOO_SHORT
    dst_mac, src_mac = frame[0:6], frame[6:12]
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype not in (ETH_P_ARP, ETH_P_IPV6):
        return Drop.OTHER_ETHERTYPE
    if src_mac == nic.mac:
        return Drop.OWN_FRAME
    if dst_mac != nic.mac and not dst_mac[0] & 1:  # unicast to someone else
        return Drop.ETHERNET_DESTINATION
    ips = announced if isinstance(announced, frozenset) else frozenset(announced)
    if ethertype == ETH_P_ARP:
        return _classify_arp(frame, nic, ips)
    return _classify_ndp(frame, nic, ips)
