"""YAML and JSON read as kubectl reads them, where the Python readers differ.

- What kubectl's reader (go-yaml v2 into ``interface{}``) gives as a string stays one: a
  timestamp (``name: 2024-05-01``, ``!!timestamp``) is the text written (PyYAML made it a
  date, and the Eip had no name), and there are no base-60 numbers (``1:2:3:4:5:6:7:8``, an
  IPv6 address kubectl prints unquoted, was the number 3,617,...).
- For a manifest or a policy (:class:`StrictLoader`, :func:`key_twice`), a key given twice
  in one mapping is an error, as kubectl refuses it ("mapping key already defined"), not the
  last one silently kept. A snapshot is what kubectl printed, read as ``json.loads`` reads it
  (the last one wins): no pass of its own costs the load of 50,000 objects.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# PyYAML's YAML 1.1 int and float, less their base-60 forms (``1:20`` is 80 there).
_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_PATTERNS = {"tag:yaml.org,2002:int": _INT, "tag:yaml.org,2002:float": _FLOAT}
_MERGE = "tag:yaml.org,2002:merge"
_TWICE = "kubectl refuses it; keep one"


class KubectlLoader(_BASE):  # type: ignore[misc]
    """PyYAML's safe loader (its C parser when there is one), with kubectl's strings."""


KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, _PATTERNS.get(tag, pattern)) for tag, pattern in resolvers]
    for first, resolvers in _BASE.yaml_implicit_resolvers.items()
}
KubectlLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


class StrictLoader(KubectlLoader):
    """:class:`KubectlLoader` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                    continue  # a merge may repeat a key: the mapping's own one wins
                key = self.construct_object(key_node)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} given twice in one mapping (first on line "
                        f"{first[key].line + 1}): {_TWICE}",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


class _KeyTwice(Exception):
    """A JSON object with a key given twice, found by _no_key_twice."""


def _no_key_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(f"key {key!r} given twice in one object: {_TWICE}")
            seen.add(key)
    return mapping


def key_twice(data: bytes) -> str | None:
    """Why the JSON ``data`` (which jiter read: it keeps the last of a key given twice,
    saying nothing) is refused for a key given twice, or None. For a small file only."""
    try:
        json.loads(data, object_pairs_hook=_no_key_twice)
    except _KeyTwice as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # what json.loads cannot read (an int of 5,000 digits) jiter read
    return None
