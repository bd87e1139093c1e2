"""Small helpers shared by test modules: run the CLI in-process, poll until something holds,
read the JSON log lines of an ``eip-guard serve`` process, and see whether the cyclic GC
was paused while a module was imported."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.cli.main import main

DEADLINE = 15.0  # generous: eventual consistency on a loaded 2-core CI machine


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``eip-guard ARGV`` through main(): exit code, stdout, stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def eventually(predicate: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail with ``what`` when the deadline
    passes (the deadline only bounds a hung test, it is no speed claim)."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline}s: {what}")
        time.sleep(0.05)


class LogLines:
    """The JSON log lines of a process's stderr, read by a thread (select and buffered reads
    mix badly). The thread ends at EOF: join ``thread`` before closing the pipe."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        assert proc.stderr is not None
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                self.queue.put(line)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 60, waiting_for: str = "anything") -> dict[str, Any]:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"eip-guard serve never logged {waiting_for}") from None
        parsed = json.loads(line)
        assert isinstance(parsed, dict)
        return parsed

    def until(self, msg: str) -> dict[str, Any]:
        """The next line whose ``msg`` is ``msg`` (lines before it are skipped)."""
        line = self.next(waiting_for=repr(msg))
        while line.get("msg") != msg:
            line = self.next(waiting_for=repr(msg))
        return line

    def rest(self) -> list[dict[str, Any]]:
        """The lines not read yet; after :meth:`finish`, all the process logged after them."""
        lines = []
        while not self.queue.empty():
            lines.append(self.next())
        return lines

    def finish(self) -> None:
        """Kill the process if it still runs, let the reader reach EOF, close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def log_lines(proc: subprocess.Popen[str]) -> Iterator[LogLines]:
    """The process's log lines; on the way out, whatever happened, :meth:`LogLines.finish`."""
    lines = LogLines(proc)
    try:
        yield lines
    finally:
        lines.finish()


def gc_probe(module: str) -> str:
    """A script that runs the console script's entry point on its arguments and prints, last,
    whether the cyclic GC was enabled each time ``module`` was imported, whether it is
    enabled at the end, and the exit code: ``[False] True 0`` when all went as it should."""
    return f"""
import gc, importlib.abc, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            seen.append(gc.isenabled())
        return None
sys.meta_path.insert(0, Watch())
from app.cli.entry import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(seen, gc.isenabled(), code)
"""


@contextmanager
def answering(reply: bytes) -> Iterator[str]:
    """A TCP server that reads a request and answers ``reply``, then closes: its address."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
