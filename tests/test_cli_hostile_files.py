"""Hostile files given to `check` and `audit` (README "Check an Eip before you apply it"):
alias bombs, deep nesting, bytes that are no UTF-8, huge scalars, many documents, a
directory, a FIFO, stdin. Each run exits 0, 1 or 2 within seconds, and 2 says one line on
stderr, never a traceback: property-tested in-process, a sample in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, ROOT
from tests.support import run_cli

Capsys = pytest.CaptureFixture[str]
CLI = [sys.executable, "-m", "app.cli.main"]
CLUSTER = str(EXAMPLES / "cluster.yaml")
GOOD = (EXAMPLES / "eip-good.yaml").read_text()
SECONDS = 10.0  # far above any run here (0.2 s): only an expansion or a hang comes near


def alias_bomb(levels: int, width: int = 9) -> str:
    """Billion laughs: ``width ** levels`` strings if the aliases were expanded."""
    lines = [f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels + 1)]
    eip = GOOD.rstrip("\n")
    # In the annotations (read by the rules) and in spec (walked by the schema check).
    return eip.replace("metadata:\n", "metadata:\n  labels:\n" + "\n".join(
        "  " + line for line in lines) + "\n", 1) + f"\n  extra: *l{levels}\n"  # fmt: skip


def nested(depth: int, flow: bool) -> str:
    """``depth`` levels: flow style ``[[[...]]]``, or block style, whose indentation grows
    as depth squared (capped at 3,000: 9 MB)."""
    if flow:
        return "[" * depth + "]" * depth
    depth = min(depth, 3_000)
    return "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "x\n"


_FRAGMENTS = st.one_of(
    st.just(GOOD),
    st.builds(alias_bomb, st.integers(1, 12)),
    st.builds(nested, st.sampled_from([10, 500, 5_000, 100_000]), st.booleans()),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),  # bytes past 0x7f, NULs
    st.integers(1, 3_000_000).map(lambda n: f"kind: Eip\nmetadata:\n  name: {'a' * n}\n"),
    st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), max_size=4).map(
        yaml.safe_dump_all
    ),
    st.sampled_from(
        ["---\n", "...\n", "--- !!python/object:os.system\n", "&a [*a]\n", "%YAML 1.1\n"]
    ),
)


def _bytes(parts: list[str], separator: str, broken: bool) -> bytes:
    data = separator.join(parts).encode("utf-8", "surrogateescape")
    return data + b"\xff\xfe" if broken else data


def _assert_documented(code: int, out: str, err: str, what: object) -> None:
    assert code in (0, 1, 2), (what, err[-2000:])
    assert "Traceback" not in err, (what, err[-2000:])
    if code == 2:  # one line, and nothing on stdout
        assert out == "" and err.startswith("eip-guard: ") and err.count("\n") == 1, err[:2000]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                           HealthCheck.too_slow]
)  # fmt: skip
@given(
    parts=st.lists(_FRAGMENTS, min_size=1, max_size=4),
    separator=st.sampled_from(["\n---\n", "\n", ""]),
    broken=st.booleans(),
    suffix=st.sampled_from([".yaml", ".json", ".yml"]),
)
def test_hostile_files_give_a_documented_exit_quickly(
    capsys: Capsys,
    tmp_path: Path,
    *,
    parts: list[str],
    separator: str,
    broken: bool,
    suffix: str,
) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes(_bytes(parts, separator, broken))
    for argv in (
        ["check", "-f", str(path), "--cluster", CLUSTER, "-o", "json"],
        ["audit", "--cluster", str(path), "--cluster", CLUSTER],
        ["audit", "--cluster", CLUSTER, "--policy", str(path)],
    ):
        start = time.monotonic()
        code, out, err = run_cli(capsys, *argv)  # an exception escaping main() fails here
        assert time.monotonic() - start < SECONDS, argv
        _assert_documented(code, out, err, argv)


def _run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv], cwd=ROOT, input=stdin.decode("latin-1"), capture_output=True,
        text=True, encoding="latin-1", timeout=60, check=False,
    )  # fmt: skip


HOSTILE = {
    "alias bomb": alias_bomb(12).encode(),
    "deep flow": nested(100_000, flow=True).encode(),
    "deep block": nested(3_000, flow=False).encode(),
    "binary": bytes(range(256)) * 8,
    "invalid UTF-8": GOOD.encode() + b"\n# \xc3\x28\n",
    "huge scalar": f"kind: Eip\nmetadata:\n  name: {'a' * 20_000_000}\n".encode(),
    "many documents": b"---\n".join([GOOD.encode()] * 2_000),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_in_a_subprocess(tmp_path: Path, case: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_bytes(HOSTILE[case])
    for argv, stdin in (
        (["check", "-f", str(path), "--cluster", CLUSTER], b""),
        (["audit", "--cluster", str(path), "-o", "json"], b""),
        (["check", "-f", "-", "--cluster", CLUSTER], HOSTILE[case]),
        (["audit", "--cluster", "-"], HOSTILE[case]),
    ):
        start = time.monotonic()
        done = _run(argv, stdin)
        assert time.monotonic() - start < 30, (case, argv)  # a start-up, not an expansion
        _assert_documented(done.returncode, done.stdout, done.stderr, (case, argv))


def test_a_directory_and_a_fifo_as_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    done = _run(["check", "-f", str(folder), "--cluster", CLUSTER])
    assert (done.returncode, done.stderr) == (
        2,
        f"eip-guard: {folder}: a directory; give one file\n",
    )
    done = _run(["audit", "--cluster", str(folder)])
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    # A FIFO (what `<(kubectl get ...)` gives) is read once, as it is written.
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as sink:
            sink.write(GOOD)

    for argv in (
        ["check", "-f", str(fifo), "--cluster", CLUSTER],
        ["audit", "--cluster", str(fifo)],
    ):
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        done = _run(argv)
        writer.join(timeout=30)
        assert done.returncode in (0, 1), (argv, done.stderr)
        assert "Traceback" not in done.stderr
