"""The layer2 speaker on a real bridge: arping and ndisc6 from a client namespace."""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.agent.election import elect
from app.agent.frames import mac_bytes
from app.agent.speaker import GRATUITOUS_FOR

from .lab import CAN_REACH4, NODES, SUBNET4, SUBNET6, AgentProcess, Lab, sh
from .test_frames import ASKER, arp, ns, payload_len, refix

IP4, IP6 = f"{SUBNET4}.101", f"{SUBNET6}::101"
UNUSED4, UNUSED6 = f"{SUBNET4}.110", f"{SUBNET6}::110"


def snapshot(path: Path, nodes: tuple[str, ...] = ("node1", "node2"),
             used4: tuple[str, ...] = (IP4,), used6: tuple[str, ...] = (IP6,),
             interface6: str = f"can_reach:{SUBNET6}::1") -> Path:  # fmt: skip
    def eip(name: str, address: str, interface: str, used: tuple[str, ...]) -> dict[str, Any]:
        return {
            "apiVersion": "network.kubesphere.io/v1alpha2",
            "kind": "Eip",
            "metadata": {"name": name},
            "spec": {"address": address, "protocol": "layer2", "interface": interface},
            "status": {"used": {ip: "default/web" for ip in used}},
        }

    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in nodes]
    items += [
        # The #331 mistake: can_reach names an IP of the pool, bound on node1's kube-ipvs0.
        eip("v4", f"{SUBNET4}.100-{SUBNET4}.120", f"can_reach:{CAN_REACH4}", used4),
        eip("v6", f"{SUBNET6}::100-{SUBNET6}::120", interface6, used6),
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    tmp.replace(path)  # atomic: the agent never reads half a file
    return path


def winner(ip: str, nodes: tuple[str, ...] = ("node1", "node2")) -> str:
    chosen = elect(ip, nodes)
    assert chosen is not None
    return chosen


def test_the_elected_node_answers_arp_and_ndp(lab: Lab, tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "cluster.json")
    agents = {node: lab.start_agent(node, snap) for node in ("node1", "node2")}
    try:
        w4, w6 = winner(IP4), winner(IP6)
        # The IPs are chosen so that both nodes speak, and the trapped node1 for IPv4.
        assert (w4, w6) == ("node1", "node2")
        agents[w4].wait_for(lambda line: f"announce {IP4} on " in line)
        agents[w6].wait_for(lambda line: f"announce {IP6} on " in line)
        # node1 resolved can_reach to its bridge NIC although 'ip route get' says lo there.
        assert any(f"announce {IP4} on ens3" in line for line in agents["node1"].lines)
        assert lab.arping(IP4) == {lab.mac(w4)}
        assert lab.ndisc(IP6) == lab.mac(w6)
        assert lab.arping(UNUSED4) == set()  # in the pool, not in status.used
        assert lab.arping(f"{SUBNET4}.200") == set()  # in no pool
        assert lab.ndisc(UNUSED6) is None
    finally:
        for agent in agents.values():
            assert agent.stop() == 0, agent.output


def test_report_only_never_answers(lab: Lab, tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "cluster.json", nodes=("node1",))
    agent = lab.start_agent("node1", snap, "--speaker", "off")
    try:
        agent.wait_for(lambda line: f"would announce (report-only) {IP4} on ens3" in line)
        agent.wait_for(lambda line: "can_reach:198.51.100.100 of Eip v4 is bound" in line)
        agent.wait_for(lambda line: line.split("node report: ", 1)[-1].startswith("{"))
        assert lab.arping(IP4) == set()
    finally:
        assert agent.stop() == 0, agent.output


def test_failover_updates_the_clients_neighbor_entry(lab: Lab, tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "cluster.json")
    first = winner(IP4)
    second = next(n for n in ("node1", "node2") if n != first)
    agents = {node: lab.start_agent(node, snap) for node in ("node1", "node2")}
    try:
        agents[first].wait_for(lambda line: f"announce {IP4} on " in line)
        # The client learns the IP the ordinary way: its kernel resolves it with ARP.
        lab.resolve_neighbor(IP4)
        entry = lab.neighbor(IP4)
        assert entry is not None and entry.get("lladdr") == lab.mac(first), entry
        # The announcer dies; the snapshot (the members) no longer lists its node.
        assert agents[first].stop() == 0
        snapshot(snap, nodes=(second,))
        agents[second].wait_for(lambda line: f"announce {IP4} on " in line)
        entry = lab.neighbor_moves_to(IP4, lab.mac(second), within=7)
        assert entry is not None and entry.get("lladdr") == lab.mac(second), entry
    finally:
        for agent in agents.values():
            agent.stop()
        lab.ip(lab.client, "neigh", "flush", "dev", "eth0", check=False)


def test_losing_an_ip_stops_the_answers_at_once(lab: Lab, tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",))
    agent = lab.start_agent("node2", snap)
    try:
        agent.wait_for(lambda line: f"announce {IP4} on enp0s8" in line)
        assert lab.arping(IP4, count=1) == {lab.mac("node2")}
        snapshot(snap, nodes=("node2",), used4=())
        agent.wait_for(lambda line: f"stop announcing {IP4} on enp0s8" in line)
        assert lab.arping(IP4) == set()
        assert lab.ndisc(IP6) == lab.mac("node2")  # the other Eip is untouched
    finally:
        assert agent.stop() == 0, agent.output


def test_a_second_speaker_for_the_same_ip_is_reported(lab: Lab, tmp_path: Path) -> None:
    """Misconfigured membership makes both nodes announce: each logs the other's MAC."""
    snap = snapshot(tmp_path / "cluster.json", used6=())
    agents = {n: lab.start_agent(n, snap, "--members", n) for n in ("node1", "node2")}
    try:
        for node, agent in agents.items():
            other = lab.mac("node2" if node == "node1" else "node1")

            def names_the_other(line: str, mac: str = other) -> bool:
                return "conflict on" in line and mac in line

            agent.wait_for(names_the_other)
    finally:
        for agent in agents.values():
            assert agent.stop() == 0, agent.output


CAPTURE = str(Path(__file__).with_name("gratuitous_capture.py"))


def test_takeover_sends_five_rounds_of_gratuitous_messages(lab: Lab, tmp_path: Path) -> None:
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",))
    capture = subprocess.Popen(
        ["ip", "netns", "exec", lab.client, sys.executable, CAPTURE, IP4, IP6,
         lab.mac("node2")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    agent = None
    try:
        assert capture.stdout is not None
        assert capture.stdout.readline().strip() == "ready"
        agent = lab.start_agent("node2", snap)
        out, _ = capture.communicate(timeout=25)
        # Immediately, then every 1.1 s for 5 s: five rounds, each an ARP request and reply
        # (IPv4) or an unsolicited advertisement to ff02::1 (IPv6), and then silence.
        assert out.strip() == str({"request": 5, "reply": 5, "advert": 5})
    finally:
        capture.kill()
        capture.wait()
        if capture.stdout is not None:
            capture.stdout.close()
        if agent is not None:
            assert agent.stop() == 0, agent.output


@contextmanager
def counting_gratuitous(lab: Lab, node: str) -> Iterator[subprocess.Popen[str]]:
    """gratuitous_capture.py in the client, listening for ``node``'s MAC; killed after."""
    capture = subprocess.Popen(
        ["ip", "netns", "exec", lab.client, sys.executable, CAPTURE, IP4, IP6, lab.mac(node)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert capture.stdout is not None
        assert capture.stdout.readline().strip() == "ready"
        yield capture
    finally:
        capture.kill()
        capture.wait()
        if capture.stdout is not None:
            capture.stdout.close()


def test_a_link_blip_between_two_looks_is_announced_again(lab: Lab, tmp_path: Path) -> None:
    """The node's cable out and back in 50 ms (its bridge port down and up): no look of the
    agent sees it (a look every 5 s here), yet neighbours that flushed their caches need the
    gratuitous messages again, as keepalived sends them when an interface comes back."""
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",))
    port = bridge_port(lab, "node2")
    agent = None
    try:
        with counting_gratuitous(lab, "node2") as capture:
            agent = lab.start_agent("node2", snap, "--interval", "5")
            out, _ = capture.communicate(timeout=25)
            assert out.strip() == str({"request": 5, "reply": 5, "advert": 5}), agent.output
        with counting_gratuitous(lab, "node2") as capture:
            lab.ip(lab.bridge, "link", "set", port, "down")
            time.sleep(0.05)
            lab.ip(lab.bridge, "link", "set", port, "up")
            out, _ = capture.communicate(timeout=25)
            assert out.strip() == str({"request": 5, "reply": 5, "advert": 5}), agent.output
        blips = [line for line in agent.lines if "link back up" in line]
        assert [line.split("]: ", 1)[-1] for line in blips] == [
            "enp0s8: link back up, announcing 2 IPs again"
        ], agent.output
    finally:
        lab.ip(lab.bridge, "link", "set", port, "up", check=False)
        if agent is not None:
            assert agent.stop() == 0, agent.output


def test_a_missing_tool_is_an_error_not_silence(lab: Lab) -> None:
    # arping exits 1 both when nobody answers and when it is not installed; the tests that
    # expect silence must not pass for want of the tool.
    with pytest.raises(RuntimeError, match=r"no-such-tool.*make test"):
        lab.run(lab.client, "no-such-tool", "198.51.100.1")


_MANY_GROUPS = """
import ipaddress, socket, sys
from app.agent.frames import Nic, mac_bytes
from app.agent.speaker import Speaker, Target
nic = sys.argv[1]
mac = open(f"/sys/class/net/{nic}/address").read().strip()
ips = frozenset(ipaddress.ip_address(f"2001:db8:77::1:{i:x}") for i in range(1, 3001))
lines = []
speaker = Speaker(lines.append)
for _ in range(3):  # three ticks
    speaker.update({nic: Target(nic, socket.if_nametoindex(nic), Nic(mac_bytes(mac)), ips)})
wanted = {"ff0200000000000000000001ff" + ip.packed[-3:].hex() for ip in ips}
joined = {line.split()[2] for line in open("/proc/net/igmp6") if line.split()[1] == nic}
print(len(wanted & joined), len(lines))
speaker.close()
"""


def test_three_thousand_ipv6_addresses_join_every_solicited_node_group(lab: Lab) -> None:
    # One socket holds about 2,300 groups (its option memory); past that joins failed, and
    # every tick logged every failure again (1,000 lines a second).
    out = lab.run(lab.ns["node2"], sys.executable, "-c", _MANY_GROUPS, "enp0s8", timeout=60)
    assert out.returncode == 0, out.stderr
    groups, logged = map(int, out.stdout.split())
    assert groups == 3000
    assert logged == 0


# --- Frames sent straight into a node's NIC --------------------------------------------
# Sent from the bridge's namespace on the node's bridge port, a veth whose other end is the
# node's NIC: the frame reaches the node exactly as written. Through the bridge it would
# not: with bridge-nf-call-ip6tables on, br_netfilter trims an IPv6 frame to its declared
# payload length (which hid the crash below from these tests).

_INJECT = """
import select, socket, sys, time
iface, wait, mac = sys.argv[1], float(sys.argv[2]), bytes.fromhex(sys.argv[3])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
sock.bind((iface, 0))
for frame in sys.argv[4:]:
    sock.send(bytes.fromhex(frame))
end = time.monotonic() + wait
while (left := end - time.monotonic()) > 0 and select.select([sock], [], [], left)[0]:
    frame, addr = sock.recvfrom(65535)
    if addr[2] != socket.PACKET_OUTGOING and frame[6:12] == mac:
        print(frame.hex(), flush=True)
"""
ASKER4, ASKER6 = f"{SUBNET4}.99", ipaddress.IPv6Address(f"{SUBNET6}::99")


def bridge_port(lab: Lab, node: str) -> str:
    """The bridge-side end of the node's veth."""
    nic = json.loads(lab.ip(lab.ns[node], "-j", "link", "show", NODES[node][0]).stdout)[0]
    links = json.loads(lab.ip(lab.bridge, "-j", "link", "show").stdout)
    [port] = [link["ifname"] for link in links if link["ifindex"] == nic["link_index"]]
    return str(port)


def inject(lab: Lab, node: str, *frames: bytes, wait: float = 1.0) -> list[bytes]:
    """Send ``frames`` into the node's NIC; the answers to ASKER sent from its MAC."""
    argv = [bridge_port(lab, node), str(wait), lab.mac(node).replace(":", "")]
    out = lab.run(lab.bridge, sys.executable, "-c", _INJECT, *argv, *(f.hex() for f in frames))
    assert out.returncode == 0, out.stderr
    seen = [bytes.fromhex(line) for line in out.stdout.split()]
    return [f for f in seen if f[0:6] == ASKER]  # not the gratuitous ones (broadcast)


def arp_request(ip: str = IP4) -> bytes:
    return arp(target=ip, sender=ASKER4)


def solicitation(ip: str = IP6) -> bytes:
    return ns(target=ipaddress.IPv6Address(ip), src=ASKER6)


def is_answer(frame: bytes, node_mac: str) -> bool:
    """An ARP reply or a Neighbor Advertisement from node_mac."""
    if frame[6:12] != mac_bytes(node_mac):
        return False
    if frame[12:14] == b"\x08\x06":
        return bool(struct.unpack_from("!H", frame, 20)[0] == 2)
    return frame[12:14] == b"\x86\xdd" and frame[20] == 58 and frame[54] == 136


@contextmanager
def node2_announcing(lab: Lab, tmp_path: Path) -> Iterator[tuple[AgentProcess, str]]:
    """node2's agent alone, announcing both Eips' IPs on enp0s8; stopped cleanly after."""
    agent = lab.start_agent("node2", snapshot(tmp_path / "cluster.json", nodes=("node2",)))
    try:
        agent.wait_for(lambda line: f"announce {IP6} on enp0s8" in line)
        agent.wait_for(lambda line: f"announce {IP4} on enp0s8" in line)
        yield agent, lab.mac("node2")
    finally:
        assert agent.stop() == 0, agent.output


def test_malformed_frames_do_not_stop_the_speaker(lab: Lab, tmp_path: Path) -> None:
    with node2_announcing(lab, tmp_path) as (agent, mac):
        good = solicitation()
        malformed = [
            # Passes the BPF filter (type 135 at offset 54) but declares no payload: one
            # such broadcast frame ended every speaking agent (IndexError).
            payload_len(good, 0),
            payload_len(good, 2),
            payload_len(good, 500),  # more than the frame holds
            ns(target=ipaddress.IPv6Address(IP6), src=ASKER6, options=b"\x01\x00" + ASKER),
            refix(payload_len(good, 26)),  # cuts the source option short
            arp_request()[:30],
        ]
        assert [f for f in inject(lab, "node2", *malformed) if is_answer(f, mac)] == []
        time.sleep(0.3)
        assert agent.proc.poll() is None, agent.output
        # Still answering, with the same sockets: the very next valid requests.
        assert any(is_answer(f, mac) for f in inject(lab, "node2", good))
        assert any(is_answer(f, mac) for f in inject(lab, "node2", arp_request()))
        assert lab.ndisc(IP6) == mac
        assert lab.arping(IP4) == {mac}


def test_hostile_frames_get_what_the_kernel_would_give_them(lab: Lab, tmp_path: Path) -> None:
    with node2_announcing(lab, tmp_path) as (agent, mac):
        # Sources no host sends from: the kernel drops them as martians, and so does the agent.
        martians = [arp(target=IP4, sender=ip) for ip in ("255.255.255.255", "224.0.0.1")]
        assert [f for f in inject(lab, "node2", *martians) if is_answer(f, mac)] == []
        # Hardware type 6 (IEEE 802): the kernel answers it on Ethernet, and so does the agent.
        ieee802 = arp(target=IP4, sender=ASKER4, htype=6)
        assert any(is_answer(f, mac) for f in inject(lab, "node2", ieee802))
        # Gratuitous ARPs for the IP from 300 spoofed MACs: one log line, not one per MAC.
        spoofed = [struct.pack("!HI", 0x0200, 0x7000 + n) for n in range(300)]
        inject(lab, "node2", *(arp(target=IP4, sender=IP4, src=m) for m in spoofed), wait=0.5)
        agent.wait_for(lambda line: "conflict on enp0s8" in line)
        time.sleep(0.5)
        assert sum("conflict on" in line for line in agent.lines) == 1, agent.output


def vlan(frame: bytes, vid: int = 100) -> bytes:
    """``frame`` with an 802.1Q tag."""
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


def test_requests_tagged_with_a_vlan_the_node_lacks_are_not_answered(
    lab: Lab, tmp_path: Path
) -> None:
    """The kernel strips the tag and marks the frame PACKET_OTHERHOST; answering it would
    announce the IP untagged, on the native VLAN. Linux's own ARP and IPv6 drop it."""
    with node2_announcing(lab, tmp_path) as (_, mac):
        for request in (arp_request(), solicitation()):
            assert inject(lab, "node2", vlan(request)) == [], request.hex()
            assert any(is_answer(f, mac) for f in inject(lab, "node2", request))  # untagged


_OPEN_DURING_FLOOD = """
import json, socket, sys, time
from app.agent.frames import ETH_P_ARP, ETH_P_IPV6
from app.agent import speaker

class SlowToBind(socket.socket):
    # Widens the moment between socket() and bind() from microseconds to 0.3 s.
    def bind(self, address):
        time.sleep(0.3)
        super().bind(address)

socket.socket = SlowToBind
nic = sys.argv[1]
# The control: opened as before the fix, the same moment queues the other NIC's frames.
control = SlowToBind(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
control.bind((nic, ETH_P_ARP))
control.setblocking(False)
socks = {"control": control}
socks["arp"] = speaker._packet_socket(nic, ETH_P_ARP)
socks["ndp"] = speaker._packet_socket(nic, ETH_P_IPV6)
elsewhere = dict.fromkeys(socks, 0)
for name, sock in socks.items():
    while True:
        try:
            frame, addr = sock.recvfrom(65535)
        except BlockingIOError:
            break
        elsewhere[name] += addr[0] != nic
print(json.dumps(elsewhere))
"""

_FLOOD = """
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
sock.bind((sys.argv[1], 0))
frames = [bytes.fromhex(h) for h in sys.argv[2:]]
while True:
    for frame in frames:
        try:
            sock.send(frame)
        except OSError:
            pass
"""


def test_a_port_opening_takes_no_frames_of_another_nic(lab: Lab) -> None:
    """While a port's sockets open, another NIC of the node is flooded with requests for
    its IPs: none of them may be queued (and answered, out of the wrong NIC)."""
    ns_ = lab.ns["node1"]
    lab.ip(ns_, "link", "add", "flood0", "type", "veth", "peer", "name", "flood1")
    flood = None
    try:
        for nic in ("flood0", "flood1"):
            lab.ip(ns_, "link", "set", nic, "up")
        frames = (arp_request().hex(), solicitation().hex())
        flood = subprocess.Popen(
            ["ip", "netns", "exec", ns_, sys.executable, "-c", _FLOOD, "flood1", *frames]
        )
        time.sleep(0.3)
        out = lab.run(ns_, sys.executable, "-c", _OPEN_DURING_FLOOD, "ens3")
        assert out.returncode == 0, out.stderr
        elsewhere = json.loads(out.stdout)
        assert elsewhere["control"] > 0, elsewhere  # the flood did reach the namespace
        assert (elsewhere["arp"], elsewhere["ndp"]) == (0, 0), elsewhere
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        lab.ip(ns_, "link", "del", "flood0", check=False)


def test_frames_the_kernel_will_not_send_are_logged_once_a_while(lab: Lab, tmp_path: Path) -> None:
    """A qdisc that holds nothing makes every send fail with ENOBUFS, as a full transmit queue
    does: each gratuitous round and each reply was a log line, a request storm a log storm."""
    nic = NODES["node2"][0]
    tc = ("tc", "qdisc", "replace", "dev", nic, "root", "pfifo", "limit", "0")
    assert lab.run(lab.ns["node2"], *tc).returncode == 0
    try:
        with node2_announcing(lab, tmp_path) as (agent, mac):
            assert inject(lab, "node2", *[arp_request()] * 20, solicitation()) == []
            time.sleep(5)  # the takeover's five rounds, every one failing
            failed = [line for line in agent.lines if "not sent" in line or "send" in line]
            assert len(failed) == 1, agent.output
            assert "enp0s8: cannot send (No buffer space available)" in failed[0], failed
            lab.run(lab.ns["node2"], "tc", "qdisc", "del", "dev", nic, "root")
            assert any(is_answer(f, mac) for f in inject(lab, "node2", arp_request()))
            agent.wait_for(lambda line: "enp0s8: sending again" in line)
            assert agent.proc.poll() is None, agent.output
    finally:
        lab.run(lab.ns["node2"], "tc", "qdisc", "del", "dev", nic, "root")


def joined_groups(lab: Lab, node: str) -> set[str]:
    """The IPv6 multicast groups the node's kernel holds on its NIC (/proc/net/igmp6)."""
    out = lab.run(lab.ns[node], "cat", "/proc/net/igmp6").stdout
    return {f.split()[2] for f in out.splitlines() if f.split()[1] == NODES[node][0]}


def test_solicited_node_groups_come_back_after_the_mtu_dips_below_1280(
    lab: Lab, tmp_path: Path
) -> None:
    """An MTU below IPv6's minimum (1280) takes IPv6 off the NIC, its multicast memberships
    with it, and setting the MTU back does not restore them. With the NIC named in the Eip,
    the agent kept the IP and believed it still held the group: the NIC's multicast filter
    and snooping switches (no MLD reports) kept the solicitations away from the node."""
    group = "ff0200000000000000000001ff" + ipaddress.IPv6Address(IP6).packed[-3:].hex()
    node, nic = lab.ns["node2"], NODES["node2"][0]
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",), interface6=nic)
    agent = lab.start_agent("node2", snap)
    try:
        agent.wait_for(lambda line: f"announce {IP6} on {nic}" in line)
        assert group in joined_groups(lab, "node2")
        lab.ip(node, "link", "set", nic, "mtu", "1200")
        lab.ip(node, "link", "set", nic, "mtu", "1500")
        # What a network manager does next: the node's own address back on the NIC.
        lab.ip(node, "addr", "replace", f"{SUBNET6}::12/64", "dev", nic, "nodad")
        deadline = time.monotonic() + 5
        while group not in joined_groups(lab, "node2") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group in joined_groups(lab, "node2"), agent.output
        assert lab.ndisc(IP6) == lab.mac("node2")
        agent.wait_for(lambda line: f"{nic}: the kernel dropped 1 solicited-node groups" in line)
    finally:
        lab.ip(node, "link", "set", nic, "mtu", "1500", check=False)
        lab.ip(node, "addr", "replace", f"{SUBNET6}::12/64", "dev", nic, "nodad", check=False)
        assert agent.stop() == 0, agent.output


_HIGH_DESCRIPTORS = """
import ipaddress, os, resource, socket, sys
from app.agent.frames import Nic, mac_bytes
from app.agent.speaker import Speaker, Target
nic, ip, seconds = sys.argv[1], ipaddress.ip_address(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
# What a long-running agent holds: watch connections, threads, many NICs' sockets.
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
lines = []
speaker = Speaker(lines.append)
mac = open(f"/sys/class/net/{nic}/address").read().strip()
speaker.update({nic: Target(nic, socket.if_nametoindex(nic), Nic(mac_bytes(mac)), frozenset({ip}))})
print("ready", flush=True)
speaker.serve(speaker._clock() + seconds)
speaker.close()
print(speaker.replies, lines, flush=True)
"""


def test_the_speaker_answers_with_descriptors_past_1024(lab: Lab) -> None:
    """select() refuses descriptors from FD_SETSIZE (1024) on (ValueError): an agent whose
    sockets got numbers that high (many NICs, watch connections, threads) stopped."""
    ip = f"{SUBNET4}.117"
    argv = ["ip", "netns", "exec", lab.ns["node2"], sys.executable, "-c", _HIGH_DESCRIPTORS,
            NODES["node2"][0], ip, "4"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        answered = lab.arping(ip)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    assert answered == {lab.mac("node2")}
    assert out.split(" ", 1)[1].strip() == "[]", out  # nothing logged


def test_a_nic_away_and_back_between_two_looks_is_answered_on_again(
    lab: Lab, tmp_path: Path
) -> None:
    """A NIC moved to another namespace and back (or deleted and made again with its
    ifindex) between two looks keeps name, ifindex and MAC, but the kernel unbinds the
    packet sockets from it for good: the speaker sent nothing (ENXIO) and answered nothing,
    believing the link was merely down and up again."""
    node, nic = lab.ns["node2"], NODES["node2"][0]
    away = f"{lab.bridge[:-3]}-away"
    sh("ip", "netns", "add", away)
    lab.created.append(away)
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",))
    agent = lab.start_agent("node2", snap, "--interval", "2")
    try:
        agent.wait_for(lambda line: f"announce {IP4} on {nic}" in line)
        before = json.loads(lab.ip(node, "-j", "link", "show", nic).stdout)[0]["ifindex"]
        lab.ip(node, "link", "set", nic, "netns", away)
        lab.ip(away, "link", "set", nic, "netns", node)
        after = json.loads(lab.ip(node, "-j", "link", "show", nic).stdout)[0]["ifindex"]
        assert before == after  # else the next look would see a new NIC and reopen
        lab.ip(node, "addr", "add", f"{SUBNET4}.12/24", "dev", nic)
        lab.ip(node, "addr", "add", f"{SUBNET6}::12/64", "dev", nic, "nodad")
        lab.ip(node, "link", "set", nic, "up")
        agent.wait_for(lambda line: f"{nic}: the NIC was removed and came back" in line)
        assert lab.arping(IP4) == {lab.mac("node2")}
        assert lab.ndisc(IP6) == lab.mac("node2")
        assert not [line for line in agent.lines if "cannot" in line or "IPv6 was off" in line]
    finally:
        assert agent.stop() == 0, agent.output


# The agent with its link monitor refused (a sandbox without rtnetlink groups): what it must
# see of the NICs it sees at its looks alone.
_NO_LINK_MONITOR = """
import errno, sys
from app.agent import speaker
def refused():
    raise OSError(errno.EPERM, "Operation not permitted")
speaker._link_monitor = refused
from app.cli.entry import main
sys.exit(main(sys.argv[1:]))
"""


def move_away_and_back(lab: Lab, node: str) -> None:
    """The node's NIC to another namespace and back, its addresses and state made again:
    the same name, ifindex and MAC, and packet sockets unbound from it for good."""
    ns_, nic = lab.ns[node], NODES[node][0]
    host = NODES[node][1]
    away = f"{lab.bridge[:-3]}-away{len(lab.created)}"
    sh("ip", "netns", "add", away)
    lab.created.append(away)
    before = json.loads(lab.ip(ns_, "-j", "link", "show", nic).stdout)[0]["ifindex"]
    lab.ip(ns_, "link", "set", nic, "netns", away)
    lab.ip(away, "link", "set", nic, "netns", ns_)
    after = json.loads(lab.ip(ns_, "-j", "link", "show", nic).stdout)[0]["ifindex"]
    assert before == after  # else the next look would see a new NIC and reopen
    lab.ip(ns_, "addr", "add", f"{SUBNET4}.{host}/24", "dev", nic)
    lab.ip(ns_, "addr", "add", f"{SUBNET6}::{host}/64", "dev", nic, "nodad")
    lab.ip(ns_, "link", "set", nic, "up")


def test_a_nic_away_and_back_is_answered_on_again_without_the_link_monitor(
    lab: Lab, tmp_path: Path
) -> None:
    """Without the link monitor (it cannot be opened, or its messages were lost) nothing told
    the speaker its sockets were unbound: the NIC looked the same at every look, and its IPs
    went unanswered for good, with nothing logged."""
    nic = NODES["node2"][0]
    snap = snapshot(tmp_path / "cluster.json", nodes=("node2",))
    argv = ["ip", "netns", "exec", lab.ns["node2"], sys.executable, "-c", _NO_LINK_MONITOR,
            "agent", "--node-name", "node2", "--interval", "5", "--speaker", "on",
            "--cluster", str(snap)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agent = AgentProcess("node2", proc)
    agent.start_reader()
    lab.agents.append(agent)
    try:
        agent.wait_for(lambda line: f"announce {IP4} on {nic}" in line)
        agent.wait_for(lambda line: "cannot watch link changes" in line)
        time.sleep(GRATUITOUS_FOR + 1)  # no takeover rounds left to fail (ENXIO) and tell
        move_away_and_back(lab, "node2")
        agent.wait_for(lambda line: f"{nic}: the NIC was removed and came back" in line)
        assert lab.arping(IP4) == {lab.mac("node2")}
        assert lab.ndisc(IP6) == lab.mac("node2")
    finally:
        assert agent.stop() == 0, agent.output


_OVERFLOWED = """
import ipaddress, json, socket, subprocess, sys
from app.agent.frames import Nic, mac_bytes
from app.agent.speaker import GRATUITOUS_FOR, Speaker, Target
nic, ip, seconds = sys.argv[1], ipaddress.ip_address(sys.argv[2]), float(sys.argv[3])
lines = []
speaker = Speaker(lines.append)
mac = open(f"/sys/class/net/{nic}/address").read().strip()
targets = {nic: Target(nic, socket.if_nametoindex(nic), Nic(mac_bytes(mac)), frozenset({ip}))}
speaker.update(targets)
speaker.serve(speaker._clock() + GRATUITOUS_FOR + 0.5)  # the takeover's rounds are over
# The smallest buffer the kernel allows, filled by link changes nobody reads yet.
speaker._links.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
def storm():
    flaps = [f"link set lmflood{i} {s}" for i in range(4) for s in ("up", "down")] * 4
    subprocess.run(["ip", "-batch", "-"], input="\\n".join(flaps) + "\\n", text=True, check=True)
for i in range(4):
    subprocess.run(["ip", "link", "add", f"lmflood{i}", "type", "veth"], check=True)
storm()
print("moving", flush=True)
assert sys.stdin.readline().strip() == "moved"  # the NIC away and back: its news lost
for _ in range(3):  # the storm goes on: more overflows, while the agent looks and serves
    speaker.serve(speaker._clock() + 0.3)
    if speaker.retrying:
        speaker.update(targets)
    storm()
speaker.serve(speaker._clock() + 0.3)
print("ready", flush=True)
speaker.serve(speaker._clock() + seconds)
speaker.close()
print(json.dumps(lines), flush=True)
"""


def test_lost_link_messages_find_a_nic_that_went_away_and_came_back(lab: Lab) -> None:
    """The link monitor's buffer overflowed (ENOBUFS: a storm of link changes, pods made by
    the hundred) and took the news of a NIC away and back with it: every port is looked at
    again, and said once however many times the buffer overflows while the storm lasts."""
    ip = f"{SUBNET4}.118"
    argv = ["ip", "netns", "exec", lab.ns["node2"], sys.executable, "-c", _OVERFLOWED,
            NODES["node2"][0], ip, "4"]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "moving"
        move_away_and_back(lab, "node2")
        proc.stdin.write("moved\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
        answered = lab.arping(ip)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        for i in range(4):
            lab.ip(lab.ns["node2"], "link", "del", f"lmflood{i}", check=False)
    assert proc.returncode == 0, err
    lines = json.loads(out)
    assert answered == {lab.mac("node2")}, lines
    assert "enp0s8: the NIC was removed and came back, opening its sockets again" in lines
    assert len([line for line in lines if "link messages were lost" in line]) == 1, lines
