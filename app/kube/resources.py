"""What eip-guard lists and watches, and how to ask the API for each (one ``Resource`` a row).

Each row yields one ``Stream`` per namespace it covers: a stream is the unit that is listed,
watched, made ready and measured on its own, so one slow or failing namespace or resource
never stalls another.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.core.eips import GROUP
from app.core.inventory import Options
from app.kube import rest

EIP_VERSION = "v1alpha2"
EIP_CRD = f"eips.{GROUP}"
DEFAULT_KUBE_VIP_NAMESPACES = ("kube-system",)

Lister = Callable[..., Any]
"""A list function, called as the generated client's ``list_*`` are (``app.kube.rest``)."""


@dataclass(frozen=True, slots=True)
class Resource:
    plural: str  # metrics label and log name, e.g. "pods"
    api_version: str  # list items carry no apiVersion/kind: we restore them for extract()
    kind: str
    scope: str  # "cluster" (cluster-scoped), "all" (all namespaces), "namespaced"
    # Optional: a 404 on the list means "this API server does not offer it" (held empty, no
    # gap), and a 403 "eip-guard may not read it": held empty too, and ``unchecked`` (what
    # goes unread then) said as a gap, rather than a replica kept not ready for it.
    optional: bool = False
    unchecked: str = ""

    @property
    def qualified(self) -> str:
        """The resource as RBAC and kubectl name it: ``nodes``, ``ippools.crd.projectcalico.org``
        (the plural alone is ambiguous: Whereabouts, Antrea and Kube-OVN have ippools too)."""
        group = self.api_version.rpartition("/")[0]
        return f"{self.plural}.{group}" if group else self.plural


NODES = Resource("nodes", "v1", "Node", "cluster")
EIPS = Resource("eips", f"{GROUP}/{EIP_VERSION}", "Eip", "cluster")
SERVICES = Resource("services", "v1", "Service", "all")
PODS = Resource("pods", "v1", "Pod", "namespaced")
DAEMONSETS = Resource("daemonsets", "apps/v1", "DaemonSet", "namespaced")
DEPLOYMENTS = Resource("deployments", "apps/v1", "Deployment", "namespaced")
CONFIGMAPS = Resource("configmaps", "v1", "ConfigMap", "namespaced")
# Optional, though Kubernetes 1.33 serves them: their ranges are also read from kubeadm-config
# and kube-apiserver's flags, and every Service IP from the Services themselves; a role
# without the rule (older than that rule) would otherwise keep every replica not ready from
# the day the cluster is upgraded to 1.33.
SERVICECIDRS = Resource(
    "servicecidrs", "networking.k8s.io/v1", "ServiceCIDR", "cluster",
    optional=True, unchecked="Service ranges in ServiceCIDRs",
)  # fmt: skip
# The CNIs' own records of pod ranges: CRDs that exist only where that CNI runs (a 404 on
# the list: no such CNI here, asked again as absent resources are). Calico's as stored in
# the Kubernetes datastore (its API server's projectcalico.org/v3 serves the same objects).
CALICO_IPPOOLS = Resource(
    "ippools", "crd.projectcalico.org/v1", "IPPool", "cluster",
    optional=True, unchecked="pod ranges in Calico IPPools",
)  # fmt: skip
CILIUMNODES = Resource(
    "ciliumnodes", "cilium.io/v2", "CiliumNode", "cluster",
    optional=True, unchecked="pod CIDRs in CiliumNodes",
)  # fmt: skip
RESOURCES = (
    NODES,
    EIPS,
    SERVICES,
    PODS,
    DAEMONSETS,
    DEPLOYMENTS,
    CONFIGMAPS,
    SERVICECIDRS,
    CALICO_IPPOOLS,
    CILIUMNODES,
)
# The node agent's only: which nodes serve a Service (externalTrafficPolicy: Local).
ENDPOINTSLICES = Resource("endpointslices", "discovery.k8s.io/v1", "EndpointSlice", "all")


@dataclass(frozen=True, slots=True)
class Stream:
    """One resource in one namespace (or cluster-wide), optionally only the objects a label
    selector picks: listed and watched on its own."""

    resource: Resource
    namespace: str | None = None
    label_selector: str | None = None

    @property
    def name(self) -> str:
        return (
            f"{self.resource.plural}/{self.namespace}" if self.namespace else self.resource.plural
        )

    def lister(self, api: client.ApiClient) -> Lister:
        where = rest.path(self.resource.api_version, self.resource.plural, self.namespace)
        return rest.lister(api, where, label_selector=self.label_selector)


def streams(kube_vip_namespaces: Iterable[str], options: Options) -> tuple[Stream, ...]:
    """Every stream the inventory needs: kube-vip kinds in its namespaces, the rest cluster-wide.

    ConfigMaps are read in the kube-vip namespaces (values that env vars reference) and in the
    namespace of the kube-vip-cloud-provider ConfigMap, wherever that option puts it.
    """
    vip_ns = tuple(dict.fromkeys(kube_vip_namespaces))
    cm_ns = tuple(dict.fromkeys((*vip_ns, options.kube_vip_configmap[0])))
    out = [Stream(NODES), Stream(EIPS), Stream(SERVICES), Stream(SERVICECIDRS)]
    out += [Stream(CALICO_IPPOOLS), Stream(CILIUMNODES)]
    out += [Stream(r, ns) for r in (PODS, DAEMONSETS, DEPLOYMENTS) for ns in vip_ns]
    out += [Stream(CONFIGMAPS, ns) for ns in cm_ns]
    return tuple(out)


def rbac_rules() -> list[dict[str, Any]]:
    """The ClusterRole rules live mode needs, and no more: the chart and the README snippet are
    checked against these, and these against every request live mode makes of kmock."""
    return [
        {"apiGroups": [""], "resources": ["nodes", "services", "pods", "configmaps"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments"],
         "verbs": ["list", "watch"]},
        {"apiGroups": [GROUP], "resources": ["eips"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["servicecidrs"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["crd.projectcalico.org"], "resources": ["ippools"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["cilium.io"], "resources": ["ciliumnodes"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]  # fmt: skip


log = logging.getLogger("eip_guard.kube")
GONE = 410  # a resourceVersion or continue token too old: list again


class UnreadableAnswer(Exception):
    """The API server answered, with what is no list or no watch event."""


T = TypeVar("T")
PAGE = 500  # objects per list request: a big cluster's Services come in chunks, as kubectl does


def list_all(
    stream: Stream,
    lister: Lister,
    timeout: tuple[float, float],
    keep: Callable[[dict[str, Any]], T | None],
) -> tuple[list[T], str]:
    """What ``keep`` makes of every object of a stream (following ``continue`` tokens; None
    is left out), and the list's resourceVersion.

    Each page goes through ``keep`` as it arrives, so a caller that keeps less than whole
    objects never holds more than one page of them (100,000 Services parsed at once peaked
    at 470 MB). Items of a list carry no apiVersion/kind on a real API server; ``extract``
    needs them.
    """
    items: list[T] = []
    token: str | None = None
    rv = ""
    paged = True
    tokens: set[str] = set()
    expired = 0  # continue tokens that expired during this list
    while True:
        kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": timeout}
        if paged:
            kwargs["limit"] = PAGE
        if token:
            kwargs["_continue"] = token
        try:
            resp = lister(**kwargs)
        except ApiException as exc:
            if exc.status != GONE or not token:
                raise
            # The continue token expired: the list took longer than etcd keeps its revision
            # (5 min). Listed again in pages first: one answer holds every object at once
            # (100,000 Services parsed whole peaked near 500 MB). Expired twice, the list
            # is made whole, in one answer, as client-go's pager does at once.
            expired += 1
            how = "in pages again" if expired == 1 else "whole, in one answer"
            log.info("%s: a page's continue token expired (410); listing %s", stream.name, how)
            items, token, paged, tokens = [], None, expired == 1, set()
            continue
        try:
            data = json.loads(resp.data)
        finally:
            resp.release_conn()
        if (
            not isinstance(data, dict)
            or data.get("kind") == "Status"
            or not isinstance(data.get("items", ()), list | None)
            or "items" not in data
        ):
            # A Status (a proxy's error) or {} answered 200 is no empty list: taken as one,
            # it emptied the store and the next watch started from resourceVersion "".
            what = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise UnreadableAnswer(f"the list answered with no list (kind {what!r})")
        meta = data.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or "")
        for obj in data["items"] or ():
            if isinstance(obj, dict):
                obj.setdefault("apiVersion", stream.resource.api_version)
                obj.setdefault("kind", stream.resource.kind)
                kept = keep(obj)
                if kept is not None:
                    items.append(kept)
        del data  # this page's parsed objects: gone before the next page is read
        token = meta.get("continue") or None
        if not token:
            return items, rv
        if token in tokens:  # a broken server or proxy: the same page for ever
            raise UnreadableAnswer("the list answered a continue token it had given before")
        tokens.add(token)


def forbidden_gap(resource: Resource) -> str:
    """The gap of an optional resource the API refuses to list (403): what goes unchecked
    and the grant that ends it, short enough for a kubectl warning after "eip-guard: not
    checked: " (WARNING_LIMIT)."""
    return f"{resource.unchecked} (RBAC: grant list and watch on {resource.qualified})"


def describe_failure(
    stream: Stream, exc: BaseException, *, retrying: bool = True, server: str | None = None
) -> str:
    """What went wrong with a stream, and what to do, in one line (logs, /readyz, CLI);
    ``server``: the API server's URL, for an error that does not name it."""
    status = getattr(exc, "status", None)
    again = "; retrying" if retrying else ""
    if isinstance(exc, ApiException) and status == 404 and stream.resource is EIPS:
        return (
            f"the Eip CRD {EIP_CRD} (version {EIP_VERSION}) is not installed: the API answers "
            f"404 to the list of Eips. Install OpenELB (or its CRDs){again}"
        )
    if isinstance(exc, ApiException) and status == 401:
        # Who eip-guard is was refused, not what it may do: no RBAC grant helps.
        return (
            f"{stream.name}: the API does not accept eip-guard's credentials ({status} "
            f"{exc.reason}): the token expired or was revoked, or the client certificate is "
            "not trusted; check the kubeconfig user or the pod's service account token"
            f"{again}"
        )
    if isinstance(exc, ApiException) and status == 403:
        return (
            f"{stream.name}: the API refuses the list/watch ({status} {exc.reason}): grant "
            f"list and watch on {stream.resource.qualified} to eip-guard's service account "
            f"(README: RBAC){again}"
        )
    if isinstance(exc, ApiException):
        # The Status's message, as kubectl prints "Error from server (InternalError): boom":
        # what broke (etcd, a webhook, a conversion) where "500" says none of it.
        message = rest.status_message(exc)
        said = f": {message[:200]}" if message else ""
        return f"{stream.name}: the API answers {status} {exc.reason}{said}{again}"
    if isinstance(exc, UnreadableAnswer | ValueError | KeyError):  # ValueError: JSON
        text = str(exc).splitlines()[0] if str(exc) else ""
        return (
            f"{stream.name}: the API server's answer could not be read "
            f"({type(exc).__name__}: {text[:200]}){again}"
        )
    return f"{stream.name}: {rest.unreachable(exc, server)}{again}"
