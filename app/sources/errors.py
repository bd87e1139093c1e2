"""The one error of bad input from the admin, in a module of its own: the command line
catches it before it has loaded the readers (pydantic, yaml) that raise it most."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the admin: the message is what to print."""
