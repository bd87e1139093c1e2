"""Verdicts as admins read them (text) and as pipelines read them (JSON)."""

from __future__ import annotations

import json
from typing import Any

from app.core.verdict import Verdict


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "allowed": verdict.allowed,
        "violations": [
            {"rule": v.rule, "field": v.field, "message": v.message} for v in verdict.denied_by
        ],
        "warnings": list(verdict.warnings),
    }


def printable(text: str) -> str:
    """``text`` with what a terminal or a CI log would act on (a newline, an escape sequence,
    a right-to-left override) written as its escape: a name in a snapshot is printed as
    written, and one line of output must stay one finding."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def verdict_text(name: str, verdict: Verdict) -> str:
    lines = [f"Eip {name}: {'allowed' if verdict.allowed else 'DENIED'}"]
    for v in verdict.denied_by:
        lines.append(f"  deny  [{v.rule}] {v.message}")
    for v in verdict.warned_by:
        lines.append(f"  warn  [{v.rule}] {v.message}")
    for note in verdict.notes:
        lines.append(f"  note  {note}")
    return "\n".join(map(printable, lines))


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
