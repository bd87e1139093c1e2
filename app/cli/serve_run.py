"""`eip-guard serve`: the admission webhook over HTTPS, judging against snapshot files
(``--cluster``) or the live cluster (watched; in a pod by default, or ``--kubeconfig``): what
it runs (its flags are in serve_cmd)."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from app.cli import live, serve_tls
from app.cli.check_run import options, resolve_dns, snapshot_inventory, stdin_once
from app.cli.flags import seconds
from app.core.inventory import Inventory, first_lines
from app.core.sources import InventorySource, StaticSource
from app.kube.settings import KubeError
from app.pki.readiness import CertGatedSource
from app.sources.errors import InputError
from app.sources.files import load_policy
from app.sources.gc_pause import gc_paused
from app.webhook import logs
from app.webhook.app import VALIDATE_PATH, create_app
from app.webhook.metrics import Metrics
from app.webhook.server import listen


def kube_client(args: argparse.Namespace) -> Any:
    """The API client of --tls-secret: --kubeconfig/--context, in a pod its account."""
    from app.kube.config import api_client  # noqa: PLC0415 - only self-managed TLS needs it

    try:
        return api_client(args.kubeconfig or None, args.context)
    except KubeError as exc:
        raise InputError(str(exc)) from exc


def _frozen_snapshot_inventory(args: argparse.Namespace) -> Inventory:
    """The snapshot's inventory, built with the cyclic GC paused, then frozen: it lives as
    long as the process, so no later collection should walk its million objects (request
    p99). Live mode does not freeze: its inventories are swapped, and frozen ones would leak.

    Frozen garbage would leak too. One collection first, of what start-up made so far
    (cheap: no snapshot yet); loading and building make no cyclic garbage (a test holds
    them to it), so there is none to collect after them: a collection there only walked
    the inventory's objects (0.2-0.3 s at the xl size).
    """
    gc.collect()
    with gc_paused():
        inventory = snapshot_inventory(args)
        gc.freeze()
    return inventory


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise InputError(f"--port {args.port}: expected 0-65535")
    seconds("--shutdown-delay", args.shutdown_delay, zero=True)
    stdin_once(args)
    policy = load_policy(args.policy)
    live.check_exclusive(args)
    watching = live.live_requested(args)
    inventory = None if watching else _frozen_snapshot_inventory(args)
    settings = live.live_settings(args) if watching else None
    tls = serve_tls.prepare(args, lambda: kube_client(args))
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc
    try:
        probe_sock = serve_tls.listen_probe(args, sock)
    except InputError:
        sock.close()
        raise
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 literal in a URL
    listener = logs.setup(getattr(logging, args.log_level.upper()))
    metrics = Metrics()
    serve_tls.register_metrics(metrics.registry, tls)
    running = None
    try:
        where: dict[str, Any]
        source: InventorySource
        if inventory is not None:
            source = StaticSource(inventory)
            where = {"snapshots": [str(p) for p in args.cluster], "eips": len(inventory.eips)}
            for line in first_lines(inventory.problems):  # live mode tells its own, as they come
                logging.getLogger(logs.DECISIONS).warning(
                    "cluster snapshot", extra={"fields": {"problem": line}}
                )
        else:
            assert settings is not None
            running = live.start(args, options(args), policy, metrics.registry, resolve_dns)
            source = running.source
            where = {"cluster": "live", "kube_vip_namespaces": list(settings.kube_vip_namespaces)}
        logging.getLogger(logs.DECISIONS).info(
            "serving",
            extra={
                "fields": {
                    "address": f"https://{host}:{port}{VALIDATE_PATH}",
                    **where,
                    **tls.fields,
                    **serve_tls.probe_fields(args, probe_sock),
                }
            },
        )
        tls.report(tls.hot)  # a certificate not valid now: the log says so from the start
        # /readyz (and the probe port's) also waits for a valid serving certificate.
        app = create_app(CertGatedSource(source, tls.hot), policy, metrics=metrics)
        serve_tls.serve(app, sock, tls, probe_sock, drain_seconds=args.shutdown_delay)
    finally:
        if running is not None:
            running.stop()
        listener.stop()
        sock.close()
        if probe_sock is not None:
            probe_sock.close()
    return 0
