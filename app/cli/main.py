"""`eip-guard`: the command line. Each subcommand lives in a module of its own.

A ``*_cmd`` module holds a subcommand's flags and is light to import; what the subcommand
runs is imported only when it runs (:mod:`app.cli.lazy`).

Exit codes: 0 allowed / clean, 1 denied / violations found, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from app import __version__
from app.cli import agent_cmd, certs_cmd, check_cmd, serve_cmd
from app.cli.streams import OutputError, drop_stdout, flush_output, output, prepare, say
from app.sources.errors import InputError, shown

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE

DESCRIPTION = (
    "Guards OpenELB Eips against the can_reach trap (openelb#331): checks a manifest, audits a "
    "cluster, shows the NIC a node picks, serves the validating webhook, runs the node agent."
)
EPILOG = (
    "Exit codes: 0 allowed, 1 denied (audit: some Eip violates a rule; resolve: no NIC), 2 "
    "bad input or usage, 141 the reader of the output went away. 'eip-guard COMMAND --help' "
    "for each."
)

# argparse's messages for required flags (and a required one of a group) left out.
_MISSING = ("the following arguments are required", "one of the arguments")

COMMANDS: tuple[ModuleType, ...] = (check_cmd, serve_cmd, certs_cmd, agent_cmd)


class _Parser(argparse.ArgumentParser):
    """Every parser of the command line, each subcommand's too (``parser_class``).

    No abbreviations: ``--clu`` silently meant ``--cluster``, and a new flag sharing the
    prefix would change what an old script's abbreviation means, or make it an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self._given: list[str] = []

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)  # for error() below
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse checks required flags before it complains of unknown ones, so `--clu x`
        # or `--file x` said only that --cluster or -f/--filename is required.
        unknown = self._unknown() if message.startswith(_MISSING) else []
        if unknown:
            message = f"unrecognized arguments: {' '.join(unknown)}"
            meant = [o for o in self._option_string_actions for u in unknown if o.startswith(u)]
            if meant:
                message += f" (flags are written in full: {', '.join(sorted(meant))})"
        self.exit(EXIT_USAGE, f"eip-guard: {message}\n")

    def _unknown(self) -> list[str]:
        """The flags given to this parser that it does not know, up to a ``--``."""
        given = self._given[: self._given.index("--")] if "--" in self._given else self._given
        return [
            flag
            for flag in (a.split("=", 1)[0] for a in given)
            if flag.startswith("-")
            and flag != "-"
            and flag not in self._option_string_actions
            and not self._negative_number_matcher.match(flag)
        ]

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """argparse's, less its silence: it drops a write that fails, so ``--help`` or
        ``--version`` into a full disk (unbuffered, as PYTHONUNBUFFERED=1 images run) exited
        0 with nothing written. stdout failing exits as any command's output does."""
        if not message:
            return
        if file is not sys.stdout:  # usage and errors: stderr, which may be what failed
            say(message.rstrip("\n"))
            return
        try:
            output(message.rstrip("\n"))
            flush_output()
        except BrokenPipeError:
            drop_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except OutputError as exc:
            drop_stdout()
            say(f"eip-guard: cannot write to standard output: {exc}")
            sys.exit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="eip-guard", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"eip-guard {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    prepare()
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        code = run(args)
        flush_output()  # here, where a failing write is caught, not at exit
        return code
    except InputError as exc:
        # One line, whatever the parser below said (YAML errors span several lines).
        one_line = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        say(f"eip-guard: {one_line}")
        return EXIT_USAGE
    except OutputError as exc:
        # `> out.json` on a full disk: Python's error for a write names no file.
        drop_stdout()
        say(f"eip-guard: cannot write to standard output: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`eip-guard audit | head`): stop quietly, as a tool killed by
        # SIGPIPE does.
        drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # What the machine refused (a full disk under `> out.json`, a device error): the
        # input errors are InputError above, so this is the environment, said in one line.
        drop_stdout()
        say(f"eip-guard: {_os_error(exc)}")
        return EXIT_USAGE


def _os_error(exc: OSError) -> str:
    """``exc`` in one line: the file named once (Python's text repeats it, quoted, and a
    5,000-character name whole), then the reason."""
    if exc.filename is None or not exc.strerror:
        return str(exc)
    return f"{shown(exc.filename)}: {exc.strerror}"


if __name__ == "__main__":
    sys.exit(main())
