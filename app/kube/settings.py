"""Live-mode settings and small facts that need no Kubernetes client.

Kept apart from the modules that import ``kubernetes`` so the CLI can build its parser and run
snapshot mode without loading the client (about 20 MB and most of the start-up imports).
"""

from __future__ import annotations

import os
import re
import urllib.parse
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


# A host as RFC 3986 spells one outside brackets (a name, IPv4; no %-escapes), or non-ASCII
# (an IDN): urllib3 refused the rest only at the first request, and the agent logged "cannot
# reach the API server (LocationParseError...)" every tick instead of exiting.
_HOST = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|[^\x00-\x7f])+")
EXAMPLE_URL = "http://127.0.0.1:8001"


def url_problem(url: str) -> str | None:
    """What makes ``url`` no API server URL the client can use (http or https, a host, a
    port of 1-65535 if any, a path if any), or None. Pure: the CLI's --server and a
    kubeconfig's server both."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a URL has no spaces or control characters (a stray quote or newline?)"
    try:
        # Each raises ValueError: a bracket left open, an IPv6 literal that is none, a port
        # that is no number or out of range.
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        netloc = url.partition("://")[2].partition("/")[0]
        if netloc.count(":") > 1 and re.fullmatch(r"[0-9A-Fa-f:.]+", netloc):
            return "an IPv6 address goes in brackets, e.g. http://[fd00::1]:8001"
        return f"{exc}; expected e.g. {EXAMPLE_URL}"
    if parts.scheme not in ("http", "https") or not host:
        return f"expected an http:// or https:// URL with a host, e.g. {EXAMPLE_URL}"
    if "[" not in parts.netloc and not _HOST.fullmatch(host):
        return f"{host!r} is not a host name or IP address"
    if port == 0:
        return "port 0 is no port to connect to: expected 1-65535"
    if parts.username is not None:
        return (
            "the client never sends a user:password@ of the URL: give credentials as a "
            "kubeconfig user (--kubeconfig), or use an API that needs none (kubectl proxy)"
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "a ?query or #fragment would end up in front of every API path: drop it"
    return None
