"""The agent's hand-read address and route dumps against pyroute2's reading of the same kernel
state: every address kind (IPv4, IPv6, point-to-point) and route kind the agent meets
(default, multipath, other tables, the local table, non-unicast)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from app.agent.netlink import MAIN_TABLE, Address, Route
from app.agent.pyroute2_netlink import RTN_UNICAST, dump_addresses, dump_routes

from .conftest import NOT_ROOT
from .lab import sh

IPVS_ADDRESSES = 600  # more than one netlink datagram of a dump


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    name = f"eg-dump-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name)
    try:
        batch = [
            "link add nic-a type veth peer name nic-b",
            "link add kube-ipvs0 type bridge",
            "link set lo up", "link set nic-a up", "link set nic-b up",
            "address add 192.0.2.10/24 dev nic-a",
            "address add 2001:db8:1::10/64 dev nic-a",
            "address add 10.9.0.1 peer 10.9.0.2/32 dev nic-b",
            "address add 198.51.100.5/24 dev nic-b",
            "route add default via 192.0.2.1 dev nic-a metric 50",
            "route add 203.0.113.0/24 nexthop via 192.0.2.1 dev nic-a nexthop via 198.51.100.1 "
            "dev nic-b",
            "route add 2001:db8:9::/48 via 2001:db8:1::1 dev nic-a metric 7",
            "route add 203.0.114.0/24 via 192.0.2.1 dev nic-a table 100",
            "route add blackhole 192.0.2.128/25",
        ]  # fmt: skip
        batch += [
            f"address add 10.96.{i // 250}.{i % 250 + 1}/32 dev kube-ipvs0"
            for i in range(IPVS_ADDRESSES)
        ]
        result = sh_batch(name, batch)
        assert result.returncode == 0, result.stderr
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def sh_batch(ns: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


# pyroute2's reading: how the agent read these dumps before it read them by hand.


def oracle_addresses(ns: str) -> set[Address]:
    with IPRoute(netns=ns) as ipr:
        found = set()
        for m in ipr.get_addr():
            text = m.get("IFA_LOCAL") or m.get("IFA_ADDRESS")
            if text:
                found.add(Address(int(m["index"]), ipaddress.ip_address(text), m["prefixlen"]))
        return found


def oracle_routes(ns: str) -> set[Route]:
    found = set()
    with IPRoute(netns=ns) as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in ipr.get_routes(family=family, table=MAIN_TABLE):
                if m.get("RTA_TABLE", m["table"]) != MAIN_TABLE or m["type"] != RTN_UNICAST:
                    continue
                zero = "0.0.0.0" if family == socket.AF_INET else "::"
                dst = ipaddress.ip_network(f"{m.get('RTA_DST') or zero}/{m['dst_len']}")
                metric = int(m.get("RTA_PRIORITY") or 0)
                hops = m.get("RTA_MULTIPATH")
                pairs = (
                    [(h["oif"], h.get("RTA_GATEWAY")) for h in hops]
                    if hops
                    else [(m.get("RTA_OIF"), m.get("RTA_GATEWAY"))]
                )
                for oif, gw in pairs:
                    if oif is not None:
                        ip = ipaddress.ip_address(gw) if gw else None
                        found.add(Route(dst, int(oif), ip, metric))
    return found


def test_the_address_dump_reads_what_pyroute2_reads(netns: str) -> None:
    mine = dump_addresses(netns)
    assert set(mine) == oracle_addresses(netns)
    assert len(mine) == len(set(mine))
    texts = {str(a) for a in mine}
    assert {"192.0.2.10/24", "2001:db8:1::10/64", "10.9.0.1/32", "10.96.0.1/32"} <= texts
    assert "10.9.0.2/32" not in texts  # the point-to-point peer is not this host's
    assert sum(a.ip in ipaddress.ip_network("10.96.0.0/16") for a in mine) == IPVS_ADDRESSES


def test_the_route_dump_reads_the_main_table_as_pyroute2_does(netns: str) -> None:
    mine = dump_routes(netns)
    assert set(mine) == oracle_routes(netns)
    dsts = sorted({str(r.dst) for r in mine})
    assert "0.0.0.0/0" in dsts and "2001:db8:9::/48" in dsts
    assert len([r for r in mine if str(r.dst) == "203.0.113.0/24"]) == 2  # one per next hop
    assert "203.0.114.0/24" not in dsts  # table 100
    assert "192.0.2.128/25" not in dsts  # a blackhole is no unicast route
    assert not any(r.dst.prefixlen == 32 and str(r.dst).startswith("10.96.") for r in mine)
