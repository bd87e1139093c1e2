"""NIC resolution against a real kernel: the lo trap, and the NICs a speaker must skip."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.resolve import Resolved, Unresolved, resolve
from app.agent.runner import Agent, Settings, SnapshotSource
from app.core.interfaces import parse_interface

from .lab import CAN_REACH4, EIP_GUARD, SUBNET4, SUBNET6, Lab


def test_route_get_says_lo_but_we_pick_the_bridge_nic(lab: Lab) -> None:
    ns = lab.ns["node1"]
    netlink = Pyroute2Netlink(ns)
    answer = netlink.route_get(ipaddress.ip_address(CAN_REACH4))
    host = netlink.host()
    assert answer.type == "local"
    assert host.link(answer.oif) is not None and host.link(answer.oif).name == "lo"  # type: ignore[union-attr]
    result = resolve(parse_interface(f"can_reach:{CAN_REACH4}"), host)
    assert isinstance(result, Resolved)
    assert result.link.name == "ens3"
    assert "connected subnet 198.51.100.0/24" in result.why


def test_resolve_command_shows_the_trap(lab: Lab) -> None:
    out = lab.run(lab.ns["node1"], EIP_GUARD, "resolve", f"can_reach:{CAN_REACH4}", "-o", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["eip_guard"]["nic"] == "ens3"
    assert result["ip_route_get"]["nic"] == "lo"
    assert "invalid interface lo" in result["ip_route_get"]["why"]
    text = lab.run(lab.ns["node1"], EIP_GUARD, "resolve", f"can_reach:{CAN_REACH4}")
    assert text.stdout.splitlines()[0].startswith("eip-guard picks:   ens3")


def test_each_node_resolves_its_own_nic_name(lab: Lab) -> None:
    for node, nic in (("node1", "ens3"), ("node2", "enp0s8")):
        for gateway in (f"{SUBNET4}.1", f"{SUBNET6}::1"):
            out = lab.run(lab.ns[node], EIP_GUARD, "resolve", f"can_reach:{gateway}", "-o", "json")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["eip_guard"]["nic"] == nic


def test_exit_codes(lab: Lab) -> None:
    ns = lab.ns["node2"]
    assert lab.run(ns, EIP_GUARD, "resolve", "enp0s8").returncode == 0
    missing = lab.run(ns, EIP_GUARD, "resolve", "ens3")
    assert missing.returncode == 1
    assert "no NIC named 'ens3'" in missing.stdout
    unreachable = lab.run(ns, EIP_GUARD, "resolve", "can_reach:203.0.113.9")
    assert unreachable.returncode == 1
    assert "no route of the main table reaches 203.0.113.9" in unreachable.stdout
    assert lab.run(ns, EIP_GUARD, "resolve", "can_reach:1.2.3").returncode == 2
    assert lab.run(ns, EIP_GUARD, "resolve", "vlan:7").returncode == 2


def test_resolve_command_says_what_route_get_meets(lab: Lab) -> None:
    """The second line names a null route (it said "no NIC (error: Invalid argument)") and
    the table policy routing chose (it said "table main" for every IPv4 answer)."""
    ns = lab.ns["node2"]
    try:
        lab.ip(ns, "route", "add", "blackhole", "192.0.2.0/24")
        lab.ip(ns, "route", "add", "198.18.0.0/24", "via", f"{SUBNET4}.1", "table", "51820")
        lab.ip(ns, "rule", "add", "pref", "1000", "to", "198.18.0.0/24", "lookup", "51820")
        out = lab.run(ns, EIP_GUARD, "resolve", "can_reach:192.0.2.9", "-o", "json")
        assert out.returncode == 1, out.stderr
        result = json.loads(out.stdout)
        assert result["eip_guard"]["why"].startswith(
            "the kernel drops traffic to 192.0.2.9: the main table's route for it is blackhole "
            "192.0.2.0/24"
        )
        assert result["ip_route_get"] == {
            "nic": None,
            "why": "blackhole route: the kernel drops traffic to 192.0.2.9 ('Invalid argument'); "
            "OpenELB's speaker fails too (its RouteGet returns this error)",
        }
        out = lab.run(ns, EIP_GUARD, "resolve", "can_reach:198.18.0.9", "-o", "json")
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["eip_guard"] == {  # it said "no route of the main table reaches"
            "nic": "enp0s8",
            "why": f"gateway route 198.18.0.0/24 via {SUBNET4}.1 (table 51820, chosen by rule "
            "1000)",
        }
        assert result["ip_route_get"] == {
            "nic": "enp0s8",
            "why": "unicast route in table 51820; policy routing: the kernel's rules chose "
            "table 51820",
        }
    finally:
        lab.ip(ns, "rule", "del", "to", "198.18.0.0/24", "lookup", "51820", check=False)
        lab.ip(ns, "route", "flush", "table", "51820", check=False)
        lab.ip(ns, "route", "del", "blackhole", "192.0.2.0/24", check=False)


def test_skips_down_enslaved_and_noarp_nics(lab: Lab) -> None:
    """Connected routes on unusable NICs are passed over, but for a gateway route only when
    it is more specific: otherwise the kernel reaches the IP through a device that cannot
    answer, and the gateway's NIC is on another segment."""
    ns = lab.ns["node2"]
    lab.ip(ns, "link", "add", "eth7", "type", "veth", "peer", "name", "eth7p")
    lab.ip(ns, "link", "add", "bond-br", "type", "bridge")
    try:
        lab.ip(ns, "addr", "add", "203.0.113.2/24", "dev", "eth7")
        lab.ip(ns, "link", "set", "eth7p", "up")
        lab.ip(ns, "link", "set", "eth7", "up")
        lab.ip(ns, "route", "add", "203.0.0.0/16", "via", f"{SUBNET4}.1", "dev", "enp0s8")
        spec = parse_interface("can_reach:203.0.113.9")
        netlink = Pyroute2Netlink(ns)
        first = resolve(spec, netlink.host())
        assert isinstance(first, Resolved) and first.link.name == "eth7"

        # NOARP: the kernel reaches the IP through eth7, which cannot answer; the less
        # specific gateway route's NIC is on another segment.
        lab.ip(ns, "link", "set", "eth7", "arp", "off")
        noarp = resolve(spec, netlink.host())
        assert isinstance(noarp, Unresolved), noarp
        assert "eth7 (203.0.113.0/24) has NOARP set" in noarp.reason

        lab.ip(ns, "link", "set", "eth7", "arp", "on")
        lab.ip(ns, "link", "set", "eth7p", "down")  # carrier lost: the route stays, linkdown
        no_carrier = resolve(spec, netlink.host())
        assert isinstance(no_carrier, Unresolved), no_carrier
        assert "cannot answer (eth7 (203.0.113.0/24))" in no_carrier.reason
        lab.ip(ns, "link", "set", "eth7", "down")  # set down: the kernel drops its route
        down = resolve(spec, netlink.host())
        assert isinstance(down, Unresolved) and "cannot answer (eth7 (203.0.113.0/24))" in (
            down.reason
        )
        # The gateway route still serves what no subnet of this node holds.
        elsewhere = resolve(parse_interface("can_reach:203.0.7.9"), netlink.host())
        assert isinstance(elsewhere, Resolved) and elsewhere.link.name == "enp0s8"

        lab.ip(ns, "link", "set", "eth7p", "up")
        lab.ip(ns, "link", "set", "eth7", "master", "bond-br", "up")
        host = netlink.host()
        named = resolve(parse_interface("eth7"), host)
        assert isinstance(named, Unresolved)
        assert "is a port of bond-br" in named.reason
        lab.ip(ns, "route", "del", "203.0.0.0/16")
        gone = resolve(spec, netlink.host())
        assert isinstance(gone, Unresolved)
    finally:
        lab.ip(ns, "link", "del", "eth7", check=False)
        lab.ip(ns, "link", "del", "bond-br", check=False)
        lab.ip(ns, "route", "del", "203.0.0.0/16", check=False)


def test_agent_keeps_its_last_view_when_the_cluster_cannot_be_read(
    lab: Lab, tmp_path: Path
) -> None:
    snap = tmp_path / "cluster.yaml"  # JSON is YAML; an empty YAML file read as no objects

    def write(used: dict[str, str]) -> None:
        eip = {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
               "metadata": {"name": "pool"},
               "spec": {"address": f"{SUBNET4}.100-{SUBNET4}.120", "protocol": "layer2",
                        "interface": f"can_reach:{SUBNET4}.1"},
               "status": {"used": used}}  # fmt: skip
        snap.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [eip]}))

    logs: list[str] = []
    write({f"{SUBNET4}.101": "shop/web"})
    source = SnapshotSource([snap], "node2", None)
    agent = Agent(
        Settings("node2", settle=0), source, Pyroute2Netlink(lab.ns["node2"]), logs.append
    )
    first = agent.tick()
    assert first is not None and [str(a.ip) for a in first.announcements] == [f"{SUBNET4}.101"]
    snap.write_text("items: [broken")
    os.utime(snap, (time.time() + 100, time.time() + 100))
    kept = agent.tick()
    assert kept is not None and kept.announcements == first.announcements
    assert any("keeping the last view" in line for line in logs)
    snap.write_text("")  # a writer that truncates before it writes: not "no Eips any more"
    os.utime(snap, (time.time() + 150, time.time() + 150))
    kept = agent.tick()
    assert kept is not None and kept.announcements == first.announcements
    assert any("empty, no YAML or JSON document" in line for line in logs)
    write({})
    os.utime(snap, (time.time() + 200, time.time() + 200))
    gone = agent.tick()
    assert gone is not None and gone.announcements == ()
    assert "reading the cluster again" in logs
    assert any(f"stop announcing {SUBNET4}.101 on enp0s8" in line for line in logs)
