"""What planning costs, counted rather than timed: the plan is made again on every change of
the node's links and routes, with thousands of won IPs."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from app.agent.election import Assignment, cluster_view, mine
from app.agent.netlink import Address, HostNet, Link, Route
from app.agent.plan import plan

N = 5000


def _won() -> tuple[Assignment, ...]:
    base = ipaddress.ip_address("10.20.0.1")
    used = {str(base + i): "default/web" for i in range(N)}
    used["192.0.2.77"] = "default/far"  # in no subnet of eth1: a note
    pool = {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "pool"},
            "spec": {"address": "0.0.0.0/0", "protocol": "layer2", "interface": "eth1"},
            "status": {"used": used}}  # fmt: skip
    return mine(cluster_view([pool]), ["me"], "me")


HOST = HostNet(
    links=(Link(2, "eth1", "", "02:00:00:00:00:02", True, None, False, False),),
    addresses=(
        Address(2, ipaddress.ip_address("10.9.0.5"), 24),
        Address(2, ipaddress.ip_address("2001:db8::5"), 64),
        Address(2, ipaddress.ip_address("10.20.255.254"), 16),
    ),
    routes=(Route(ipaddress.ip_network("10.20.0.0/16"), 2, None),),
)


def _count(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    calls: list[Any] = []
    real = getattr(ipaddress, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ipaddress, name, counted)
    return calls


def test_planning_parses_each_nic_address_once_not_once_per_announcement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each announcement's IP was checked against its NIC's subnets by parsing every address
    of the NIC again (``ip_interface(str(a))``): at 20,000 IPs, 0.3 s of every tick."""
    won = _won()
    interfaces, networks = _count(monkeypatch, "ip_interface"), _count(monkeypatch, "ip_network")
    result = plan(won, HOST)
    assert len(interfaces) + len(networks) <= len(HOST.addresses)
    assert len(result.announcements) == N + 1
    assert result.notes == (
        "Eip pool: 192.0.2.77 lies in no subnet of eth1, so hosts on that link may never "
        "ask for it by ARP/NDP; check the Eip's interface",
    )


def test_the_next_plan_parses_only_the_ips_it_has_not_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    won = _won()
    first = plan(won, HOST)
    addresses = _count(monkeypatch, "ip_address")
    again = plan(won, HOST, first.parsed)
    assert addresses == []
    assert again == first
