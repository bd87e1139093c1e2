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


def setup(
    level: int = logging.INFO, stream: TextIO | None = None
) -> logging.handlers.QueueListener:
    """JSON lines on ``stream`` (stderr) for the whole process; stop() the listener to flush."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(logging.Formatter("%(message)s"))  # already a JSON line
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, out, respect_handler_level=False)
    # The QueueHandler formats in the caller's thread (records carry no live objects across);
    # the listener's thread only writes.
    to_queue = logging.handlers.QueueHandler(records)
    to_queue.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(to_queue)
    root.setLevel(level)
    listener.start()
    return listener
