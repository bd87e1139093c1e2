"""The layer2 speaker's socket loop: raw AF_PACKET sockets per NIC, moving bytes only.

Every frame goes to :func:`app.agent.frames.classify`; this module opens and closes
sockets, joins solicited-node groups, sends replies and the gratuitous messages on
takeover (immediately, then every 1.1 s for 5 s, as MetalLB does), and stops answering
for an IP the moment :meth:`Speaker.update` no longer lists it. It answers only frames the
kernel delivered to this host on the port's own NIC (as the kernel's own ARP and IPv6
receive paths do), and a frame classify() fails on is counted and logged, never fatal.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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
CONFLICT_LOG_EVERY = 30.0  # seconds between two logs of one conflict
ERROR_LOG_EVERY = 30.0  # seconds between two logs of frames classify() failed on

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
    GRATUITOUS_EVERY seconds while within GRATUITOUS_FOR seconds."""
    count = int(GRATUITOUS_FOR / GRATUITOUS_EVERY) + 1
    return [now + k * GRATUITOUS_EVERY for k in range(count)]


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
        for group in sorted(groups - self.joined):
            try:
                self._join(group)
            except OSError as exc:
                # Said once per group, tried again every tick (a full socket frees up).
                if group not in self._unjoined:
                    self._unjoined.add(group)
                    log(f"{self.name}: cannot join {group}: {exc}; NDP may not reach this node")
                continue
            self.joined.add(group)
            self._unjoined.discard(group)

    def close(self) -> None:
        for sock in (self.arp, self.ndp, *self._group_socks):
            sock.close()  # closing a group socket leaves its groups


class Speaker:
    def __init__(self, log: Log, clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._clock = log, clock
        self._ports: dict[str, _Port] = {}
        self._due: dict[tuple[str, IP], list[float]] = {}
        self.drops: Counter[str] = Counter()
        self.replies = 0
        self._conflicts: dict[tuple[str, bytes], float] = {}
        self._failed: set[str] = set()  # NICs whose sockets would not open
        self._error_logged = -ERROR_LOG_EVERY  # when a classify() failure was last logged
        self._errors_unlogged = 0  # failures since then

    def update(self, targets: Mapping[str, Target]) -> None:
        """Make the announced set exactly ``targets``; losses take effect before returning."""
        for name in list(self._ports):
            port = self._ports[name]
            target = targets.get(name)
            same_nic = target is not None and (target.index, target.nic) == (port.index, port.nic)
            if target is None or not target.ips or not same_nic:
                self._close(name)
        now = self._clock()
        for name, target in targets.items():
            if not target.ips:
                continue
            if name not in self._ports:
                try:
                    self._ports[name] = _Port(target)
                    self._failed.discard(name)
                except OSError as exc:
                    if name not in self._failed:  # said once, tried again every tick
                        self._failed.add(name)
                        self._log(f"{name}: cannot open raw sockets: {exc}; not announcing there")
                    continue
            port = self._ports[name]
            gained = target.ips - port.ips
            for ip in port.ips - target.ips:
                self._due.pop((name, ip), None)
            port.set_ips(target.ips, self._log)
            for ip in gained:
                self._due[name, ip] = burst(now)

    def announced(self) -> dict[str, frozenset[IP]]:
        return {name: port.ips for name, port in self._ports.items()}

    def _close(self, name: str) -> None:
        port = self._ports.pop(name)
        for key in [k for k in self._due if k[0] == name]:
            del self._due[key]
        port.close()

    def close(self) -> None:
        for name in list(self._ports):
            self._close(name)

    def _send(self, port: _Port, sock: socket.socket, frame: bytes) -> bool:
        try:
            sock.send(frame)
            return True
        except OSError as exc:
            self._log(f"{port.name}: send failed: {exc}")
            return False

    def _gratuitous(self, now: float) -> None:
        for (name, ip), times in list(self._due.items()):
            port = self._ports.get(name)
            if port is None or ip not in port.ips:
                del self._due[name, ip]
                continue
            if times[0] > now:
                continue
            times.pop(0)
            if isinstance(ip, ipaddress.IPv4Address):
                for frame in gratuitous_arp(port.nic.mac, ip):
                    self._send(port, port.arp, frame)
            else:
                self._send(port, port.ndp, unsolicited_advert(port.nic, ip))
            if not times:
                del self._due[name, ip]

    def _receive(self, port: _Port, sock: socket.socket) -> None:
        for _ in range(64):  # bounded, so gratuitous messages are never starved
            try:
                frame, addr = sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
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
        now = self._clock()
        key = (port.name, frame[6:12])
        if now - self._conflicts.get(key, -CONFLICT_LOG_EVERY) >= CONFLICT_LOG_EVERY:
            self._conflicts[key] = now
            self._log(
                f"conflict on {port.name}: {mac_text(frame[6:12])} also announces an IP this "
                "node announces; is OpenELB's layer2 speaker running too? Two speakers make "
                "clients flap: run one of them only."
            )

    def serve(self, until: float) -> None:
        """Answer and announce until the clock reaches ``until``."""
        while True:
            now = self._clock()
            self._gratuitous(now)
            if now >= until:
                return
            wake = min([until] + [t[0] for t in self._due.values() if t])
            socks = {}
            for port in self._ports.values():
                socks[port.arp.fileno()] = (port, port.arp)
                socks[port.ndp.fileno()] = (port, port.ndp)
            timeout = max(0.0, wake - now)
            if not socks:
                time.sleep(timeout)
                continue
            readable, _, _ = select.select(list(socks), [], [], timeout)
            for fd in readable:
                port, sock = socks[fd]
                self._receive(port, sock)
