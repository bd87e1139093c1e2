"""`eip-guard serve`: the admission webhook over HTTPS, judging against snapshot files."""

from __future__ import annotations

import argparse
import functools
import logging
import ssl
from pathlib import Path
from typing import Any

from app.cli.check_cmd import cluster_args, snapshot_inventory
from app.core.sources import StaticSource
from app.sources.files import InputError, load_policy
from app.webhook import logs
from app.webhook.app import VALIDATE_PATH, create_app
from app.webhook.server import listen, serve, ssl_context

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the validating admission webhook over HTTPS from cluster snapshots",
        description=f"Serves POST {VALIDATE_PATH}, /healthz, /readyz and /metrics over HTTPS.",
    )
    cluster_args(p, output=False)
    p.add_argument("--tls-cert-file", type=Path, required=True, metavar="FILE")
    p.add_argument("--tls-key-file", type=Path, required=True, metavar="FILE")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--port", type=int, default=8443, help="port to listen on (default 8443; 0: any free)"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.set_defaults(run=run_serve)


def tls_factory(cert_file: Path, key_file: Path) -> functools.partial[ssl.SSLContext]:
    """A factory of server SSL contexts, tried once now so bad files fail before serving."""
    for flag, path in (("--tls-cert-file", cert_file), ("--tls-key-file", key_file)):
        if not path.is_file():
            raise InputError(f"{flag} {path}: no such file")
    make = functools.partial(ssl_context, cert_file, key_file)
    try:
        make()
    except (OSError, ssl.SSLError) as exc:
        raise InputError(
            f"{cert_file}, {key_file}: cannot load the certificate and key "
            f"({getattr(exc, 'reason', None) or exc}): both PEM, and the key must match"
        ) from exc
    return make


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise InputError(f"--port {args.port}: expected 0-65535")
    policy = load_policy(args.policy)
    inventory = snapshot_inventory(args)
    make_ssl = tls_factory(args.tls_cert_file, args.tls_key_file)
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc
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
                }
            },
        )
        serve(create_app(StaticSource(inventory), policy), sock, make_ssl)
    finally:
        listener.stop()
        sock.close()
    return 0
