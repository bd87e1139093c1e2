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

from app.cli.flags import MAX_SECONDS, seconds
from app.core.inventory import Inventory, Options, Resolver, build
from app.core.verdict import Policy
from app.kube.settings import KubeError, LiveSettings, namespaces
from app.sources.errors import InputError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from app.kube.serving import Live

# The modules that import the kubernetes client are imported where live mode starts, so
# snapshot mode and --help never load it (start-up time and memory: see README Performance);
# prometheus_client, only named in annotations here, is for `serve` to load.


def live_requested(args: argparse.Namespace) -> bool:
    return not getattr(args, "cluster", None)


# Flags that only shape reading the live cluster (dest, flag); None or False when not given.
LIVE_ONLY = (
    ("kube_vip_namespace", "--kube-vip-namespace"),
    ("watch_timeout", "--watch-timeout"),
    ("resync_interval", "--resync-interval"),
    ("audit_interval", "--audit-interval"),
    ("no_background_audit", "--no-background-audit"),
)


def check_exclusive(args: argparse.Namespace) -> None:
    if not getattr(args, "cluster", None):
        return
    if args.kubeconfig is not None or args.context:
        raise InputError(
            "--cluster reads a snapshot; --kubeconfig/--context read a live cluster: pick one"
        )
    # A snapshot would silently ignore them: say so rather than let a typo'd mode pass.
    given = [flag for dest, flag in LIVE_ONLY if getattr(args, dest, None) not in (None, False)]
    if given:
        one = len(given) == 1
        raise InputError(
            f"{', '.join(given)} {'applies' if one else 'apply'} only to the live cluster "
            f"(--kubeconfig, or in a pod), and --cluster reads a snapshot: drop "
            f"{'it' if one else 'them'}, or --cluster"
        )


def live_inventory(args: argparse.Namespace, options: Options, resolve: Resolver) -> Inventory:
    """One list per source of the live cluster, then the same ``build`` a snapshot gets."""
    from app.kube.snapshot import read_cluster  # noqa: PLC0415 - live mode only

    vip_namespaces = namespaces(args.kube_vip_namespace)
    try:
        objects, notes, gaps = read_cluster(args.kubeconfig, args.context, vip_namespaces, options)
    except KubeError as exc:
        raise InputError(str(exc)) from exc
    inventory = build(objects, options, resolve)
    # What could not be read (a missing Eip CRD) joins what the inventory ignored, and an
    # optional source that may not be listed what it could not check: the caller prints
    # both on stderr, and `audit -o json` lists both under "notes".
    if not notes and not gaps:
        return inventory
    return replace(inventory, notes=(*notes, *inventory.notes), gaps=(*gaps, *inventory.gaps))


def live_settings(args: argparse.Namespace) -> LiveSettings:
    """The live flags of ``serve`` (``serve_cmd.watch_args``), LiveSettings' defaults where not
    given."""
    defaults = LiveSettings()

    def given(value: float | None, default: float) -> float:
        return default if value is None else value

    timeout = int(given(args.watch_timeout, defaults.watch.timeout_seconds))
    # Capped as every interval is: a read timeout past the platform's timers (1e11 s) made
    # every watch raise OverflowError, and serve never became ready.
    if not 1 <= timeout <= MAX_SECONDS:
        raise InputError(f"--watch-timeout {timeout}: expected whole seconds, 1 to {MAX_SECONDS}")
    return LiveSettings(
        kube_vip_namespaces=namespaces(args.kube_vip_namespace),
        watch=replace(defaults.watch, timeout_seconds=timeout),
        coalesce=seconds(
            "--resync-interval", given(args.resync_interval, defaults.coalesce), zero=True
        ),
        audit_interval=seconds(
            "--audit-interval", given(args.audit_interval, defaults.audit_interval), zero=True
        ),
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
