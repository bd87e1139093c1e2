"""Live-cluster flags shared by ``check``, ``audit`` and ``serve``, and what they build.

Where the cluster comes from (``check``/``audit``): ``--cluster SNAPSHOT`` reads files;
``--kubeconfig [FILE]`` (FILE defaults to ``$KUBECONFIG`` or ``~/.kube/config``) and
``--context`` read the live cluster. One of ``--cluster``/``--kubeconfig`` is required,
except inside a pod, where the default is the live cluster through the pod's service
account: a workstation never reads a cluster it was not told to. They exclude each other.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from app.core.inventory import Inventory, Options, Resolver, build
from app.core.verdict import Policy
from app.kube.settings import KubeError, LiveSettings, WatchSettings, namespaces
from app.sources.files import InputError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from app.kube.serving import Live

# The modules that import the kubernetes client are imported where live mode starts, so
# snapshot mode and --help never load it (start-up time and memory: see README Performance);
# prometheus_client, only named in annotations here, is for `serve` to load.


def add_source_args(p: argparse.ArgumentParser, group: Any | None = None) -> None:
    """``--kubeconfig`` (into ``group``, when the caller makes it exclusive with ``--cluster``),
    ``--context`` and the kube-vip namespaces."""
    (group or p).add_argument(
        "--kubeconfig",
        nargs="?",
        const="",
        metavar="FILE",
        help="read the live cluster with this kubeconfig; without FILE: $KUBECONFIG or "
        "~/.kube/config, as kubectl does",
    )
    p.add_argument("--context", metavar="NAME", help="kubeconfig context of the live cluster")
    p.add_argument(
        "--kube-vip-namespace",
        action="append",
        metavar="NS",
        help="where kube-vip Pods/DaemonSets/Deployments and their ConfigMaps live "
        "(repeatable or comma list; default kube-system)",
    )


def add_watch_args(p: argparse.ArgumentParser) -> None:
    """Flags only a long-running live ``serve`` needs."""
    defaults = WatchSettings()
    p.add_argument(
        "--watch-timeout",
        type=int,
        default=defaults.timeout_seconds,
        metavar="SECONDS",
        help="the API server ends each watch after this; eip-guard watches again "
        f"(default {defaults.timeout_seconds}; the client gives up on a silent connection "
        f"{defaults.read_grace:g}s later)",
    )
    p.add_argument(
        "--resync-interval",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="coalesce watch events: rebuild the inventory at most once per interval (default 0.2)",
    )
    p.add_argument(
        "--audit-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="run the background audit at most once per interval, after changes (default 10)",
    )
    p.add_argument(
        "--no-background-audit",
        action="store_true",
        help="do not audit existing Eips in the background (no Warning Events, no "
        "violation gauge; RBAC then needs no create/patch on events)",
    )


def live_requested(args: argparse.Namespace) -> bool:
    return not getattr(args, "cluster", None)


def check_exclusive(args: argparse.Namespace) -> None:
    if getattr(args, "cluster", None) and (args.kubeconfig is not None or args.context):
        raise InputError(
            "--cluster reads a snapshot; --kubeconfig/--context read a live cluster: pick one"
        )


def live_inventory(args: argparse.Namespace, options: Options, resolve: Resolver) -> Inventory:
    """One list per source of the live cluster, then the same ``build`` a snapshot gets."""
    from app.kube.snapshot import read_cluster  # noqa: PLC0415 - live mode only

    vip_namespaces = namespaces(args.kube_vip_namespace)
    try:
        objects, notes = read_cluster(args.kubeconfig, args.context, vip_namespaces, options)
    except KubeError as exc:
        raise InputError(str(exc)) from exc
    for note in notes:
        print(f"eip-guard: note: {note}", file=sys.stderr)
    return build(objects, options, resolve)


def live_settings(args: argparse.Namespace) -> LiveSettings:
    if args.watch_timeout < 1:
        raise InputError(f"--watch-timeout {args.watch_timeout}: must be at least 1 second")
    if args.resync_interval < 0 or args.audit_interval < 0:
        raise InputError("--resync-interval and --audit-interval must not be negative")
    return LiveSettings(
        kube_vip_namespaces=namespaces(args.kube_vip_namespace),
        watch=WatchSettings(timeout_seconds=args.watch_timeout),
        coalesce=args.resync_interval,
        audit_interval=args.audit_interval,
        audit=not args.no_background_audit,
    )


def start(
    args: argparse.Namespace,
    options: Options,
    policy: Policy,
    registry: CollectorRegistry,
    resolve: Resolver,
) -> Live:
    """Live mode for ``serve``: watches, inventory and background audit, started."""
    from app.kube.serving import connect_and_start  # noqa: PLC0415 - live mode only

    settings = live_settings(args)
    try:
        return connect_and_start(
            args.kubeconfig,
            args.context,
            registry,
            policy,
            options=options,
            settings=settings,
            resolve=resolve,
        )
    except KubeError as exc:
        raise InputError(str(exc)) from exc
