"""`eip-guard certs`: what it runs (its flags are in certs_cmd)."""

from __future__ import annotations

import argparse
import sys

from app.cli.streams import drop_stdout
from app.pki.certs import (
    CertError,
    describe,
    make_bundle,
    renew_serving,
    signing_ca,
    write_bundle,
    write_serving,
)
from app.sources.errors import InputError, shown


def run_certs(args: argparse.Namespace) -> int:
    try:
        if args.renew:
            bundle = renew_serving(args.out, args.dns, args.ip)
            paths = write_serving(bundle, args.out)
        else:
            bundle = make_bundle(args.dns, args.ip)
            paths = write_bundle(bundle, args.out, force=args.force)
    except CertError as exc:
        raise InputError(str(exc)) from exc
    print(f"eip-guard: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    ca_end, end = (
        describe(signing_ca(bundle.ca).cert_pem).not_after,  # not the first of a ca.crt's CAs
        describe(bundle.serving.cert_pem).not_after,
    )
    if args.renew and end >= ca_end:
        print(
            f"eip-guard: the serving certificate ends with its CA, on {ca_end:%Y-%m-%d}: "
            "before then, make a new CA (--force) and update the caBundle",
            file=sys.stderr,
        )
    try:
        print(bundle.ca_bundle, flush=True)
    except BrokenPipeError:
        raise  # the reader went away (`| head -c0`): quiet, as any command
    except OSError as exc:
        # A full disk under `> bundle.txt`. The files are whole and the caBundle is ca.crt in
        # base64: say how to print it again, rather than leave a CA nobody can trust without
        # making a new one (--force).
        drop_stdout()
        ca = shown(args.out / "ca.crt")
        raise InputError(
            f"the certificates are written, but the caBundle could not be printed on stdout: "
            f"{exc.strerror or exc}. It is {ca} in base64: print it with 'base64 -w0 {ca}'"
        ) from exc
    return 0
