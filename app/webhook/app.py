"""The HTTP app: ``POST /validate-eip``, ``/healthz``, ``/readyz``, ``/metrics``.

Built by :func:`create_app` from what it needs (an inventory source, a policy), so tests and
the live mode hand it whatever source they have. Outcomes:

- HTTP 200 with an AdmissionReview of the request's apiVersion for a verdict (allowed or
  denied);
- HTTP 503 (not ready) or 500 (an exception of ours) with a ``v1`` ``Status`` for a review
  that could not be judged: a failed call, to which the API server applies failurePolicy;
- HTTP 400 with a ``v1`` ``Status`` for a review no API server sends (no object, an UPDATE
  without its oldObject): counted as refused (``rejected``), not as a review;
- HTTP 400 with ``{"code", "reason"}`` when the body is not JSON, not an AdmissionReview,
  or not ``application/json``, or comes in an Upgrade request (never read); HTTP 501 for
  a transfer coding other than chunked; HTTP 413 when it exceeds ``max_body_bytes``
  (checked while reading, so a huge body is never buffered).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.core.addresses import shown
from app.core.sources import InventorySource, Readiness
from app.core.verdict import Policy
from app.webhook import responses
from app.webhook.admission import MALFORMED, Decision, decide
from app.webhook.connections import UPGRADE
from app.webhook.logs import DECISIONS, line_emitter
from app.webhook.metrics import Metrics
from app.webhook.reviews import AdmissionReviewRequest, review_json

MAX_BODY_BYTES = 7 * 1024 * 1024  # controller-runtime's limit for an AdmissionReview
# Of every body being read at once: 60 clients each sending 7 MiB minus a byte held 400 MB
# more, past the pod's limit. An API server's reviews are kilobytes: the first FREE_BODY_BYTES
# of each body do not count, so large bodies held open never crowd them out (the connection
# cap bounds those bytes: 1,000 x 64 KiB).
MAX_BODIES_BYTES = 4 * MAX_BODY_BYTES
FREE_BODY_BYTES = 64 * 1024
# Parsed, every JSON array and object is a Python object of 56+ bytes (and pydantic-core's
# own tree node before that): a 7 MiB body of "[[]],[[]],..." peaked at 470 MB. A real
# review holds far fewer: etcd's 1.5 MiB per object caps an Eip's status.used and
# managedFields at about 100,000 each, object and oldObject. Counted only in large bodies.
MAX_CONTAINERS = 500_000
COUNTED_BODY_BYTES = 1024 * 1024
BODY_SECONDS = 30.0  # the longest webhook timeout an API server allows
VALIDATE_PATH = "/validate-eip"
JSON = "application/json"
NO_VERDICT = frozenset({"unavailable", "errored", MALFORMED})  # outcomes answered as failed calls
CLOSE = {"connection": "close"}


@dataclass
class Drain:
    """Set by a server that is stopping (``app.webhook.server.Server``): /readyz answers 503
    so the Endpoints drop this replica, while reviews are still answered, each on a
    connection then closed."""

    active: bool = False


COMPACT = (",", ":")  # as the API server writes JSON, and as the README shows our answers

log = logging.getLogger(DECISIONS)
log_decision = line_emitter(log)


class _TooLarge(Exception):
    pass


# A uid, name or user in the decision line (Kubernetes' are shorter): any client reaching the
# port could send a 7 MiB uid, and lines that long rotate the real ones (overrides audited)
# out of the kubelet's files.
LOGGED_LENGTH = 256


def _problem(code: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    # No "Connection: close" on 413: closing with the client's body unread makes the kernel
    # reset the connection, which can destroy the answer before the client reads it. uvicorn
    # discards the rest of the body instead and keeps the connection.
    body = json.dumps({"code": code, "reason": reason}, separators=COMPACT).encode()
    return Response(body, status_code=code, media_type=JSON, headers=headers)


class _Deadlines:
    """Body reads in flight and when each must end, checked by one sweeping task per event
    loop while any read is in flight. The API server sends a whole review at once and waits
    30 s at most: a body that takes longer is a client holding a connection (and its
    buffers) open. A timer per request (``asyncio.timeout``) cost 9 µs of a review's 50."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self._reading[task] = loop.time() + self.seconds
        sweeper = self._sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep(loop))
        return task

    def end(self, task: asyncio.Task[Any]) -> bool:
        """Whether the deadline cut this read (its cancellation is then taken back)."""
        self._reading.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._reading:
            await asyncio.sleep(min(1.0, self.seconds))
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if deadline <= now:
                    del self._reading[task]
                    self._expired.add(task)
                    task.cancel()  # raised where the read waits: see _read_limited


class _Busy(Exception):
    """The bodies being read together would pass MAX_BODIES_BYTES."""


class _Budget:
    """The bytes of every body being read, against one limit (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0


async def _read_limited(
    request: Request, limit: int, deadlines: _Deadlines, budget: _Budget
) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    counted = 0  # the bytes of this body past FREE_BODY_BYTES, held in the budget
    task = deadlines.begin()
    try:
        async for chunk in request.stream():
            more = max(0, len(body) + len(chunk) - FREE_BODY_BYTES) - counted
            if more and budget.used + more > budget.limit:
                raise _Busy
            budget.used += more
            counted += more
            body += chunk
            if len(body) > limit:
                raise _TooLarge
    except asyncio.CancelledError:
        if deadlines.end(task):
            raise TimeoutError from None
        raise
    finally:
        deadlines.end(task)
        budget.used -= counted
    return bytes(body)


# Longest first: UTF-32 LE's mark begins with UTF-16 LE's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF8, "UTF-8"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _not_plain_utf8(body: bytes) -> str:
    """What a body starts with that is no UTF-8 JSON ("" if nothing): a file saved by an
    editor or a shell (Notepad's mark, PowerShell 5's UTF-16), which the parser reports
    only as "expected value at line 1 column 1"."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if body.startswith(mark):
            return f"a {encoding} byte order mark ({mark.hex(' ').upper()})"
    if b"\x00" in body[:4]:  # JSON has no raw NUL: a wider encoding (RFC 4627 3)
        return "no byte order mark but NUL bytes: UTF-16 or UTF-32"
    return ""


def _not_a_review(exc: ValidationError, body: bytes) -> str:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        if not body.strip(b" \t\r\n"):  # JSON's whitespace: "EOF while parsing" hid it
            what = "empty" if not body else "only whitespace"
            return f"the body is {what}: expected an AdmissionReview, as the API server sends"
        if start := _not_plain_utf8(body):
            return (
                f"the body is not JSON: it starts with {start}; the API server sends UTF-8 "
                "JSON: save it as UTF-8 without a byte order mark"
            )
        return f"the body is not JSON: {first['msg']}"
    where = ".".join(str(p) for p in first["loc"]) or "(body)"
    return (
        "the body is not an admission.k8s.io/v1 (or v1beta1) AdmissionReview with a request: "
        f"{where}: {first['msg']}"
    )


def create_app(
    source: InventorySource,
    policy: Policy,
    *,
    metrics: Metrics | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_seconds: float = BODY_SECONDS,
    max_bodies_bytes: int = MAX_BODIES_BYTES,
) -> FastAPI:
    metrics = metrics if metrics is not None else Metrics()
    deadlines = _Deadlines(body_seconds)
    budget = _Budget(max_bodies_bytes)
    app = FastAPI(
        title="eip-guard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Our own Prometheus metrics and JSON logs cover this; FastAPI's OpenTelemetry hook
        # would otherwise look up global providers on every request of the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.metrics = metrics
    drain = app.state.drain = Drain()

    def refuse(code: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
        """A request refused: draining, its connection is closed too (as a review's is), so
        its client reconnects, to a replica that stays. Not for a 413 (see _problem)."""
        if drain.active:
            headers = {**headers, **CLOSE} if headers else CLOSE
        return _problem(code, reason, headers)

    async def http_problem(_: Request, exc: Exception) -> Response:
        """Starlette's own answers (404, 405 with its Allow header) in our {code, reason}
        form."""
        assert isinstance(exc, StarletteHTTPException)
        return refuse(exc.status_code, str(exc.detail), exc.headers)

    app.add_exception_handler(StarletteHTTPException, http_problem)
    # /validate-eip/ is not /validate-eip: a redirect built from the Host header would send
    # the API server elsewhere (and it does not follow redirects for a POST anyway).
    app.router.redirect_slashes = False

    def record(review: AdmissionReviewRequest, decision: Decision, started: float) -> None:
        elapsed = time.perf_counter() - started
        req = review.request
        fields: dict[str, Any] = {
            "uid": shown(req.uid, LOGGED_LENGTH),
            "name": shown(decision.name, LOGGED_LENGTH),
            "operation": req.operation,
            "verdict": decision.outcome,
            "user": shown(req.userInfo.username, LOGGED_LENGTH) if req.userInfo else "",
            "dry_run": bool(req.dryRun),
            "ms": round(elapsed * 1000, 3),
        }
        denied: list[str] = []
        warned: list[str] = []
        if decision.verdict is not None:
            denied = fields["denied_by"] = [v.rule for v in decision.verdict.denied_by]
            warned = fields["warned_by"] = [v.rule for v in decision.verdict.warned_by]
        metrics.decisions.record(req.operation, decision.outcome, elapsed, denied, warned)
        fields.update(decision.log)
        level = logging.WARNING if decision.log.get("overridden") else logging.INFO
        log_decision(level, "admission decision", fields)

    async def validate(request: Request) -> Response:
        extensions = request.scope.get("extensions")
        if extensions is not None and UPGRADE in extensions:
            # Its body was never read (see connections.UPGRADE): "the body is empty" would
            # be false. Closed, as any bytes of that body still to come are no request.
            metrics.rejected.labels("400").inc()
            upgrade = shown(request.headers.get("upgrade", ""), 64)
            reason = (
                f"an Upgrade request ({upgrade!r}) is not supported: its body is not read; "
                "send the AdmissionReview without Upgrade and Connection: upgrade, as the API "
                "server does"
            )
            return _problem(400, reason, CLOSE)
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != JSON:
            metrics.rejected.labels("400").inc()
            return refuse(400, f"Content-Type must be {JSON}, got {content_type!r}")
        encoding = request.headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            # Read as JSON, a compressed body would be "not JSON", which hides the cause.
            metrics.rejected.labels("400").inc()
            reason = (
                f"Content-Encoding {encoding!r} is not supported: send the AdmissionReview "
                "uncompressed, as the API server does"
            )
            return refuse(400, reason)
        transfer = request.headers.get("transfer-encoding")
        if transfer is not None and transfer.strip().lower() != "chunked":
            # httptools reads the chunks and ignores any coding under them (gzip): the body
            # would be "not JSON". RFC 9112 6.1: 501 for a transfer coding not understood.
            metrics.rejected.labels("501").inc()
            reason = (
                f"Transfer-Encoding {transfer!r} is not supported: send the AdmissionReview "
                "as is or chunked, as the API server does"
            )
            return refuse(501, reason)
        try:
            body = await _read_limited(request, max_body_bytes, deadlines, budget)
        except _TooLarge:
            metrics.rejected.labels("413").inc()
            return _problem(413, f"the body exceeds {max_body_bytes} bytes")
        except _Busy:
            # A failed call (failurePolicy decides), and the connection closed: its client's
            # unread body must not be held either.
            metrics.rejected.labels("503").inc()
            reason = (
                f"the bodies being received together exceed {max_bodies_bytes} bytes; "
                "retry (an API server's reviews are kilobytes: a client is sending many large "
                "bodies at once)"
            )
            return _problem(503, reason, CLOSE)
        except TimeoutError:
            metrics.rejected.labels("408").inc()
            reason = f"the body did not arrive within {body_seconds:g} s"
            return _problem(408, reason, {"connection": "close"})
        except ClientDisconnect:
            return refuse(400, "the client went away while sending the body")
        if len(body) > COUNTED_BODY_BYTES and body.count(b"[") + body.count(b"{") > MAX_CONTAINERS:
            metrics.rejected.labels("400").inc()
            reason = (
                f"the body holds more than {MAX_CONTAINERS} JSON arrays and objects "
                "(brackets and braces, counted before parsing); an AdmissionReview holds fewer"
            )
            return refuse(400, reason)
        started = time.perf_counter()  # judging starts here: a slow upload is the client's
        try:
            review = AdmissionReviewRequest.model_validate_json(body)
            if b"NaN" in body or b"Infinity" in body:  # pydantic's parser takes these; JSON
                from_json(body, allow_inf_nan=False)  # (RFC 8259, Go) does not: raises
        except ValidationError as exc:
            metrics.rejected.labels("400").inc()
            return refuse(400, _not_a_review(exc, body))
        except ValueError as exc:
            metrics.rejected.labels("400").inc()
            return refuse(400, f"the body is not JSON: {exc}")
        try:
            decision = decide(review.request, source, policy)
        except Exception as exc:
            # A bug of ours: logged with its traceback, and answered below in words.
            log.exception("failed to judge %s", review.request.uid)
            message = f"eip-guard failed to check this request: {type(exc).__name__}: {exc}"
            response = responses.errored(review.request.uid, responses.CODE_ERROR, message)
            decision = Decision(response, "errored", review.request.name)
        if decision.outcome == MALFORMED:
            metrics.rejected.labels("400").inc()
        else:
            record(review, decision, started)
        if decision.outcome in NO_VERDICT:
            # Not ready, or failed: a failed call, not a denial. The API server applies
            # failurePolicy only to failed calls (a response with allowed false is a
            # rejection whatever its code), so Ignore admits and Fail refuses with our text.
            status = decision.response["status"]
            return Response(
                responses.failure_json(status),
                status_code=status["code"],
                media_type=JSON,
                headers=CLOSE if drain.active else None,
            )
        body = review_json(review.apiVersion, decision.response)
        return Response(body, media_type=JSON, headers=CLOSE if drain.active else None)

    async def healthz(_: Request) -> Response:
        return Response(b'{"ok":true}', media_type=JSON)

    def readiness_now() -> Readiness:
        if drain.active:
            return Readiness(False, "shutting down")
        try:
            return source.readiness()
        except Exception as exc:  # a broken source is not ready, never a 500
            log.exception("readiness check failed")
            return Readiness(False, f"readiness check failed: {type(exc).__name__}: {exc}")

    metrics.ready.set_function(lambda: float(readiness_now().ready))

    async def readyz(_: Request) -> Response:
        readiness = readiness_now()
        if readiness.ready:
            return Response(b'{"ready":true}', media_type=JSON)
        body = json.dumps({"ready": False, "reason": readiness.reason}, separators=COMPACT).encode()
        return Response(body, status_code=503, media_type=JSON)

    async def prometheus(_: Request) -> Response:
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)

    # Plain Starlette routes: these endpoints take the raw Request, so FastAPI's dependency
    # solving (a third of a trivial request's cost) would buy nothing on the hot path.
    app.add_route(VALIDATE_PATH, validate, methods=["POST"])
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/readyz", readyz, methods=["GET"])
    app.add_route("/metrics", prometheus, methods=["GET"])
    return app
