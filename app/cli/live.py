"""What the live-cluster flags of ``check``, ``audit`` and ``serve`` build (the flags are in
``check_cmd.source_args`` and ``serve_cmd.watch_args``).

Where the cluster comes from (``check``/``audit``): ``--cluster SNAPSHOT`` reads files;
``--kubeconfig [FILE]`` (FILE defaults to ``$KUBECONFIG`` or ``~/.kube/config``) and
``--context`` read the live cluster. One of ``--cluster``/``--kubeconfig`` is required,
except inside a pod, where the default is the live cluster through the pod's service
account: a workstation never reads a cluster it was not told to. They exclude each other.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from app.cli.flags import seconds
from app.core.inventory import Inventory, Options, Resolver, build
from app.core.verdict import Policy
from app.kube.settings import KubeError, LiveSettings, WatchSettings, namespaces
from app.sources.errors import InputError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from app.kube.serving import Live

# The modules that import the kubernetes client are imported where live mode starts, so
# snapshot mode and --help never load it (start-up time and memory: see README Performance);
# prometheus_client, only named in annotations here, is for `serve` to load.


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
    inventory = build(objects, options, resolve)
    # What could not be read (a missing Eip CRD) joins what the inventory ignored: the
    # caller prints both on stderr, and `audit -o json` lists both under "notes".
    return replace(inventory, notes=(*notes, *inventory.notes)) if notes else inventory


def live_settings(args: argparse.Namespace) -> LiveSettings:
    if args.watch_timeout < 1:
        raise InputError(f"--watch-timeout {args.watch_timeout}: must be at least 1 second")
    seconds("--resync-interval", args.resync_interval, zero=True)
    seconds("--audit-interval", args.audit_interval, zero=True)
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
