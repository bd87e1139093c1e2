"""What the API server refuses of a manifest's metadata, said before a manifest that never
applies is judged (``eip-guard check -f``: "Eip : allowed" for an Eip without a name, exit 0,
and kubectl apply then refusing it).

Light to import (the command line's flags use :func:`dns_label` and :func:`dns_subdomain`):
no YAML, no pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
DNS_SUBDOMAIN = (
    "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each part "
    "starting and ending with a letter or digit"
)


def dns_label(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 label, as the API server checks a namespace's name."""
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def dns_subdomain(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 subdomain, as the API server checks the names of most
    objects, custom resources such as the Eip among them."""
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def described(value: Any) -> str:
    """What a YAML value is, as an admin names it: 'a mapping', 'a number (5)'."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    what = {str: "a string", int: "a number", float: "a number"}
    word = what.get(type(value), f"a {type(value).__name__}")
    text = repr(value)
    return f"{word} ({text if len(text) <= 40 else text[:37] + '...'})"


def _quoted(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text)} characters)"


def metadata_problem(obj: Mapping[str, Any]) -> str | None:
    """Why the API server refuses ``obj`` (a cluster-scoped object, such as an Eip) for its
    metadata, or None: a name that is missing, no string or no DNS-1123 subdomain, and
    annotations or labels that are no map of strings (an unquoted ``true``)."""
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        return f"metadata is {described(meta)}, not a mapping: write metadata: with name:"
    meta = meta or {}
    name = meta.get("name")
    if name is None or name == "":
        return (
            "no metadata.name: kubectl apply refuses an object without one (generateName is "
            "for kubectl create only); give the Eip its name"
        )
    if not isinstance(name, str):
        return (
            f"metadata.name is {described(name)}, not a string: the API server refuses it; "
            "quote it in YAML"
        )
    if not dns_subdomain(name):
        return (
            f"metadata.name {_quoted(name)}: the API server refuses this name; an Eip's name "
            f"is {DNS_SUBDOMAIN}"
        )
    for field in ("annotations", "labels"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            return (
                f"metadata.{field} is {described(values)}, not a mapping: the API server "
                "refuses it; write key: value pairs"
            )
        for key, value in values.items():
            if not isinstance(key, str):
                return (
                    f"metadata.{field} has a key that is {described(key)}, not a string: the "
                    "API server refuses it; quote the key in YAML"
                )
            # null reads as "" (Go's JSON decoder leaves the string empty), as kubectl sends it
            if value is not None and not isinstance(value, str):
                said = f' ("{str(value).lower()}")' if isinstance(value, bool) else ""
                return (
                    f"metadata.{field}[{_quoted(key)}] is {described(value)}, not a string: "
                    f"the API server refuses it; quote the value in YAML{said}"
                )
    return None
