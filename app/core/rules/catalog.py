"""Every rule of eip-guard by id: what it denies, whether it only warns, and whether an
Eip's ``eip-guard.io/allow-rules`` annotation may waive it (README, "Rules")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    denies_when: str  # one line, for the README and `eip-guard rules`
    warns_only: bool = False  # its violations are advisory whatever the policy says
    # Whether eip-guard.io/allow-rules can turn its denials into warnings. Not for what
    # OpenELB's own webhook refuses whatever the annotation: an Eip's writer must not
    # approve those (the admin's policy still sets them to warn or off).
    overridable: bool = True


RULES: tuple[Rule, ...] = (
    Rule("can-reach-syntax", "the interface has an `x:y` form that is not `can_reach:<one IP>`"),
    Rule(
        "can-reach-special", "the IP is loopback, unspecified, multicast, link-local or broadcast"
    ),
    Rule("can-reach-node-ip", "the IP is an address of a Node"),
    Rule("can-reach-in-eip", "the IP lies in an Eip pool (any protocol, this Eip included)"),
    Rule(
        "can-reach-kube-vip", "the IP is a kube-vip VIP or lies in a kube-vip-cloud-provider pool"
    ),
    Rule("can-reach-service-ip", "the IP is a Service IP or lies in a ServiceCIDR"),
    Rule(
        "can-reach-pod-cidr",
        "the IP lies in a pod CIDR: a Node's, a CiliumNode's, a Calico IPPool's",
    ),
    Rule("eip-covers-can-reach", "the pool contains the `can_reach` IP of another Eip"),
    Rule(
        "can-reach-unknown-subnet",
        "never denies, warns: the IP lies in no known node subnet of its family (if one is known)",
        warns_only=True,
    ),
    Rule(
        "can-reach-pool-subnet",
        "never denies, warns: the IP's known node subnet does not hold the whole pool",
        warns_only=True,
    ),
    Rule(
        "interface-name",
        "`spec.interface` is a NIC name no NIC can have, or lo or a virtual device's",
    ),
    Rule(
        "spec-schema",
        "a spec field has a type or value the Eip CRD's schema rejects",
        overridable=False,
    ),
    Rule(
        "address-syntax",
        "`spec.address` is not a single IP, a CIDR or an `a-b` range",
        # overridable only where OpenELB reads the address (checked in ``check``)
    ),
    Rule("address-size", "OpenELB's 64-bit count of the pool's size overflows"),
    Rule("address-overlap", "the pool overlaps another Eip's pool", overridable=False),
    Rule(
        "address-node-ip",
        "the pool contains a node's address, a gateway nodes report, or a node subnet's "
        "broadcast (IPv4) or subnet-router anycast (IPv6) address",
    ),
    Rule(
        "address-kube-vip",
        "the pool contains a kube-vip VIP or overlaps a kube-vip-cloud-provider pool",
    ),
    Rule(
        "address-cluster-network",
        "the pool overlaps a ServiceCIDR or a pod CIDR, or contains a cluster IP",
    ),
    Rule(
        "address-service-ip",
        "the pool contains another Service's externalIP or load-balancer IP",
    ),
    Rule("interface-required", "protocol is layer2 or vip and `spec.interface` is empty"),
    Rule("default-eip-unique", "another Eip is already the default Eip", overridable=False),
    Rule("address-immutable", "an UPDATE changes `spec.address`", overridable=False),
)
RULE_IDS = frozenset(r.id for r in RULES)
WARNS_ONLY = frozenset(r.id for r in RULES if r.warns_only)
NOT_OVERRIDABLE = frozenset(r.id for r in RULES if not r.overridable)
