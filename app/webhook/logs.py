"""Structured logs: one JSON object per line, written off the event loop.

Handlers log with ``logger.info(msg, extra={"fields": {...}})``; :class:`JsonFormatter`
merges ``fields`` into the line. :func:`setup` formats each record where it is logged and
hands the line through a queue to a thread that writes stderr, so a slow terminal or log
pipe never stalls a request.

The writer wakes at most every ``BATCH_SECONDS`` and writes what has gathered in one write:
waking per record made the two threads trade the GIL once per admission review, which cost
the server more than the decision itself. It only writes (which releases the GIL): when it
also formatted, it held the GIL for a whole batch (a millisecond and more at 1,500 reviews
a second) and the reviews arriving meanwhile waited: p99 rose to 5 times the floor's.

At most ``MAX_QUEUED_LINES`` wait for a stream that does not keep up; newer lines are
dropped and a ``warning`` line says how many once it moves again.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO, cast

import pydantic_core

DECISIONS = "eip_guard.webhook"  # the logger of one line per admission decision
BATCH_SECONDS = 0.05  # how long a line may wait for company before it is written
# Lines waiting for the writer, at most: a log stream that stops taking them (a stuck log
# collector, a full disk) grew the queue by a line per review, without end. Past this, new
# lines are dropped and counted, and the writer says how many once the stream moves again.
MAX_QUEUED_LINES = 20_000
# How long stopping waits for the lines queued to be written: a log stream that takes none
# held the process at exit forever (the writer is a daemon thread: it ends with it).
STOP_SECONDS = 5.0


class JsonFormatter(logging.Formatter):
    # One line per admission review, so it is made cheaply: the second's text once per
    # second, the milliseconds from a table, and the JSON by pydantic-core (a sixth of
    # json.dumps's time; values it does not know become their str(), NaN and infinities
    # null).
    _second: tuple[int, str] = (-1, "")  # one attribute, so threads never see half of it
    _MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))

    def _timestamp(self, created: float) -> str:
        """UTC, ISO 8601 with milliseconds (``2026-01-01T00:00:00.123+00:00``)."""
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return text + self._MILLIS[int((created - second) * 1000)]

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            fields=fields if isinstance(fields, dict) else None,
            error=self.formatException(record.exc_info) if record.exc_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        msg: str,
        *,
        fields: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level,
            "logger": logger,
            "msg": msg,
        }
        if fields:
            line.update(fields)
        if error is not None:
            line["error"] = error
        return pydantic_core.to_json(line, fallback=str).decode()


_UNFORMATTABLE = json.dumps({"level": "error", "msg": "a log record could not be formatted"})


class _Lines:
    """The finished lines on their way to the writer: at most ``limit`` wait, the rest are
    dropped and counted (from any logging thread: a lost count is only a count)."""

    def __init__(self, limit: int) -> None:
        self.queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.limit = limit
        self.dropped = 0

    def put(self, line: str) -> None:
        if self.queue.qsize() >= self.limit:
            self.dropped += 1
            return
        self.queue.put(line)


class _Handoff(logging.Handler):
    """Formats each record in the logging thread and queues the finished line."""

    def __init__(self, lines: _Lines) -> None:
        super().__init__()
        self._lines = lines
        self.formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted must not end logging
            line = _UNFORMATTABLE
        self.put(line)

    def put(self, line: str) -> None:
        self._lines.put(line + "\n")


def _sole_handoff(logger: logging.Logger, level: int) -> _Handoff | None:
    """The handoff that alone would receive ``logger``'s records of ``level``, if one does
    (no other handler, no filter on the way); else None."""
    found: _Handoff | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not _Handoff or handler.filters:
                return None
            if level < handler.level:
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


def line_emitter(logger: logging.Logger) -> Callable[[int, str, dict[str, Any]], None]:
    """``logger.log(level, msg, extra={"fields": fields})``, made cheaply for the line per
    admission review.

    When our handoff alone would receive the record (as ``setup`` leaves a server), the line
    is made and queued directly, the same line the handoff would make of a LogRecord: the
    record and the handler chain were a seventh of a review's cost. Otherwise (a test's
    caplog, an application's own handlers) the record goes through logging as usual.
    """
    names = {level: logging.getLevelName(level).lower() for level in _LEVELS}

    def emit(level: int, msg: str, fields: dict[str, Any]) -> None:
        if not logger.isEnabledFor(level):
            return
        handoff = _sole_handoff(logger, level)
        name = names.get(level)
        if handoff is None or name is None:
            logger.log(level, msg, extra={"fields": fields})
            return
        formatter = cast(JsonFormatter, handoff.formatter)
        try:
            line = formatter.line(time.time(), name, logger.name, msg, fields=fields)
        except Exception:  # as emit: a line that cannot be made must not end logging
            line = _UNFORMATTABLE
        handoff.put(line)

    return emit


_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


class Writer:
    """The thread that writes queued lines in batches."""

    _STOP = None

    def __init__(self, lines: _Lines, out: TextIO) -> None:
        self._lines, self._queue, self._out = lines, lines.queue, out
        self._dropped = 0  # of lines.dropped, said so far
        self._thread = threading.Thread(target=self._run, name="eip-guard-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued so far, then end the thread: within ``STOP_SECONDS``,
        after which the lines still queued are left (the stream takes none)."""
        self._queue.put(self._STOP)  # never dropped
        self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            if batch[0] is not self._STOP:
                time.sleep(BATCH_SECONDS)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = self._STOP in batch
            text = "".join(line for line in batch if line is not self._STOP)
            text += self._dropped_line()
            if text:
                try:
                    self._out.write(text)
                    self._out.flush()
                except (OSError, ValueError):  # a closed or broken log pipe: drop, keep serving
                    pass

    def _dropped_line(self) -> str:
        """A line saying how many lines were dropped since the last one said it ("": none).
        Made here, once per batch at most: the dropped lines' place in the stream."""
        dropped = self._lines.dropped - self._dropped
        if dropped <= 0:
            return ""
        self._dropped += dropped
        return (
            JsonFormatter().line(
                time.time(),
                "warning",
                __name__,
                f"{dropped} log line(s) dropped: the log stream did not keep up",
                fields={"dropped": dropped, "queued_at_most": self._lines.limit},
            )
            + "\n"
        )


def setup(
    level: int = logging.INFO,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> Writer:
    """JSON lines on ``stream`` (stderr) for ``logger`` (the root: the whole process).

    Call ``stop()`` on the returned writer to flush before exiting.
    """
    # Our lines carry none of the caller's file, line, thread or process: skip collecting
    # them (the logging HOWTO's optimisation), a third of a record's cost on the hot path.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    lines = _Lines(MAX_QUEUED_LINES)
    listener = Writer(lines, stream if stream is not None else sys.stderr)
    root = logger if logger is not None else logging.getLogger()
    if logger is None:
        # Python's warnings (urllib3's InsecureRequestWarning under insecure-skip-tls-verify)
        # become records too: printed as they are, they broke the one-JSON-line stream.
        logging.captureWarnings(True)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Handoff(lines))
    root.setLevel(level)
    listener.start()
    return listener
