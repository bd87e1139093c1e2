"""The floor: our own HTTPS stack answering every review with a fixed "allowed", no decision.

Same TLS context, same uvicorn configuration, same socket setup as ``eip-guard serve``
(``app.webhook.server``); the handler reads the body, takes the uid out of it with
``json.loads`` and returns a fixed AdmissionReview. Whatever the webhook costs above this
is ours: review parsing and validation, the decision, the response, the decision log.

Run as ``python -m bench.floor --tls-cert-file F --tls-key-file F --port N``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastapi import FastAPI, Request, Response

from app.webhook.app import VALIDATE_PATH
from app.webhook.server import listen, serve, ssl_context

JSON = "application/json"
ANSWER = (
    '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    '"response":{"uid":%s,"allowed":true}}'
)


def create_floor() -> FastAPI:
    # Routed as the webhook routes (plain Starlette routes on the FastAPI app): a FastAPI
    # route's dependency solving would add about 35 us to the floor alone and flatter us.
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def validate(request: Request) -> Response:
        uid = json.loads(await request.body())["request"]["uid"]
        return Response((ANSWER % json.dumps(uid)).encode(), media_type=JSON)

    async def readyz(_: Request) -> Response:
        return Response(b'{"ready":true}', media_type=JSON)

    app.add_route(VALIDATE_PATH, validate, methods=["POST"])
    app.add_route("/readyz", readyz, methods=["GET"])
    return app


def server_args(module: str) -> argparse.Namespace:
    """The command line of a bench server: its TLS files and where to listen."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--tls-cert-file", type=Path, required=True)
    parser.add_argument("--tls-key-file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


def main() -> None:
    args = server_args("bench.floor")
    cert, key = args.tls_cert_file, args.tls_key_file
    serve(create_floor(), listen(args.host, args.port), lambda: ssl_context(cert, key))


if __name__ == "__main__":
    main()
