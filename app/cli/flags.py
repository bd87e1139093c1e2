"""Checks of command-line values that argparse's types let through, shared by the commands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from app.kube.settings import url_problem
from app.sources.errors import InputError
from app.sources.manifest import DNS_SUBDOMAIN, dns_label, dns_subdomain


def path(value: str) -> Path:
    """A path flag's type. ``Path("")`` is ``.``: an unset variable in ``--cluster "$SNAP"``
    would read the whole working directory as the cluster (or write certificates there)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return Path(value)


class OptionalFile(argparse.Action):
    """``--kubeconfig [FILE]``: alone, the default file ($KUBECONFIG or ~/.kube/config, as
    kubectl; the value is ""); with FILE, that file, which may not be empty: an unset variable
    in ``--kubeconfig "$KC"`` would silently read ~/.kube/config, maybe another cluster."""

    ALONE = object()  # not a str: argparse would pass a str const through ``type``

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs="?", const=self.ALONE)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values is self.ALONE:
            values = ""
        elif not str(values).strip():
            raise argparse.ArgumentError(
                self,
                "an empty path (an unset shell variable?); give the file, or the flag alone "
                "for $KUBECONFIG or ~/.kube/config",
            )
        setattr(namespace, self.dest, values)


def listen_host(value: str) -> str:
    """``serve --host``: "" (an unset variable in ``--host "$HOST"``) reached getaddrinfo
    and said "cannot listen on :0: Name or service not known", naming no flag."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "an empty address (an unset shell variable?); give an IP address or host name, "
            "e.g. 0.0.0.0 for every IPv4 address"
        )
    return value


def non_empty(value: str) -> str:
    """A file flag's type where the value stays a str (``--kubeconfig`` of the agent)."""
    path(value)
    return value


def object_ref(flag: str, value: str) -> tuple[str, str]:
    """``NS/NAME`` of a namespaced object, checked as the API server checks them (the
    namespace a DNS-1123 label, the name a DNS-1123 subdomain), so a typo is said here,
    not read as "no such ConfigMap"."""
    ns, sep, name = value.partition("/")
    shown = repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
    if not sep or not ns or not name:
        raise InputError(f"{flag} {shown}: expected NS/NAME, e.g. kube-system/kubevip")
    if not dns_label(ns):
        raise InputError(
            f"{flag} {shown}: the namespace must be a DNS-1123 label (at most 63 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit)"
        )
    if not dns_subdomain(name):
        raise InputError(f"{flag} {shown}: the name must be {DNS_SUBDOMAIN}")
    return ns, name


MAX_SECONDS = 86_400  # a day: every interval here is far shorter; waits past ~9e9 s overflow


def seconds(flag: str, value: float, *, zero: bool = False, least: float = 0.0) -> float:
    """``value`` when it is a number of seconds above 0 (or 0, with ``zero``; at least
    ``least``, when given) and at most a day; else an InputError. ``float`` reads 'nan' and
    'inf': nan passes every comparison, and a wait of nan seconds returns at once, a loop
    that never waits; a wait of inf, or of 1e10 (past what the platform's timers take),
    raises or never ends."""
    if (
        math.isfinite(value)
        and (value > 0 or (zero and value == 0))
        and value >= least
        and value <= MAX_SECONDS
    ):
        return value
    lowest = f"at least {least:g}" if least else "0 or more" if zero else "above 0"
    raise InputError(
        f"{flag} {value}: expected a finite number of seconds, {lowest}, at most {MAX_SECONDS}"
    )


def server_url(flag: str, value: str) -> str:
    """An API server URL (``--server``): ``value`` without its trailing '/' (the client
    appends "/api/..." as is, and "//api" is no API path); else an InputError naming
    ``flag``."""
    problem = url_problem(value)
    if problem:
        shown = repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
        raise InputError(f"{flag} {shown}: {problem}")
    return value.rstrip("/")
