"""The one error of bad input from the admin, in a module of its own: the command line
catches it before it has loaded the readers (pydantic, yaml) that raise it most."""

from __future__ import annotations

import os

SHOWN_PATH = 120  # characters of a path a message shows whole


class InputError(Exception):
    """Bad input from the admin: the message is what to print."""


def shown(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A path as a message names it: ``-`` is stdin, and a long one (a 5,000-character name
    the kernel refused) is cut in the middle, its length said, so the reason stays in sight."""
    text = os.fsdecode(path)
    if text == "-":
        return "- (stdin)"
    if len(text) <= SHOWN_PATH:
        return text
    half = SHOWN_PATH // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"
