"""`eip-guard serve`: the admission webhook over HTTPS, judging against snapshot files
(``--cluster``) or the live cluster (watched; in a pod by default, or ``--kubeconfig``): its
flags. What it runs is in serve_run (and serve_tls)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from app.cli.check_cmd import cluster_args
from app.cli.flags import listen_host, path
from app.cli.lazy import lazy
from app.kube.settings import LiveSettings

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the validating admission webhook over HTTPS (snapshots or the live cluster)",
        # app.webhook.app.VALIDATE_PATH, spelled out: importing it loads FastAPI (a test holds
        # them equal).
        description="Serves POST /validate-eip, /healthz, /readyz and /metrics over HTTPS.",
        epilog="Exit codes: 0 stopped by SIGTERM or Ctrl-C, 2 bad input or usage (a snapshot, "
        "policy, certificate or key that cannot be used, a port in use; said before anything "
        "is served).",
    )
    cluster_args(p, output=False)
    watch_args(p)
    tls_args(p)
    p.add_argument(
        "--host", type=listen_host, default="0.0.0.0", help="address to listen on (default 0.0.0.0)"
    )
    p.add_argument(
        "--port", type=int, default=8443, help="port to listen on (default 8443; 0: any free)"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, go on answering this long while /readyz answers 503 and each "
        "connection is closed after its answer, then stop (default 0; the chart gives 5: a "
        "terminating pod's Endpoints still receive for a moment)",
    )
    p.set_defaults(run=lazy("app.cli.serve_run", "run_serve"))


def watch_args(p: argparse.ArgumentParser) -> None:
    """Flags only a long-running live ``serve`` needs. Their defaults are LiveSettings', filled
    in by ``live.live_settings``: None here tells a flag given with --cluster (refused)."""
    defaults = LiveSettings()
    p.add_argument(
        "--watch-timeout",
        type=int,
        metavar="SECONDS",
        help="the API server ends each watch after this; eip-guard watches again "
        f"(default {defaults.watch.timeout_seconds}; the client gives up on a silent "
        f"connection {defaults.watch.read_grace:g}s later)",
    )
    p.add_argument(
        "--resync-interval",
        type=float,
        metavar="SECONDS",
        help="coalesce watch events: rebuild the inventory at most once per interval "
        f"(default {defaults.coalesce:g})",
    )
    p.add_argument(
        "--audit-interval",
        type=float,
        metavar="SECONDS",
        help="run the background audit at most once per interval, after changes "
        f"(default {defaults.audit_interval:g})",
    )
    p.add_argument(
        "--no-background-audit",
        action="store_true",
        help="do not audit existing Eips in the background (no Warning Events, no "
        "violation gauge; RBAC then needs no create/patch on events)",
    )


def tls_args(p: argparse.ArgumentParser) -> None:
    """The TLS flags and --probe-port: what they do is in serve_tls."""
    g = p.add_argument_group(
        "TLS", "either --tls-cert-file and --tls-key-file, or --tls-secret (self-managed)"
    )
    g.add_argument("--tls-cert-file", type=path, metavar="FILE")
    g.add_argument("--tls-key-file", type=path, metavar="FILE")
    g.add_argument(
        "--tls-reload-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often the files are checked for a renewed certificate (default 10)",
    )
    g.add_argument(
        "--tls-secret",
        metavar="NAME",
        help="self-managed: keep a CA and a serving certificate in this Secret of --namespace",
    )
    g.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="self-managed: the ValidatingWebhookConfiguration whose caBundle is kept in step",
    )
    g.add_argument(
        "--service", metavar="NAME", help="self-managed: the webhook's Service (certificate names)"
    )
    g.add_argument(
        "--namespace",
        metavar="NS",
        default=os.environ.get("POD_NAMESPACE"),
        help="self-managed: namespace of the Secret and the Service (default $POD_NAMESPACE)",
    )
    g.add_argument(
        "--cert-renew-before-days",
        type=int,
        default=60,
        metavar="DAYS",
        help="self-managed: renew the 1-year serving certificate this long before expiry "
        "(default 60)",
    )
    g.add_argument(
        "--cert-check-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="self-managed: how often the Secret and the caBundle are checked (default 300)",
    )
    p.add_argument(
        "--probe-port",
        type=int,
        metavar="PORT",
        help="also serve /healthz, /readyz and /metrics over plain HTTP on this port",
    )
