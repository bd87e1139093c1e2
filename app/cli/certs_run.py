"""`eip-guard certs`: what it runs (its flags are in certs_cmd)."""

from __future__ import annotations

import argparse
import sys

from app.pki.certs import CertError, make_bundle, write_bundle
from app.sources.errors import InputError


def run_certs(args: argparse.Namespace) -> int:
    try:
        bundle = make_bundle(args.dns, args.ip)
        paths = write_bundle(bundle, args.out, force=args.force)
    except CertError as exc:
        raise InputError(str(exc)) from exc
    print(f"eip-guard: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    print(bundle.ca_bundle)
    return 0
