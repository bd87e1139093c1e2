"""The webhook with its decision taken out: what the decision costs when served.

Everything ``eip-guard serve`` does per review stays: the same app (``create_app``) behind
the same TLS and uvicorn set-up, pydantic parsing the review, the metrics, the decision
log line and the answer's JSON. Only ``decide`` (``Eip.from_object``, ``check``, the
denial's text) is replaced by a fixed "allowed". The bench serves it next to the webhook
and the floor: webhook minus this is the decision; this minus the floor is the rest of
what the webhook adds.

Run as ``python -m bench.no_decision --tls-cert-file F --tls-key-file F --port N``.
"""

from __future__ import annotations

import logging

from app.core.inventory import Inventory
from app.core.sources import InventorySource, StaticSource
from app.core.verdict import Policy
from app.webhook import app as webhook
from app.webhook import logs, responses
from app.webhook.admission import Decision
from app.webhook.reviews import AdmissionRequest
from app.webhook.server import listen, serve, ssl_context
from bench.floor import server_args


def _allowed(request: AdmissionRequest, _source: InventorySource, _policy: Policy) -> Decision:
    return Decision(responses.allowed(request.uid), "allowed", request.name)


def main() -> None:
    args = server_args("bench.no_decision")
    cert, key = args.tls_cert_file, args.tls_key_file
    # This process only: the app looks ``decide`` up in its module on every review.
    setattr(webhook, "decide", _allowed)  # noqa: B010 - a name the module does not export
    listener = logs.setup(logging.INFO)
    try:
        app = webhook.create_app(StaticSource(Inventory()), Policy())
        serve(app, listen(args.host, args.port), lambda: ssl_context(cert, key))
    finally:
        listener.stop()


if __name__ == "__main__":
    main()
