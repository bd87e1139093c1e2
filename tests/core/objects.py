"""Small builders of plain Kubernetes objects, as the API server would send them."""

from __future__ import annotations

from typing import Any


def eip(
    name: str,
    address: str,
    *,
    protocol: str = "layer2",
    interface: str | None = "eth0",
    default: bool = False,
    allow: str | None = None,
    used: dict[str, str] | None = None,
    api_version: str = "network.kubesphere.io/v1alpha2",
) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if default:
        annotations["eip.openelb.kubesphere.io/is-default-eip"] = "true"
    if allow is not None:
        annotations["eip-guard.io/allow-rules"] = allow
    spec: dict[str, Any] = {"address": address, "protocol": protocol}
    if interface is not None:
        spec["interface"] = interface
    obj: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "Eip",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }
    if used:
        obj["status"] = {"used": used}
    return obj


def node(
    name: str,
    *ips: str,
    pod_cidrs: tuple[str, ...] = (),
    annotations: dict[str, str] | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": ip} for ip in ips]
    addresses.append({"type": "Hostname", "address": hostname or name})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"podCIDRs": list(pod_cidrs)},
        "status": {"addresses": addresses},
    }


def service(
    name: str,
    namespace: str = "default",
    *,
    cluster_ip: str | None = None,
    external_ips: tuple[str, ...] = (),
    lb_ip: str | None = None,
    ingress: tuple[str, ...] = (),
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer" if ingress or lb_ip else "ClusterIP"}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}},
    }


def kube_vip_pod(
    name: str,
    env: list[dict[str, Any]],
    namespace: str = "kube-system",
    *,
    control_plane: bool | None = True,
) -> dict[str, Any]:
    """A kube-vip static Pod; ``control_plane`` its ``cp_enable`` (None: not set at all).
    kube-vip binds ``address`` only with its control plane on, as ``kube-vip manifest pod
    --controlplane`` writes it."""
    if control_plane is not None:
        env = [{"name": "cp_enable", "value": str(control_plane).lower()}, *env]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "kube-vip", "image": "ghcr.io/kube-vip/kube-vip:v0.8.9", "env": env}
            ]
        },
    }


def configmap(name: str, data: dict[str, str], namespace: str = "kube-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def service_cidr(name: str, *cidrs: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "spec": {"cidrs": list(cidrs)},
    }


def calico_pool(
    name: str,
    cidr: str,
    *,
    disabled: bool = False,
    allowed_uses: tuple[str, ...] | None = None,
    api_version: str = "crd.projectcalico.org/v1",
) -> dict[str, Any]:
    """A Calico IPPool as ``kubectl get ippools.crd.projectcalico.org -o yaml`` prints it
    (``projectcalico.org/v3``: as calicoctl and Calico's API server show it)."""
    spec: dict[str, Any] = {
        "cidr": cidr,
        "blockSize": 26,
        "ipipMode": "Always",
        "natOutgoing": True,
        "nodeSelector": "all()",
    }
    if disabled:
        spec["disabled"] = True
    if allowed_uses is not None:
        spec["allowedUses"] = list(allowed_uses)
    return {"apiVersion": api_version, "kind": "IPPool", "metadata": {"name": name}, "spec": spec}


def cilium_node(
    name: str,
    *,
    pod_cidrs: tuple[str, ...] = (),
    cilium_host: str | None = None,
    internal_ip: str | None = None,
    pools: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """A CiliumNode (``cilium.io/v2``), as Cilium's operator and agent write it."""
    addresses = []
    if internal_ip is not None:
        addresses.append({"type": "InternalIP", "ip": internal_ip})
    if cilium_host is not None:
        addresses.append({"type": "CiliumInternalIP", "ip": cilium_host})
    ipam: dict[str, Any] = {"podCIDRs": list(pod_cidrs)}
    if pools is not None:
        ipam["pools"] = {
            "allocated": [{"pool": pool, "cidrs": list(cidrs)} for pool, cidrs in pools.items()]
        }
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {"name": name},
        "spec": {"addresses": addresses, "ipam": ipam},
    }
