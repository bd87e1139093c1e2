"""`eip-guard certs` (a CA and a serving certificate for local use, and the caBundle): its
flags. What it runs is in certs_run."""

from __future__ import annotations

from typing import Any

from app.cli.flags import path
from app.cli.lazy import lazy


def register(sub: Any) -> None:
    p = sub.add_parser(
        "certs",
        help="write a CA and a serving certificate (ECDSA P-256); print the caBundle",
        description="Writes ca.crt, ca.key, tls.crt and tls.key (keys mode 0600) into --out "
        "and prints the base64 caBundle for the ValidatingWebhookConfiguration.",
        epilog="Exit codes: 0 written, 2 bad input or usage (files already in --out without "
        "--force or --renew; --renew without a CA there), or the caBundle could not be printed "
        "(the files are written).",
    )
    p.add_argument("--out", type=path, required=True, metavar="DIR")
    p.add_argument(
        "--dns",
        action="append",
        required=True,
        metavar="NAME",
        help="DNS SAN, repeatable; the API server connects to <service>.<namespace>.svc",
    )
    p.add_argument("--ip", action="append", default=[], metavar="IP", help="IP SAN, repeatable")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--force", action="store_true", help="replace existing files, the CA too")
    keep.add_argument(
        "--renew",
        action="store_true",
        help="keep the CA in --out; replace only tls.crt and tls.key (the caBundle stays)",
    )
    p.set_defaults(run=lazy("app.cli.certs_run", "run_certs"))
