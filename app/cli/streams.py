"""The standard streams as the command line needs them, whatever the process was given: closed
streams, a stdout that fails, an encoding that cannot spell a name."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class OutputError(Exception):
    """stdout refused the command's output (a full disk under ``> out.json``, a device
    error); the text is the reason. Python's OSError for a failed write names no file, so
    without this the message could not say that stdout is what failed."""


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise  # the reader went away (`| head`): the command line exits 141, quietly
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc)) from exc


def output(text: str) -> None:
    """A line of the command's output, on stdout; a write that fails raises OutputError."""
    with _stdout_errors():
        print(text)


def flush_output() -> None:
    """What stdout still buffers, written; a write that fails raises OutputError."""
    with _stdout_errors():
        sys.stdout.flush()


def prepare() -> None:
    """Before anything is written: closed streams stood in for, any text made writable."""
    for name in ("stdout", "stderr"):
        # Python makes a stream that was closed at start (``>&-``, ``2>&-``) None, and
        # ``print(file=None)`` then writes to stdout: stderr's notes would land in the middle
        # of ``-o json``. What goes to a closed stream goes nowhere instead.
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
        # An Eip named eip-ü, printed where stdout is ASCII (PYTHONIOENCODING=ascii, LANG=C
        # on an old Python, a Windows console) raised UnicodeEncodeError in the middle of a
        # verdict. What the encoding cannot spell is written as \xfc instead; -o json is
        # ASCII already (json.dumps escapes), so it stays valid JSON.
        reconfigure = getattr(getattr(sys, name), "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError, TypeError):
                reconfigure(errors="backslashreplace")


def say(line: str) -> None:
    """A line on stderr, if stderr takes it: when it is what failed (``2>/dev/full``), the
    exit code alone has to tell."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def drop_stdout() -> None:
    """stdout to /dev/null, so that the flush at exit cannot fail a second time."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture): nothing is flushed at exit
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
