"""`eip-guard serve`: the admission webhook over HTTPS, judging against snapshot files."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from app.cli import serve_tls
from app.cli.check_cmd import cluster_args, snapshot_inventory
from app.core.sources import StaticSource
from app.kube.certs import default_api_client
from app.pki.readiness import CertGatedSource
from app.sources.files import InputError, load_policy
from app.webhook import logs
from app.webhook.app import VALIDATE_PATH, create_app
from app.webhook.server import listen

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the validating admission webhook over HTTPS from cluster snapshots",
        description=f"Serves POST {VALIDATE_PATH}, /healthz, /readyz and /metrics over HTTPS.",
    )
    cluster_args(p, output=False)
    serve_tls.add_args(p)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--port", type=int, default=8443, help="port to listen on (default 8443; 0: any free)"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise InputError(f"--port {args.port}: expected 0-65535")
    policy = load_policy(args.policy)
    inventory = snapshot_inventory(args)
    tls = serve_tls.prepare(args, default_api_client)
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
    listener = logs.setup(getattr(logging, args.log_level.upper()))
    try:
        logging.getLogger(logs.DECISIONS).info(
            "serving",
            extra={
                "fields": {
                    "address": f"https://{args.host}:{port}{VALIDATE_PATH}",
                    "snapshots": [str(p) for p in args.cluster],
                    "eips": len(inventory.eips),
                    **tls.fields,
                    **serve_tls.probe_fields(args, probe_sock),
                }
            },
        )
        source = CertGatedSource(StaticSource(inventory), tls.hot)
        serve_tls.serve(create_app(source, policy), sock, tls, probe_sock)
    finally:
        listener.stop()
        sock.close()
        if probe_sock is not None:
            probe_sock.close()
    return 0
