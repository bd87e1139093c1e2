"""Structured logs: one JSON object per line, written off the event loop.

Handlers log with ``logger.info(msg, extra={"fields": {...}})``; :class:`JsonFormatter`
merges ``fields`` into the line. :func:`setup` routes every record through a queue to a
thread that writes stderr, so a slow terminal or log pipe never stalls a request.

The writer wakes at most every ``BATCH_SECONDS`` and writes what has gathered in one write:
waking per record made the two threads trade the GIL once per admission review, which cost
the server more than the decision itself (README, Performance).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, TextIO

DECISIONS = "eip_guard.webhook"  # the logger of one line per admission decision
BATCH_SECONDS = 0.05  # how long a line may wait for company before it is written


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


_UNFORMATTABLE = json.dumps({"level": "error", "msg": "a log record could not be formatted"}) + "\n"


class Writer:
    """The thread that formats queued records and writes them in batches."""

    _STOP = None

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None], out: TextIO) -> None:
        self._records, self._out = records, out
        self._format = JsonFormatter().format
        self._thread = threading.Thread(target=self._run, name="eip-guard-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued so far, then end the thread."""
        self._records.put(self._STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._records.get()]
            if batch[0] is not self._STOP:
                time.sleep(BATCH_SECONDS)
            while True:
                try:
                    batch.append(self._records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for record in batch:
                if record is self._STOP:
                    stopping = True
                    continue
                try:
                    lines.append(self._format(record) + "\n")
                except Exception:  # a record that cannot be formatted must not end logging
                    lines.append(_UNFORMATTABLE)
            if lines:
                try:
                    self._out.write("".join(lines))
                    self._out.flush()
                except (OSError, ValueError):  # a closed or broken log pipe: drop, keep serving
                    pass


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
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    listener = Writer(records, stream if stream is not None else sys.stderr)
    root = logger if logger is not None else logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Handoff(records))
    root.setLevel(level)
    listener.start()
    return listener
