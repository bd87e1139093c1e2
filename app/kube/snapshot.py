"""One list per stream, for ``eip-guard check`` / ``audit`` against a live cluster."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.core.inventory import Options
from app.kube.config import KubeError, api_client
from app.kube.resources import (
    EIPS,
    GONE,
    Stream,
    describe_failure,
    forbidden_gap,
    list_all,
    streams,
)
from app.kube.settings import WatchSettings


def _whole(obj: dict[str, Any]) -> dict[str, Any]:
    return obj  # check and audit build from whole objects, as from a snapshot file


def list_cluster(
    api: client.ApiClient, streams: Iterable[Stream], settings: WatchSettings | None = None
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Every object of every stream, notes on what could not be read but is not fatal, and
    gaps: what goes unchecked for it.

    A missing Eip CRD is a note (the rest can still be judged), a missing optional API
    (ServiceCIDRs, a CNI's CRD) nothing, an optional one that may not be listed (403) a gap,
    as live mode has it; any other failure raises ``KubeError`` with what to do.
    """
    timeout = (settings or WatchSettings()).list_timeout
    server = api.configuration.host
    objects: list[dict[str, Any]] = []
    notes: list[str] = []
    gaps: list[str] = []
    for stream in streams:
        try:
            try:
                items, _rv = list_all(stream, stream.lister(api), timeout, _whole)
            except ApiException as exc:
                if exc.status != GONE:
                    raise
                # A page's continue token expired (a big list, a busy server): list again
                # from the start, once, as kubectl does.
                items, _rv = list_all(stream, stream.lister(api), timeout, _whole)
        except ApiException as exc:
            if exc.status == 404 and (stream.resource.optional or stream.resource is EIPS):
                if stream.resource is EIPS:
                    notes.append(describe_failure(stream, exc, retrying=False))
                continue
            if exc.status == 403 and stream.resource.optional:
                gaps.append(forbidden_gap(stream.resource))
                continue
            raise KubeError(describe_failure(stream, exc, retrying=False)) from exc
        except Exception as exc:
            said = describe_failure(stream, exc, retrying=False, server=server)
            raise KubeError(said) from exc
        objects.extend(items)
    return objects, notes, gaps


def read_cluster(
    kubeconfig: str | None,
    context: str | None,
    kube_vip_namespaces: Iterable[str],
    options: Options,
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Connect (kubectl's order, see ``api_client``), list every stream once, disconnect."""
    api = api_client(kubeconfig, context)
    try:
        return list_cluster(api, streams(kube_vip_namespaces, options))
    finally:
        api.close()  # type: ignore[no-untyped-call]
