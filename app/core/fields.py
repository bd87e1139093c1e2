"""Reading fields of plain Kubernetes objects (dicts from JSON or YAML) whose shape nobody
promised: a field of the wrong type reads as empty, so one odd object never raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_mapping(value: Any) -> Mapping[str, Any]:
    # dict first: the ABC check costs more, and parsed objects are dicts all the way down.
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""
