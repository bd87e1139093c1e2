"""JSON log lines, written by a thread of their own."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import io
import json
import logging
import pkgutil
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

import app
from app.webhook import logs
from app.webhook.logs import JsonFormatter, line_emitter, setup
from tests.conftest import ROOT


@contextlib.contextmanager
def logging_to(out: TextIO, name: str) -> Iterator[logging.Logger]:
    """A logger of its own writing JSON lines to ``out``, flushed and detached afterwards."""
    logger = logging.getLogger(name)
    logger.propagate = False
    writer = setup(logging.INFO, out, logger)
    try:
        yield logger
    finally:
        writer.stop()  # flushes the queue
        logger.handlers.clear()


def test_records_become_json_lines_with_their_fields() -> None:
    out = io.StringIO()
    with logging_to(out, "eip_guard.test.logs") as logger:
        logger.info("admission decision", extra={"fields": {"uid": "u1", "denied_by": ["a"]}})
        logger.debug("not shown at info")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed to judge %s", "u2")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "admission decision"
    assert first["level"] == "info"
    assert first["logger"] == "eip_guard.test.logs"
    assert first["uid"] == "u1"
    assert first["denied_by"] == ["a"]
    assert first["ts"].endswith("+00:00")
    assert second["msg"] == "failed to judge u2"
    assert second["level"] == "error"
    assert "ValueError: boom" in second["error"]


class _CountingStream(io.StringIO):
    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def test_lines_are_written_in_batches_and_none_is_lost() -> None:
    # One write per batch, not per record: the writer thread wakes rarely (see logs.py).
    out = _CountingStream()
    with logging_to(out, "eip_guard.test.batches") as logger:
        for i in range(200):
            logger.info("decision", extra={"fields": {"n": i}})
    numbers = [json.loads(line)["n"] for line in out.getvalue().splitlines()]
    assert numbers == list(range(200))
    assert out.writes < 20


def test_a_record_that_cannot_be_formatted_does_not_stop_logging() -> None:
    out = io.StringIO()
    with logging_to(out, "eip_guard.test.broken") as logger:
        logger.info("%d apples", "not a number")  # fails only when formatted
        logger.info("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["a log record could not be formatted", "after"]


class _StuckStream(io.StringIO):
    """A log pipe nobody reads, until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, s: str) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().write(s)


def test_a_stuck_log_pipe_holds_a_bounded_backlog_and_says_what_it_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A log pipe that stops taking lines (a stuck log collector, a full disk) made every
    # review add its line to the queue, without end: memory grew with each request.
    monkeypatch.setattr(logs, "MAX_QUEUED_LINES", 100, raising=False)
    out = _StuckStream()
    with logging_to(out, "eip_guard.test.stuck") as logger:
        logger.info("first")
        assert out.entered.wait(5)  # the writer is stuck writing it
        emit = line_emitter(logger)
        for i in range(1000):
            emit(logging.INFO, "decision", {"n": i})
        out.release.set()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["msg"] == "first"
    assert [line["n"] for line in lines if line["msg"] == "decision"] == list(range(100))
    (dropped,) = [line for line in lines if "dropped" in line]
    assert dropped["level"] == "warning"
    assert dropped["dropped"] == 900
    assert dropped["msg"] == "900 log line(s) dropped: the log stream did not keep up"


class _Witness:
    """A field value that notes which thread turned it into text."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __str__(self) -> str:
        self.threads.append(threading.current_thread().name)
        return "seen"


def test_lines_are_formatted_where_they_are_logged_not_in_the_writer() -> None:
    # A writer that formats holds the GIL for a whole batch, and reviews wait (logs.py).
    out = io.StringIO()
    witness = _Witness()
    with logging_to(out, "eip_guard.test.where") as logger:
        logger.info("decision", extra={"fields": {"w": witness}})
    assert witness.threads == [threading.current_thread().name]
    assert json.loads(out.getvalue())["w"] == "seen"


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
def test_timestamps_are_utc_iso_8601_to_the_millisecond(created: float) -> None:
    record = logging.LogRecord("t", logging.INFO, "", 0, "m", None, None)
    record.created = created
    ts = json.loads(JsonFormatter().format(record))["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", ts)
    assert abs(dt.datetime.fromisoformat(ts).timestamp() - created) < 0.001


def _without_ts(line: str) -> dict[str, object]:
    parsed = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", parsed.pop("ts"))
    return dict(parsed)


def test_the_direct_line_is_the_line_of_a_record() -> None:
    out = io.StringIO()
    fields = {"uid": "u1", "denied_by": ["a"], "ms": 0.5, "odd": object()}
    with logging_to(out, "eip_guard.test.direct") as logger:
        emit = line_emitter(logger)
        logger.warning("decision", extra={"fields": fields})
        emit(logging.WARNING, "decision", fields)
        emit(logging.DEBUG, "below the level: no line", fields)
        logger.setLevel(logging.ERROR)
        emit(logging.WARNING, "now below the level too", fields)
    by_record, direct = out.getvalue().splitlines()
    assert _without_ts(direct) == _without_ts(by_record)
    assert _without_ts(direct)["level"] == "warning"


def test_the_direct_line_is_made_by_the_caller() -> None:
    out = io.StringIO()
    witness = _Witness()
    with logging_to(out, "eip_guard.test.direct_where") as logger:
        line_emitter(logger)(logging.INFO, "decision", {"w": witness})
    assert witness.threads == [threading.current_thread().name]


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_other_handlers_and_filters_still_get_records() -> None:
    # A test's caplog or an application's handler sees the record as logger.log made it.
    out = io.StringIO()
    with logging_to(out, "eip_guard.test.shared") as logger:
        emit = line_emitter(logger)
        keep = _Keep()
        logger.addHandler(keep)
        emit(logging.INFO, "decision", {"uid": "u1"})
        logger.removeHandler(keep)
        logger.addFilter(lambda record: getattr(record, "fields", {}).get("uid") != "hidden")
        emit(logging.INFO, "decision", {"uid": "hidden"})
        emit(logging.INFO, "decision", {"uid": "u2"})
    assert [r.fields for r in keep.records] == [{"uid": "u1"}]  # type: ignore[attr-defined]
    assert [json.loads(line)["uid"] for line in out.getvalue().splitlines()] == ["u1", "u2"]


def test_python_warnings_become_json_lines_in_the_process() -> None:
    # urllib3 warns on every request under insecure-skip-tls-verify; printed by Python's
    # own warnings module, those were plain text lines among the JSON.
    code = (
        "import logging, warnings\n"
        "from app.webhook import logs\n"
        "writer = logs.setup(logging.INFO)\n"
        "warnings.warn('Unverified HTTPS request is being made', UserWarning)\n"
        "writer.stop()\n"
    )
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) == 1
    assert lines[0]["logger"] == "py.warnings" and lines[0]["level"] == "warning"
    assert "UserWarning: Unverified HTTPS request is being made" in lines[0]["msg"]


def test_stopping_does_not_wait_forever_for_a_stuck_log_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # serve flushes its log as it exits (SIGTERM): with a log pipe nobody reads, it waited
    # forever, and the pod ran to the end of its grace period to be killed.
    monkeypatch.setattr(logs, "STOP_SECONDS", 0.5, raising=False)
    out = _StuckStream()
    logger = logging.getLogger("eip_guard.test.stop")
    logger.propagate = False
    writer = setup(logging.INFO, out, logger)
    try:
        logger.info("stuck")
        assert out.entered.wait(5)  # the writer is stuck writing it
        stopping = threading.Thread(target=writer.stop, daemon=True)
        started = time.monotonic()
        stopping.start()
        stopping.join(5)
        assert not stopping.is_alive()
        assert time.monotonic() - started < 3
    finally:
        out.release.set()
        logger.handlers.clear()


def test_every_logger_of_ours_is_named_under_eip_guard() -> None:
    """A log pipeline selects our lines by the logger (README "Logs"): a module logging under
    its import path (``app.webhook.connections``) fell outside ``eip_guard.*``."""
    ours: dict[str, str] = {}
    for info in pkgutil.walk_packages(app.__path__, "app."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, logging.Logger):
                ours[info.name] = value.name
    assert ours, "no module-level logger found: the walk is broken"
    assert {m: n for m, n in ours.items() if not n.startswith("eip_guard.")} == {}
