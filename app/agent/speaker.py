"""The layer2 speaker's socket loop: raw AF_PACKET sockets per NIC, moving bytes only.

Every frame goes to :func:`app.agent.frames.classify`; this module opens and closes
sockets, joins solicited-node groups, sends replies and the gratuitous messages on
takeover (immediately, then every 1.1 s for 5 s, as MetalLB does; again when a NIC's link
comes back up), and stops answering for an IP the moment :meth:`Speaker.update` no longer
lists it. It answers only frames the kernel delivered to this host on the port's own NIC
(as the kernel's own ARP and IPv6 receive paths do), and a frame classify() fails on is
counted and logged, never fatal.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import selectors
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from app.agent.frames import (
    ETH_P_ARP,
    ETH_P_IPV6,
    Drop,
    Nic,
    Reply,
    classify,
    gratuitous_arp,
    mac_text,
    solicited_node,
    unsolicited_advert,
)
from app.core.addresses import IP

GRATUITOUS_EVERY = 1.1  # seconds between gratuitous messages after a takeover
GRATUITOUS_FOR = 5.0  # seconds of gratuitous messages after a takeover
# sockaddr_ll pkttype: frames for this host, everyone, a group; frames this host sent.
# Anything else (PACKET_OTHERHOST: another host's unicast, or a VLAN this node has no link
# for, the tag already stripped) the kernel's arp_rcv and ipv6_rcv drop, and so do we.
FOR_THIS_HOST = frozenset({socket.PACKET_HOST, socket.PACKET_BROADCAST, socket.PACKET_MULTICAST})
PACKET_OUTGOING = socket.PACKET_OUTGOING
SO_ATTACH_FILTER = 26
MAX_FRAME = 65535

# Classic BPF: keep only ICMPv6 Neighbor Solicitations and Advertisements without extension
# headers, so a busy IPv6 node does not wake the agent for every packet.
_NS_FILTER = (
    (0x30, 0, 0, 20),  # ldb [20]: IPv6 next header
    (0x15, 0, 4, 58),  # jeq ICMPv6, else drop
    (0x30, 0, 0, 54),  # ldb [54]: ICMPv6 type
    (0x15, 1, 0, 135),  # jeq Neighbor Solicitation: accept
    (0x15, 0, 1, 136),  # jeq Neighbor Advertisement: accept, else drop
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)
# Link changes, heard from the kernel's rtnetlink multicast group (unprivileged): a link
# down and up again between two ticks (a carrier blip, a switch port bounced) is otherwise
# never seen, and neighbours that flushed their caches would wait for the next ARP.
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
SIOCGIFFLAGS = 0x8913
LINK_BUFFER = 1 << 20  # bytes of link messages the kernel may queue for us
CONFLICT_LOG_EVERY = 30.0  # seconds between two conflict logs of one NIC
CONFLICT_MACS_NAMED = 4  # MACs a conflict log names of the frames since the last; others counted
ERROR_LOG_EVERY = 30.0  # seconds between two logs of frames classify() failed on
SEND_LOG_EVERY = 30.0  # seconds between two logs of frames a NIC would not send
# Why the kernel refuses a frame, by errno, and where to look; others get the usual two.
SEND_CAUSES = {
    errno.ENETDOWN: "the NIC is down: see 'ip link show {nic}'",
    errno.ENOBUFS: "its transmit queue is full: see 'tc -s qdisc show dev {nic}'",
    errno.EMSGSIZE: "the frame is larger than the NIC's MTU: see 'ip link show {nic}'",
}
SEND_CAUSE = (
    "the NIC is down or its transmit queue is full: see 'ip -s link show {nic}' and "
    "'tc -s qdisc show dev {nic}'"
)
IGMP6 = "/proc/net/igmp6"  # the IPv6 multicast groups the kernel holds, per NIC

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """A NIC and the IPs to announce on it."""

    name: str
    index: int
    nic: Nic
    ips: frozenset[IP]


def burst(now: float) -> list[float]:
    """When to send gratuitous messages after taking an IP at ``now``: at once, then every
    GRATUITOUS_EVERY seconds while within GRATUITOUS_FOR seconds (when the loop is on time:
    see :class:`_Burst` for a loop that stalled)."""
    count = int(GRATUITOUS_FOR / GRATUITOUS_EVERY) + 1
    return [now + k * GRATUITOUS_EVERY for k in range(count)]


ROUNDS = len(burst(0.0))  # gratuitous rounds per takeover
# IPs announced in one go: a round of 20,000 IPs (40,000 frames) took 0.2 s, and nobody was
# answered meanwhile; sent in slices, requests are answered between two.
ROUND_SLICE = 1000


@dataclass(slots=True)
class _Burst:
    """The gratuitous rounds still owed for IPs taken together on one NIC.

    A round is sent when due and the next falls due GRATUITOUS_EVERY seconds after it was
    sent, not after it was planned: rounds that fell due while the process stood still (a
    CPU limit, a slow tick, a blocked log pipe) go out as one, and every round is still sent,
    each at least GRATUITOUS_EVERY apart. (MetalLB's ticker drops missed ticks instead; the
    neighbours that missed the early rounds are the ones the later ones are for.)"""

    name: str
    ips: set[IP]
    due: float
    left: int = ROUNDS
    sending: list[IP] = field(default_factory=list)  # what the round under way has left


@dataclass(slots=True)
class _Unsent:
    """A NIC whose frames the kernel refuses: when that was last logged, and how many frames
    it refused since."""

    logged: float
    count: int = 0


@dataclass(slots=True)
class _Conflicts:
    """A NIC's conflicting frames (another MAC announcing one of its IPs): when that was last
    logged, and how many came since from which MACs (the first CONFLICT_MACS_NAMED), so frames
    from ever new, spoofed MACs are neither a log line nor a remembered MAC each."""

    logged: float
    count: int = 0
    macs: list[bytes] = field(default_factory=list)
    others: bool = False  # more MACs than named

    def add(self, mac: bytes) -> None:
        self.count += 1
        if mac in self.macs:
            return
        if len(self.macs) < CONFLICT_MACS_NAMED:
            self.macs.append(mac)
        else:
            self.others = True

    def since(self) -> str:
        if not self.count:
            return ""
        named = ", ".join(mac_text(mac) for mac in self.macs)
        return (f" ({self.count} more conflicting frames since the last such log, from {named}"
                f"{' and others' if self.others else ''})")  # fmt: skip


def link_states(data: bytes) -> list[tuple[int, bool | None]]:
    """(ifindex, up) for each link message in a datagram of the rtnetlink link group, in
    order: up is True when set up with carrier (IFF_UP and IFF_LOWER_UP), False when not,
    None when the link was deleted. Anything else, or cut short, is skipped."""
    found: list[tuple[int, bool | None]] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= 32:
            index, flags = struct.unpack_from("=iI", data, offset + 20)  # struct ifinfomsg
            up = bool(flags & IFF_UP and flags & IFF_LOWER_UP)
            found.append((index, None if kind == RTM_DELLINK else up))
        offset += (length + 3) & ~3
    return found


def held_groups(table: str, index: int) -> set[ipaddress.IPv6Address]:
    """The IPv6 groups the kernel holds on link ``index``, read from /proc/net/igmp6's text
    (a line per group: ifindex, name, the group in hex, users, flags, timer)."""
    found = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == str(index) and len(fields[2]) == 32:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv6Address(bytes.fromhex(fields[2])))
    return found


def _link_monitor() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER)
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _nic_up(sock: socket.socket, name: str) -> bool:
    """Whether ``name`` is set up and running, asked of the kernel (SIOCGIFFLAGS)."""
    try:
        # struct ifreq: the name, then a 24-byte union whose first short is the flags.
        answer = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0))
    except OSError:
        return False
    (flags,) = struct.unpack_from("H", answer, 16)
    return bool(flags & IFF_UP and flags & IFF_RUNNING)


def _attach_filter(sock: socket.socket) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in _NS_FILTER)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", len(_NS_FILTER), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _packet_socket(name: str, proto: int) -> socket.socket:
    # Protocol 0 receives nothing: a socket opened with the protocol would take frames of
    # every NIC (and, for IPv6, all of them, unfiltered) until bind() narrows it, and they
    # would stay queued. So: open deaf, attach the filter, then bind to the NIC and the
    # protocol at once (as MetalLB's mdlayher/packet does).
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if proto == ETH_P_IPV6:
            _attach_filter(sock)
        sock.bind((name, proto))  # Python puts the protocol in network order
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Port:
    """The sockets of one NIC. Opened when it first has an IP to announce."""

    def __init__(self, target: Target) -> None:
        self.name, self.index, self.nic = target.name, target.index, target.nic
        self.ips: frozenset[IP] = frozenset()
        self.down = False  # the link went down (rtnetlink said so) and has not come back
        # The NIC was removed (moved to another namespace, deleted): the kernel unbinds the
        # sockets for good, even when it comes back with the same name, ifindex and MAC.
        self.gone = False
        self.joined: set[ipaddress.IPv6Address] = set()
        self.arp = _packet_socket(self.name, ETH_P_ARP)
        try:
            self.ndp = _packet_socket(self.name, ETH_P_IPV6)
        except OSError:
            self.arp.close()
            raise
        # Sockets holding the solicited-node groups, and which holds each group: the kernel
        # charges memberships to a socket's option memory (net.core.optmem_max), about 2,300
        # groups each by default, so more sockets are opened as groups come.
        self._group_socks: list[socket.socket] = []
        self._holder: dict[ipaddress.IPv6Address, socket.socket] = {}
        self._unjoined: set[ipaddress.IPv6Address] = set()  # failed, said once, tried again

    def _join(self, group: ipaddress.IPv6Address) -> None:
        # Joining through the IPv6 stack programs the NIC's multicast filter and sends MLD
        # reports, so snooping switches and bridges forward the solicitations to us.
        mreq = group.packed + struct.pack("@I", self.index)
        for fresh in (False, True):
            if fresh or not self._group_socks:
                self._group_socks.append(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
            sock = self._group_socks[-1]
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                if fresh or exc.errno not in (errno.ENOMEM, errno.ENOBUFS):
                    raise
                continue  # this socket is full: the next one takes the group
            self._holder[group] = sock
            return

    def _leave(self, group: ipaddress.IPv6Address) -> None:
        sock = self._holder.pop(group)
        mreq = group.packed + struct.pack("@I", self.index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq)

    def set_ips(self, ips: frozenset[IP], log: Log) -> None:
        self.ips = ips
        groups = {solicited_node(ip) for ip in ips if isinstance(ip, ipaddress.IPv6Address)}
        for group in sorted(self.joined - groups):
            try:
                self._leave(group)
            except OSError as exc:
                log(f"{self.name}: cannot leave {group}: {exc}")
            self.joined.discard(group)
        self._unjoined &= groups
        failed: list[ipaddress.IPv6Address] = []
        error: OSError | None = None
        recovered = 0
        for group in sorted(groups - self.joined):
            try:
                self._join(group)
            except OSError as exc:
                # Said once per group, tried again every tick (a full socket frees up).
                if group not in self._unjoined:
                    self._unjoined.add(group)
                    failed.append(group)
                    error = exc
                continue
            self.joined.add(group)
            if group in self._unjoined:
                self._unjoined.discard(group)
                recovered += 1
        if failed:  # one line, not one per group: thousands fail at once on a NIC without IPv6
            more = f" and {len(failed) - 1} more groups" if len(failed) > 1 else ""
            log(f"{self.name}: cannot join {failed[0]}{more}: {error}; NDP may not reach this "
                "node for those IPs (is IPv6 off on the NIC? an MTU below 1280 does that); "
                "tried again at every look")  # fmt: skip
        if recovered:
            log(f"{self.name}: joined {recovered} solicited-node groups that had failed")

    def rejoin_lost(self, held: set[ipaddress.IPv6Address], log: Log) -> None:
        """Join again the groups the kernel no longer holds on the NIC (``held``): an MTU set
        below IPv6's minimum (1280) takes IPv6 off the NIC, its memberships with it, and
        setting it back does not restore them, while the sockets still list them."""
        lost = self.joined - held
        if not lost:
            return
        for group in lost:
            with contextlib.suppress(OSError):  # the socket's record; the NIC's is gone
                self._leave(group)
            self.joined.discard(group)
        log(f"{self.name}: the kernel dropped {len(lost)} solicited-node groups (IPv6 was off "
            "on the NIC: an MTU below 1280?); joining them again")  # fmt: skip
        self.set_ips(self.ips, log)

    @property
    def retrying(self) -> bool:
        return bool(self._unjoined)

    def bound(self) -> bool:
        """Whether the kernel still binds the sockets to the NIC. It unbinds them for good
        when the NIC is removed (moved to another namespace, deleted), even when it comes
        back with the same name and ifindex; getsockname() then names no NIC. The link
        monitor says so too (RTM_DELLINK), but it may be unavailable or lose messages."""
        return all(sock.getsockname()[0] for sock in (self.arp, self.ndp))  # about 1 µs each

    def close(self) -> None:
        for sock in (self.arp, self.ndp, *self._group_socks):
            sock.close()  # closing a group socket leaves its groups


class Speaker:
    def __init__(
        self,
        log: Log,
        clock: Callable[[], float] = time.monotonic,
        selector: Callable[[], selectors.BaseSelector] = selectors.DefaultSelector,
    ) -> None:
        self._log, self._clock = log, clock
        # Not select(): it refuses descriptors from 1024 (FD_SETSIZE) on, which an agent
        # with many NICs, watch connections and threads reaches. Sockets are registered
        # while open, each with its port (None: the link messages).
        self._new_selector = selector
        self._selector: selectors.BaseSelector | None = None
        self._ports: dict[str, _Port] = {}
        self._bursts: list[_Burst] = []
        self.drops: Counter[str] = Counter()
        self.replies = 0
        self._conflicts: dict[str, _Conflicts] = {}  # by NIC
        self._failed: set[str] = set()  # NICs whose sockets would not open
        self._error_logged = -ERROR_LOG_EVERY  # when a classify() failure was last logged
        self._errors_unlogged = 0  # failures since then
        self._unsent: dict[str, _Unsent] = {}  # by NIC, while its sends fail
        self._links: socket.socket | None = None  # rtnetlink link messages, once a port opens
        self._links_failed = False  # said once
        self._links_lost = False  # link messages lost (ENOBUFS): said once

    @property
    def retrying(self) -> bool:
        """Whether :meth:`update` has something to try again with the same targets (a NIC
        whose sockets would not open, a solicited-node group not joined): the agent calls it
        on every tick while this holds, and only on a change otherwise. A port whose
        sockets lost their NIC counts, so one away and back between two looks is found
        without the link monitor."""
        return bool(self._failed) or any(
            port.retrying or port.gone or not port.bound() for port in self._ports.values()
        )

    def update(self, targets: Mapping[str, Target]) -> None:
        """Make the announced set exactly ``targets``; losses take effect before returning."""
        closed: dict[int, _Port] = {}  # by ifindex: to say why a NIC's sockets are reopened
        for name in list(self._ports):
            port = self._ports[name]
            target = targets.get(name)
            same_nic = (
                target is not None
                and (target.index, target.nic) == (port.index, port.nic)
                and not port.gone
                and port.bound()
            )
            if target is None or not target.ips or not same_nic:
                if target is not None and target.ips and not same_nic:
                    self._log(f"{name}: {_changed(port, target)}, opening its sockets again")
                closed[port.index] = port
                self._close(name)
        # A NIC that failed and is no target any more has nothing to try again.
        self._failed &= {name for name, target in targets.items() if target.ips}
        now = self._clock()
        for name, target in targets.items():
            if not target.ips:
                continue
            if name not in self._ports:
                try:
                    self._ports[name] = self._open(target)
                    self._failed.discard(name)
                except OSError as exc:
                    if name not in self._failed:  # said once, tried again every tick
                        self._failed.add(name)
                        self._log(f"{name}: cannot open raw sockets: {exc}; not announcing there")
                    continue
                was = closed.get(target.index)
                if was is not None and was.name != name:
                    self._log(f"{name}: renamed from {was.name}, its sockets opened again")
                self._watch_links()
            port = self._ports[name]
            gained = target.ips - port.ips
            lost = port.ips - target.ips
            if lost:
                for b in self._bursts:
                    if b.name == name:
                        b.ips -= lost
            port.set_ips(target.ips, self._log)
            if gained:
                self._bursts.append(_Burst(name, set(gained), now))

    def announced(self) -> dict[str, frozenset[IP]]:
        return {name: port.ips for name, port in self._ports.items()}

    def _open(self, target: Target) -> _Port:
        port = _Port(target)
        try:
            self._watch(port.arp, port)
            self._watch(port.ndp, port)
        except OSError:
            self._unwatch(port.arp)
            port.close()
            raise
        return port

    def _watch(self, sock: socket.socket, port: _Port | None) -> None:
        if self._selector is None:
            self._selector = self._new_selector()
        self._selector.register(sock, selectors.EVENT_READ, port)

    def _unwatch(self, sock: socket.socket) -> None:
        # Before closing: a closed descriptor's number is reused, and the selector would
        # still hold the old socket under it.
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)

    def _close(self, name: str) -> None:
        port = self._ports.pop(name)
        self._bursts = [b for b in self._bursts if b.name != name]
        self._unsent.pop(name, None)
        self._conflicts.pop(name, None)
        self._unwatch(port.arp)
        self._unwatch(port.ndp)
        port.close()

    def close(self) -> None:
        for name in list(self._ports):
            self._close(name)
        if self._links is not None:
            self._unwatch(self._links)
            self._links.close()
            self._links = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def _send(self, port: _Port, sock: socket.socket, frame: bytes) -> bool:
        try:
            sock.send(frame)
        except OSError as exc:
            self.drops[Drop.NOT_SENT.name] += 1
            self._not_sent(port, 1, exc)
            return False
        if port.name in self._unsent:
            self._sent_again(port)
        return True

    def _not_sent(self, port: _Port, count: int, exc: OSError) -> None:
        """``count`` frames the kernel refused on ``port`` (ENOBUFS: its transmit queue is
        full; ENETDOWN: it is down): logged at most every SEND_LOG_EVERY seconds per NIC,
        with how many were lost since, so a request storm is no log storm; the cause named
        by errno (EMSGSIZE: an MTU below the frame is no full queue). ENXIO: the
        sockets lost their NIC (removed, perhaps back already), reopened at the next look."""
        if exc.errno == errno.ENXIO:
            port.gone = True  # the link message may have been lost, or never watched
            return
        now = self._clock()
        unsent = self._unsent.get(port.name)
        if unsent is not None and now - unsent.logged < SEND_LOG_EVERY:
            unsent.count += count
            return
        lost = count + (unsent.count if unsent is not None else 0)
        self._unsent[port.name] = _Unsent(now)
        cause = SEND_CAUSES.get(exc.errno or 0, SEND_CAUSE).format(nic=port.name)
        self._log(
            f"{port.name}: cannot send ({exc.strerror or exc}): {lost} frames not sent (ARP/NDP "
            f"answers, gratuitous messages); {cause}. Said again at most every "
            f"{SEND_LOG_EVERY:.0f} s while it lasts"
        )

    def _sent_again(self, port: _Port) -> None:
        unsent = self._unsent.pop(port.name)
        self._log(f"{port.name}: sending again ({unsent.count} frames not sent since the last log)")

    def _gratuitous(self, now: float) -> None:
        for b in list(self._bursts):
            port = self._ports.get(b.name)
            if port is None or not b.ips or port.down or port.gone:
                self._bursts.remove(b)  # a NIC back up gets a burst of its own
                continue
            if not b.sending:
                if b.due > now:
                    continue
                b.sending, b.left = list(b.ips), b.left - 1
                b.due = now + GRATUITOUS_EVERY  # overdue rounds go out as one
            part = b.sending[-ROUND_SLICE:]
            del b.sending[-ROUND_SLICE:]
            self._round(port, [ip for ip in part if ip in port.ips])  # none lost meanwhile
            if not b.sending and not b.left:
                self._bursts.remove(b)

    def _round(self, port: _Port, ips: Iterable[IP]) -> None:
        """One gratuitous message for each of ``ips``; failures are counted (:meth:`_not_sent`)."""
        sent, failed, error = 0, 0, None
        frames: tuple[bytes, ...]
        for ip in ips:
            if isinstance(ip, ipaddress.IPv4Address):
                frames, sock = gratuitous_arp(port.nic.mac, ip), port.arp
            else:
                frames, sock = (unsolicited_advert(port.nic, ip),), port.ndp
            for frame in frames:
                try:
                    sock.send(frame)
                    sent += 1
                except OSError as exc:
                    failed, error = failed + 1, exc
        if error is not None:
            self._not_sent(port, failed, error)
        elif sent and port.name in self._unsent:
            self._sent_again(port)

    def _watch_links(self) -> None:
        if self._links is not None or self._links_failed:
            return
        try:
            links = _link_monitor()
            try:
                self._watch(links, None)
            except OSError:
                links.close()
                raise
            self._links = links
        except OSError as exc:
            self._links_failed = True
            self._log(f"cannot watch link changes: {exc}; a link down and up again between two "
                      "looks will not be announced again")  # fmt: skip

    def _link_changes(self, sock: socket.socket) -> None:
        for _ in range(64):  # bounded, as frames are
            try:
                data = sock.recv(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    self._log(f"watching link changes failed: {exc}")
                    return
                # The kernel dropped messages (a storm of link changes): ask each NIC, and
                # announce those that are up again, since a blip may be among the lost news,
                # and so may a NIC's removal: its sockets are opened again at the next look.
                if not self._links_lost:  # a storm overflows the buffer again and again
                    self._links_lost = True
                    self._log("link messages were lost (the kernel's buffer overflowed): "
                              "asking each NIC, and announcing the IPs of those up again; "
                              "said once, done at every overflow")  # fmt: skip
                for port in list(self._ports.values()):
                    if not port.gone and not port.bound():
                        port.gone = port.down = True
                    running = _nic_up(port.arp, port.name)
                    if running:
                        port.down = True  # as if it went down and came back: rounds again
                    self._link_state(port, running)
                self._check_groups(list(self._ports.values()))
                continue
            by_index = {port.index: port for port in self._ports.values()}
            changed = []
            for index, up in link_states(data):
                if index not in by_index:
                    continue
                port = by_index[index]
                if up is None:  # deleted, or moved to another namespace
                    port.gone = port.down = True
                    continue
                self._link_state(port, up)
                changed.append(port)
            self._check_groups(changed)

    def _check_groups(self, ports: list[_Port]) -> None:
        """After a link change (an MTU change is one), whether the kernel still holds each
        port's solicited-node groups; those it dropped are joined again."""
        # A removed NIC's groups went with it; its sockets are reopened at the next look.
        ports = [port for port in dict.fromkeys(ports) if port.joined and not port.gone]
        if not ports:
            return
        try:
            with open(IGMP6, encoding="ascii") as table:
                text = table.read()
        except OSError:
            return  # no IPv6 in this kernel: no groups to lose either
        for port in ports:
            if not port.bound():  # removed before its link message was read: not IPv6 off
                port.gone = True
                continue
            port.rejoin_lost(held_groups(text, port.index), self._log)

    def _link_state(self, port: _Port, up: bool) -> None:
        if port.gone:
            return  # the sockets opened again announce, these can send nothing
        if not up:
            port.down = True  # its rounds stop; the next look may close it
        elif port.down:
            port.down = False
            self._bursts = [b for b in self._bursts if b.name != port.name]
            if port.ips:
                self._bursts.append(_Burst(port.name, set(port.ips), self._clock()))
                self._log(f"{port.name}: link back up, announcing {len(port.ips)} IPs again")

    def _receive(self, port: _Port, sock: socket.socket) -> None:
        for _ in range(64):  # bounded, so gratuitous messages are never starved
            try:
                frame, addr = sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ENETDOWN: the NIC was set down (said once per socket by the kernel); the
                # link messages say when it is back.
                if exc.errno != errno.ENETDOWN:
                    self._log(f"{port.name}: receive failed: {exc}")
                return
            if addr[2] == PACKET_OUTGOING:
                continue  # our own replies and announcements
            if addr[2] not in FOR_THIS_HOST:
                self.drops[Drop.OTHER_HOST.name] += 1
                continue
            if addr[0] != port.name:  # bound to the port's NIC: defence in depth
                self.drops[Drop.OTHER_INTERFACE.name] += 1
                continue
            try:
                verdict = classify(frame, port.nic, port.ips)
            except Exception as exc:  # a bug in classify(): one frame lost, not the agent
                self._error(port, frame, exc)
                continue
            if isinstance(verdict, Reply):
                if self._send(port, sock, verdict.frame):
                    self.replies += 1
                continue
            self.drops[verdict.name] += 1
            if verdict is Drop.CONFLICT:
                self._conflict(port, frame)

    def _error(self, port: _Port, frame: bytes, exc: Exception) -> None:
        self.drops[Drop.ERROR.name] += 1
        self._errors_unlogged += 1
        now = self._clock()
        if now - self._error_logged >= ERROR_LOG_EVERY:
            self._log(
                f"{port.name}: bug: classifying a frame failed ({exc!r}), frame dropped, "
                f"{self._errors_unlogged} failed since the last such log; frame: {frame[:96].hex()}"
            )
            self._error_logged, self._errors_unlogged = now, 0

    def _conflict(self, port: _Port, frame: bytes) -> None:
        now, mac = self._clock(), frame[6:12]
        seen = self._conflicts.get(port.name)
        if seen is not None and now - seen.logged < CONFLICT_LOG_EVERY:
            seen.add(mac)
            return
        since = seen.since() if seen is not None else ""
        self._conflicts[port.name] = _Conflicts(now)
        self._log(
            f"conflict on {port.name}: {mac_text(mac)} also announces an IP this node "
            f"announces{since}; is OpenELB's layer2 speaker running too? Two speakers make "
            f"clients flap: run one of them only. Said at most every {CONFLICT_LOG_EVERY:.0f} "
            "s per NIC"
        )

    def serve(self, until: float) -> None:
        """Answer and announce until the clock reaches ``until``."""
        while True:
            now = self._clock()
            self._gratuitous(now)
            if now >= until:
                return
            wake = min([until] + [now if b.sending else b.due for b in self._bursts])
            timeout = max(0.0, wake - now)
            if self._selector is None or not self._selector.get_map():
                time.sleep(timeout)
                continue
            for key, _ in self._selector.select(timeout):
                sock = cast(socket.socket, key.fileobj)
                if key.data is None:
                    self._link_changes(sock)
                else:
                    self._receive(key.data, sock)


def _changed(port: _Port, target: Target) -> str:
    """Why the NIC named ``target.name`` is no longer the one ``port`` was opened on."""
    if target.index != port.index:
        return f"ifindex {port.index} -> {target.index} (the NIC was made again)"
    if target.nic == port.nic:
        return "the NIC was removed and came back"
    return f"MAC {mac_text(port.nic.mac)} -> {mac_text(target.nic.mac)}"
