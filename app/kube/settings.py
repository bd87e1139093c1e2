"""Live-mode settings and small facts that need no Kubernetes client.

Kept apart from the modules that import ``kubernetes`` so the CLI can build its parser and run
snapshot mode without loading the client (about 20 MB and most of the start-up imports).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.sources.errors import InputError
from app.sources.manifest import dns_label

IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


class KubeError(Exception):
    """The cluster cannot be reached or used; the message says what to do."""


def in_cluster() -> bool:
    return bool(os.environ.get(IN_CLUSTER_ENV))


LABEL = (
    "a namespace is a DNS-1123 label (at most 63 lower-case letters, digits and '-', "
    "starting and ending with a letter or digit)"
)


def namespaces(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--kube-vip-namespace`` values (repeatable, comma lists allowed), default kube-system.

    Each checked as the API server checks a namespace, before connecting: a typo ("A",
    "kube_system") listed nothing there and read as "no kube-vip", and an empty one (an
    unset variable in ``"$NS"``, two commas) was dropped, leaving kube-system unasked."""
    out: list[str] = []
    for value in values or ():
        flag = f"--kube-vip-namespace {value[:80]!r}{'...' if len(value) > 80 else ''}"
        for item in value.split(","):
            name = item.strip()
            if not name:
                raise InputError(
                    f"{flag}: an empty namespace (an unset shell variable, or two commas?); "
                    f"give namespaces separated by commas: {LABEL}"
                )
            if not dns_label(name):
                raise InputError(f"{flag}: {name[:80]!r} is no namespace: {LABEL}")
            out.append(name)
    return tuple(dict.fromkeys(out)) or ("kube-system",)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    timeout_seconds: int = 300  # the server ends each watch after this; we watch again
    read_grace: float = 30.0  # read timeout = timeout_seconds + this: a dead peer is noticed
    connect_timeout: float = 10.0
    backoff_base: float = 0.5  # first retry waits up to this, doubling per failure ...
    backoff_cap: float = 30.0  # ... up to this
    absent_retry: float = 300.0  # how often to ask again for a resource the server lacks
    # A page of a list: the API server ends any request but a watch within 60 s
    # (--request-timeout), so a list unanswered longer than this never will be.
    list_seconds: float = 60.0

    @property
    def request_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.timeout_seconds + self.read_grace)

    @property
    def list_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.list_seconds + self.read_grace)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    kube_vip_namespaces: tuple[str, ...] = ("kube-system",)
    watch: WatchSettings = field(default_factory=WatchSettings)
    coalesce: float = 0.2  # seconds between inventory rebuilds, at most one per interval
    audit_interval: float = 10.0  # seconds between background audits, at most one per interval
    audit: bool = True  # record Warning Events (needs create/patch on events)
