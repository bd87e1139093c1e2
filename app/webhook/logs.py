"""Structured logs: one JSON object per line, written off the event loop.

Handlers log with ``logger.info(msg, extra={"fields": {...}})``; :class:`JsonFormatter`
merges ``fields`` into the line. :func:`setup` routes every record through a queue to a
thread that writes stderr, so a slow terminal or log pipe never stalls a request.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import queue
import sys
from typing import Any, TextIO

DECISIONS = "eip_guard.webhook"  # the logger of one line per admission decision


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting happens there too.

    (The stock QueueHandler formats in the caller's thread, for processes; between threads
    the record itself can travel, and the event loop is spared the JSON encoding.)
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def setup(
    level: int = logging.INFO,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> logging.handlers.QueueListener:
    """JSON lines on ``stream`` (stderr) for ``logger`` (the root: the whole process).

    Call ``stop()`` on the returned listener to flush before exiting.
    """
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, out, respect_handler_level=False)
    root = logger if logger is not None else logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Handoff(records))
    root.setLevel(level)
    listener.start()
    return listener
