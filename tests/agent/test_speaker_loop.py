"""The speaker's loop in virtual time: stand-in ports and sockets, a clock that moves only
when the loop waits (its selector) or the test says so. No root, no wall clock."""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import selectors
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from app.agent import speaker as speaker_module
from app.agent.frames import Nic, mac_bytes
from app.agent.speaker import GRATUITOUS_EVERY, Speaker, Target, burst
from app.core.addresses import IP

V4 = ipaddress.IPv4Address("198.51.100.101")
V6 = ipaddress.IPv6Address("2001:db8::101")
MAC = mac_bytes("02:00:00:00:00:01")
ROUNDS = len(burst(0.0))
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000


class _Sock:
    """A packet socket stand-in: records what is sent, and when; a real descriptor for
    the selector, readable only when the test queues an error (``fail``)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._mine, self._peer = socket.socketpair()
        self._errors: list[int] = []

    def fileno(self) -> int:
        return self._mine.fileno()

    def send(self, frame: bytes) -> int:
        if self.lab.send_error is not None:
            raise OSError(self.lab.send_error, os.strerror(self.lab.send_error))
        self.lab.sent.append((self.lab.now, frame))
        return len(frame)

    def fail(self, code: int) -> None:
        self._errors.append(code)
        self._peer.send(b"x")

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        if not self._errors:
            raise BlockingIOError
        self._mine.recv(1)
        code = self._errors.pop(0)
        raise OSError(code, "stand-in")

    def close(self) -> None:
        self._mine.close()
        self._peer.close()


@dataclass
class Lab:
    now: float = 1000.0
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    ports: list[Any] = field(default_factory=list)
    links: socket.socket | None = None  # the test's end of the link messages' socket
    polls: list[int] = field(default_factory=list)  # frames sent so far, at each select()
    speakers: list[Speaker] = field(default_factory=list)  # closed after the test, failed too
    send_error: int | None = None  # what every send fails with, if anything

    def clock(self) -> float:
        return self.now

    def selector(self) -> selectors.BaseSelector:
        lab = self

        class Virtual(selectors.DefaultSelector):
            def select(self, timeout: float | None = None) -> Any:
                """What is readable now; else the clock moves on by the whole timeout."""
                lab.polls.append(len(lab.sent))
                ready = super().select(0)
                if not ready:
                    assert timeout is not None
                    lab.now += timeout
                return ready

        return Virtual()

    def rounds(self) -> list[float]:
        """When each gratuitous round went out (frames sent at one instant are one round)."""
        return sorted({t for t, _ in self.sent})

    def link(self, index: int, up: bool, kind: int = 16) -> None:
        """The kernel's RTM_NEWLINK (or ``kind``: 17 is RTM_DELLINK) for link ``index``, as
        the rtnetlink link group sends it."""
        flags = IFF_UP | IFF_RUNNING | IFF_LOWER_UP if up else 0
        info = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF)
        assert self.links is not None
        self.links.send(struct.pack("=IHHII", 16 + len(info), kind, 0, 0, 0) + info)


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    lab = Lab()

    class FakePort:
        retrying = False

        def __init__(self, target: Target) -> None:
            self.name, self.index, self.nic = target.name, target.index, target.nic
            self.ips: frozenset[IP] = frozenset()
            self.down = self.gone = False
            self.unbound = False  # the kernel unbound the sockets: their NIC was removed
            self.joined: set[ipaddress.IPv6Address] = set()  # no groups: nothing to rejoin
            self.arp, self.ndp = _Sock(lab), _Sock(lab)
            lab.ports.append(self)

        def set_ips(self, ips: frozenset[IP], log: Any) -> None:
            self.ips = ips

        def bound(self) -> bool:
            return not self.unbound

        def close(self) -> None:
            self.arp.close()
            self.ndp.close()

    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    lab.links = ours
    monkeypatch.setattr(speaker_module, "_Port", FakePort)
    # The host's own link messages stay out of these tests (raising=False: older speakers
    # watched no links).
    monkeypatch.setattr(speaker_module, "_link_monitor", lambda: theirs, raising=False)
    try:
        yield lab
    finally:
        for speaker in lab.speakers:
            speaker.close()
        for port in lab.ports:
            port.close()
        theirs.close()
        ours.close()


def speaker_for(lab: Lab, *ips: IP, index: int = 2) -> Speaker:
    speaker = Speaker(lab.lines.append, clock=lab.clock, selector=lab.selector)
    lab.speakers.append(speaker)
    speaker.update({"eth0": Target("eth0", index, Nic(MAC), frozenset(ips))})
    return speaker


def test_rounds_overdue_after_a_stall_go_out_as_one_and_all_rounds_are_sent(lab: Lab) -> None:
    """A process frozen for 2.5 s (a CPU limit, a slow tick, a blocked log pipe) owed two
    rounds when it woke: they went out back to back, 0 s apart."""
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 0.05)
    assert lab.rounds() == [1000.0]
    lab.now += 2.5  # frozen
    speaker.serve(lab.now + 10)
    rounds = lab.rounds()
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert len(rounds) == ROUNDS, rounds  # every round is still sent
    assert rounds[1] == pytest.approx(1002.55)  # at once on waking: one round for the two
    assert min(gaps) >= GRATUITOUS_EVERY - 1e-9, gaps
    assert len(lab.sent) == 2 * ROUNDS  # an ARP request and reply a round


def test_rounds_on_time_are_the_takeover_schedule(lab: Lab) -> None:
    speaker = speaker_for(lab, V4, V6)
    speaker.serve(lab.now + 8)
    assert lab.rounds() == pytest.approx(burst(1000.0))
    assert len(lab.sent) == 3 * ROUNDS  # ARP request, ARP reply, advertisement


def test_a_big_round_goes_out_in_slices_with_requests_answered_between(lab: Lab) -> None:
    """20,000 IPs made a round of 40,000 frames, 0.2 s during which nobody was answered."""
    base = ipaddress.IPv4Address("10.20.0.1")
    speaker = speaker_for(lab, *(base + i for i in range(2500)))
    speaker.serve(lab.now + 8)
    assert len(lab.rounds()) == ROUNDS
    assert len(lab.sent) == 2 * 2500 * ROUNDS
    between = [b - a for a, b in itertools.pairwise(lab.polls)]
    assert max(between) <= 2 * 1000, max(between)  # a slice: 1,000 ARP requests and replies


def test_a_lost_ip_gets_no_more_rounds_and_a_new_one_its_own(lab: Lab) -> None:
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 0.5)
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V6}))})
    speaker.serve(lab.now + 8)
    v4 = [t for t, f in lab.sent if f[12:14] == b"\x08\x06"]
    v6 = [t for t, f in lab.sent if f[12:14] == b"\x86\xdd"]
    assert v4 == [1000.0, 1000.0]
    assert v6 == pytest.approx(burst(1000.5))


def test_a_link_down_and_up_between_two_looks_is_announced_again(lab: Lab) -> None:
    speaker = speaker_for(lab, V4, V6)
    speaker.serve(lab.now + 6)
    assert len(lab.rounds()) == ROUNDS
    lab.sent.clear()
    port = lab.ports[0]
    lab.link(2, up=False)  # a carrier blip: the look before and the one after see it up
    for sock in (port.arp, port.ndp):  # and, set down, the kernel tells each packet socket
        sock.fail(errno.ENETDOWN)
    lab.link(7, up=True)  # another NIC's news: nothing to do
    speaker.serve(lab.now + 0.1)
    assert lab.sent == []
    lab.link(2, up=True)
    lab.link(2, up=True)  # the same news twice (a later flag change): one burst
    speaker.serve(lab.now + 6)
    assert len(lab.rounds()) == ROUNDS, lab.rounds()
    assert len(lab.sent) == 3 * ROUNDS
    assert lab.lines == ["eth0: link back up, announcing 2 IPs again"], lab.lines


def test_rounds_stop_while_the_link_is_down(lab: Lab) -> None:
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 0.5)
    lab.link(2, up=False)
    speaker.serve(lab.now + 6)
    assert lab.rounds() == [1000.0]


def test_link_messages_are_read_as_the_kernel_writes_them() -> None:
    def message(kind: int, index: int, flags: int, pad: bytes = b"") -> bytes:
        info = struct.pack("=BxHiII", 0, 1, index, flags, 0) + pad
        return struct.pack("=IHHII", 16 + len(info), kind, 0, 0, 0) + info

    up = IFF_UP | IFF_LOWER_UP | IFF_RUNNING
    data = (
        message(16, 3, up, pad=b"\x08\x00\x03\x00eth\x00")  # an attribute: skipped over
        + message(16, 4, IFF_UP)  # set up, no carrier
        + message(20, 5, up)  # RTM_NEWADDR: not a link message
        + message(17, 6, up)  # RTM_DELLINK
    )
    assert speaker_module.link_states(data) == [(3, True), (4, False), (6, None)]
    assert speaker_module.link_states(data[:-4]) == [(3, True), (4, False)]  # cut short
    assert speaker_module.link_states(b"\x00" * 20) == []  # length 0: no loop


def test_reopening_a_nics_sockets_says_why(lab: Lab) -> None:
    speaker = speaker_for(lab, V4)
    speaker.update({"eth0": Target("eth0", 9, Nic(MAC), frozenset({V4}))})
    other = mac_bytes("02:00:00:00:00:02")
    speaker.update({"eth0": Target("eth0", 9, Nic(other), frozenset({V4}))})
    speaker.update({"ens9": Target("ens9", 9, Nic(other), frozenset({V4}))})
    assert lab.lines == [
        "eth0: ifindex 2 -> 9 (the NIC was made again), opening its sockets again",
        "eth0: MAC 02:00:00:00:00:01 -> 02:00:00:00:00:02, opening its sockets again",
        "ens9: renamed from eth0, its sockets opened again",
    ]


def test_a_nics_flags_are_asked_of_the_kernel() -> None:
    # The ENOBUFS path asks each NIC with SIOCGIFFLAGS: its ifreq was packed with one value
    # for two fields, a struct.error that killed the agent (a review's case).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert speaker_module._nic_up(sock, "lo") is True
        assert speaker_module._nic_up(sock, "no-such-nic0") is False


def test_lost_link_messages_announce_the_nics_that_are_up_again(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 6)
    lab.sent.clear()

    class Overflowed:
        calls = 0

        def recv(self, size: int) -> bytes:
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.ENOBUFS, "No buffer space available")
            raise BlockingIOError

    monkeypatch.setattr(speaker_module, "_nic_up", lambda sock, name: True)
    speaker._link_changes(cast(socket.socket, Overflowed()))
    speaker.serve(lab.now + 6)
    assert len(lab.rounds()) == ROUNDS
    assert any("link messages were lost" in line for line in lab.lines), lab.lines


def test_a_nic_that_failed_and_is_no_target_any_more_is_not_retried(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # retrying stayed True once a NIC had failed, so the agent planned again on every tick.
    def refused(target: Target) -> Any:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(speaker_module, "_Port", refused)
    speaker = speaker_for(lab, V4)
    assert speaker.retrying
    speaker.update({})
    assert not speaker.retrying


def test_gratuitous_messages_that_cannot_be_sent_are_logged_once(lab: Lab) -> None:
    """A NIC set down before the agent heard of it (ENETDOWN), or a full transmit queue
    (ENOBUFS), failed every round: one log line a round, five a takeover, per NIC."""
    lab.send_error = errno.ENETDOWN
    speaker = speaker_for(lab, V4, V6)
    speaker.serve(lab.now + 8)
    assert len(lab.lines) == 1, lab.lines
    assert lab.lines[0].startswith("eth0: cannot send (Network is down)"), lab.lines
    assert "3 frames not sent" in lab.lines[0], lab.lines  # the first round's
    lab.send_error = None
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V4, V6, V4 + 1}))})
    speaker.serve(lab.now + 0.1)
    assert len(lab.sent) == 2  # the new IP's request and reply
    assert lab.lines[1:] == ["eth0: sending again (12 frames not sent since the last log)"]


def test_the_groups_the_kernel_holds_are_read_per_nic() -> None:
    table = (
        "1    lo              ff020000000000000000000000000001     1 0000000C 0\n"
        "3    enp0s8          ff0200000000000000000001ff000101     1 00000004 0\n"
        "3    enp0s8          ff020000000000000000000000000001     1 0000000C 0\n"
        "31   veth9           ff0200000000000000000001ff000102     1 00000004 0\n"
        "3    enp0s8          zz\n"  # not a group: skipped
    )
    assert speaker_module.held_groups(table, 3) == {
        ipaddress.IPv6Address("ff02::1:ff00:101"),
        ipaddress.IPv6Address("ff02::1"),
    }
    assert speaker_module.held_groups("", 3) == set()


def test_a_nic_removed_and_back_between_two_looks_gets_new_sockets(lab: Lab) -> None:
    """Moved to another namespace and back, a NIC keeps name, ifindex and MAC, but the kernel
    unbinds packet sockets from it for good: the look after must open them again."""
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 6)
    lab.sent.clear()
    lab.link(2, up=False, kind=17)  # RTM_DELLINK
    lab.link(2, up=True)  # back, the same ifindex
    speaker.serve(lab.now + 0.1)
    assert lab.sent == []  # no burst on the unbound sockets
    assert speaker.retrying  # so the agent calls update() at its next look
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V4}))})
    assert len(lab.ports) == 2
    assert not speaker.retrying
    speaker.serve(lab.now + 6)
    assert len(lab.rounds()) == ROUNDS
    assert lab.lines == ["eth0: the NIC was removed and came back, opening its sockets again"]


def test_sockets_that_lost_their_nic_are_opened_again(lab: Lab) -> None:
    """ENXIO: the sockets' NIC was removed (its link message lost, or links not watched).
    It was logged as a NIC down or a full queue, and the sockets kept forever."""
    lab.send_error = errno.ENXIO
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 0.1)
    assert speaker.retrying
    lab.send_error = None
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V4}))})
    speaker.serve(lab.now + 0.1)
    assert len(lab.ports) == 2
    assert len(lab.sent) == 2  # the new sockets' first round
    assert lab.lines == ["eth0: the NIC was removed and came back, opening its sockets again"]


def test_a_frame_over_the_mtu_is_not_blamed_on_a_full_queue(lab: Lab) -> None:
    """EMSGSIZE (an MTU below the frame: an advertisement is 86 bytes) was logged as 'the NIC
    is down or its transmit queue is full', sending the admin to the wrong place."""
    lab.send_error = errno.EMSGSIZE
    speaker_for(lab, V6).serve(lab.now + 0.1)
    assert len(lab.lines) == 1, lab.lines
    assert "the frame is larger than the NIC's MTU" in lab.lines[0], lab.lines
    assert "transmit queue" not in lab.lines[0], lab.lines


def test_sockets_unbound_with_no_link_message_are_opened_again(lab: Lab) -> None:
    """A NIC away and back between two looks, the link monitor unavailable (or its message
    lost): the NIC looked the same, so its dead sockets were kept and its IPs unanswered."""
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 6)
    assert not speaker.retrying
    lab.ports[0].unbound = True
    assert speaker.retrying  # so the agent calls update() at this look
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V4}))})
    assert len(lab.ports) == 2
    assert not speaker.retrying
    assert lab.lines == ["eth0: the NIC was removed and came back, opening its sockets again"]


def test_lost_link_messages_find_unbound_sockets_and_are_said_once(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOBUFS: the NIC's removal may be among the lost messages; no rounds go to its dead
    sockets, and a storm that overflows the buffer again and again is one log line."""
    speaker = speaker_for(lab, V4)
    speaker.serve(lab.now + 6)
    lab.sent.clear()

    class Overflowed:
        calls = 0

        def recv(self, size: int) -> bytes:
            self.calls += 1
            if self.calls % 2:
                raise OSError(errno.ENOBUFS, "No buffer space available")
            raise BlockingIOError

    monkeypatch.setattr(speaker_module, "_nic_up", lambda sock, name: True)
    lab.ports[0].unbound = True
    overflowed = Overflowed()
    speaker._link_changes(cast(socket.socket, overflowed))
    assert lab.ports[0].gone and speaker.retrying
    speaker.serve(lab.now + 6)
    assert lab.sent == []
    speaker.update({"eth0": Target("eth0", 2, Nic(MAC), frozenset({V4}))})
    speaker.serve(lab.now + 6)
    speaker._link_changes(cast(socket.socket, overflowed))  # the storm goes on
    speaker.serve(lab.now + 6)
    assert len(lab.rounds()) == 2 * ROUNDS  # the new sockets', then the overflow's
    lost = [line for line in lab.lines if "link messages were lost" in line]
    assert len(lost) == 1, lab.lines
