"""`eip-guard certs`: a CA and a serving certificate for local use, and the caBundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.pki.certs import CertError, make_bundle, write_bundle
from app.sources.files import InputError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "certs",
        help="write a CA and a serving certificate (ECDSA P-256); print the caBundle",
        description="Writes ca.crt, ca.key, tls.crt and tls.key (keys mode 0600) into --out "
        "and prints the base64 caBundle for the ValidatingWebhookConfiguration.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--dns",
        action="append",
        required=True,
        metavar="NAME",
        help="DNS SAN, repeatable; the API server connects to <service>.<namespace>.svc",
    )
    p.add_argument("--ip", action="append", default=[], metavar="IP", help="IP SAN, repeatable")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(run=run_certs)


def run_certs(args: argparse.Namespace) -> int:
    try:
        bundle = make_bundle(args.dns, args.ip)
        paths = write_bundle(bundle, args.out, force=args.force)
    except CertError as exc:
        raise InputError(str(exc)) from exc
    print(f"eip-guard: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    print(bundle.ca_bundle)
    return 0
