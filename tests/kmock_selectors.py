"""Label and field selectors as kube-apiserver reads them, for the kmock stand-in.

kmock ignores ``labelSelector`` and ``fieldSelector``: a list or watch answered every
object, so a selector that a real API server refuses (400) or that picks too much or too
little went unnoticed. The grammar and rules here are apimachinery's (``labels.Parse``,
``fields.ParseSelector``), the messages the API server's:
- labels: comma-separated requirements ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``,
  ``k in (a,b)``, ``k notin (a,b)``, ``k>N``, ``k<N``; ``!=`` and ``notin`` also pick an
  object without the label; keys are qualified names, values label values (63 characters);
- fields: comma-separated ``f=v``, ``f==v``, ``f!=v`` (``\\`` escapes ``,`` ``=`` ``\\``);
  resources take ``metadata.name`` and ``metadata.namespace``, a few built-in ones their own
  set (``FIELDS``: Nodes ``metadata.name`` and ``spec.unschedulable`` only), cluster-scoped
  custom resources ``metadata.name`` only: any other field is refused "field label not
  supported".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Match = Callable[[Mapping[str, Any]], bool]  # an object -> whether the selector picks it

# The fields a built-in resource with a field label conversion of its own can be selected by
# (by API group and plural: Node's takes no metadata.namespace); the others take
# ``COMMON_FIELDS``.
FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({
        "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
        "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
        "status.podIP", "status.podIPs", "status.nominatedNodeName",
    }),
    ("", "nodes"): frozenset({"metadata.name", "spec.unschedulable"}),
    ("", "secrets"): frozenset({"metadata.name", "metadata.namespace", "type"}),
    ("", "events"): frozenset({
        "metadata.name", "metadata.namespace", "involvedObject.kind",
        "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    }),
}  # fmt: skip
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = "!=(),<>"  # what ends an identifier in a label selector, besides whitespace


class SelectorError(ValueError):
    """A selector the API server refuses: 400 BadRequest with this message."""


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (at most 63 characters)"
        )
    return None


def _value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character "
            "(at most 63 characters)"
        )
    return None


def _tokens(text: str) -> list[str]:
    """apimachinery's selector lexer: operators, parentheses, commas and identifiers."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif text[i : i + 2] in ("!=", "=="):
            out.append(text[i : i + 2])
            i += 2
        elif c in _SPECIAL:
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _identifier(token: str | None) -> bool:
    return token is not None and token not in (*_SPECIAL, "!=", "==")


def parse_labels(text: str) -> Match:
    """A label selector's test of an object's ``metadata.labels``; SelectorError if the API
    server would refuse it. An empty selector picks everything."""
    tokens = _tokens(text)
    reqs: list[tuple[str, str, frozenset[str]]] = []  # (key, operator, values)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str) -> str:
        nonlocal pos
        token = peek()
        if token is None:
            raise SelectorError(f"found '', expected: {expected}")
        pos += 1
        return token

    def valid_value(value: str) -> str:
        problem = _value_problem(value)
        if problem:
            raise SelectorError(f'unable to parse requirement: Invalid value: "{value}": {problem}')
        return value

    while pos < len(tokens):
        negated = peek() == "!"
        if negated:
            pos += 1
        key = take("identifier")
        if not _identifier(key) or key in ("in", "notin"):
            raise SelectorError(f"found '{key}', expected: identifier")
        problem = _key_problem(key)
        if problem:
            raise SelectorError(f'unable to parse requirement: Invalid value: "{key}": {problem}')
        op = peek()
        if negated:
            if op not in (None, ","):
                raise SelectorError(f"found '{op}', expected: ',' or 'end of string'")
            reqs.append((key, "!", frozenset()))
        elif op in (None, ","):
            reqs.append((key, "exists", frozenset()))
        elif op in ("=", "==", "!="):
            pos += 1
            value = ""  # "k=" selects the empty value
            if _identifier(peek()):
                value = valid_value(take("value"))
            reqs.append((key, "notin" if op == "!=" else "in", frozenset({value})))
        elif op in ("in", "notin"):
            pos += 1
            if take("'('") != "(":
                raise SelectorError(f"found '{tokens[pos - 1]}', expected: '('")
            values: set[str] = set()
            while True:
                token = take("',', ')' or identifier")
                if token == ")":
                    break
                if token == ",":
                    values.add("")  # "(a,,b)": an empty value between the commas
                    continue
                if not _identifier(token):
                    raise SelectorError(f"found '{token}', expected: ',', ')' or identifier")
                values.add(valid_value(token))
                if peek() == ",":
                    pos += 1
                    if peek() == ")":
                        values.add("")
            if not values:
                raise SelectorError(
                    "unable to parse requirement: for 'in', 'notin' operators, values set "
                    "can't be empty"
                )
            reqs.append((key, op, frozenset(values)))
        elif op in ("<", ">"):
            pos += 1
            bound = take("integer")
            if not re.fullmatch(r"-?\d+", bound):
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                    f"be an integer, not {bound!r}"
                )
            reqs.append((key, op, frozenset({bound})))
        else:
            raise SelectorError(f"found '{op}', expected: '=', '!=', '==', 'in', notin'")
        if pos < len(tokens):
            if take("','") != ",":
                raise SelectorError(f"found '{tokens[pos - 1]}', expected: ',' or 'end of string'")
            if pos == len(tokens):
                raise SelectorError("found '', expected: identifier after ','")

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_holds(labels, *req) for req in reqs)

    return match


def _holds(labels: Mapping[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    """One requirement: "!=" and "notin" also hold for an object without the label."""
    value = labels.get(key)
    if op == "!":
        return value is None
    if op == "exists":
        return value is not None
    if op == "in":
        return value in values
    if op == "notin":
        return value not in values
    (bound,) = values  # ">" or "<": an integer label compared with an integer
    if value is None or not re.fullmatch(r"-?\d+", value):
        return False
    return int(value) > int(bound) if op == ">" else int(value) < int(bound)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
        elif text[i] == sep:
            parts.append(current)
            current, i = "", i + 1
        else:
            current += text[i]
            i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """A field as the API server compares it: a string ("" when absent, "true"/"false")."""
    value: Any = obj
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_fields(text: str, supported: frozenset[str]) -> Match:
    """A field selector's test of an object; SelectorError if the API server would refuse
    it (its grammar, or a field this resource cannot be selected by)."""
    terms: list[tuple[str, bool, str]] = []  # (field, equal, value)
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = split
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        terms.append((field, op != "!=", value))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, f) == v) == equal for f, equal, v in terms)

    return match


def _split_term(term: str) -> tuple[str, str, str] | None:
    """fields.splitTerm: the leftmost operator, "!=" before "==" before "=" at one place."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, _unescape(term[i + len(op) :])
    return None


def supported_fields(group: str, plural: str, *, custom: bool, namespaced: bool) -> frozenset[str]:
    """What a list or watch of this resource can be selected by: a custom resource takes
    its name, and its namespace only when it is namespaced (no selectableFields here)."""
    if custom:
        return COMMON_FIELDS if namespaced else frozenset({"metadata.name"})
    return FIELDS.get((group, plural), COMMON_FIELDS)


def selection(params: Mapping[str, str], fields: frozenset[str]) -> Match:
    """What a list or watch with these query parameters picks, of a resource that can be
    selected by ``fields``."""
    labels = parse_labels(params.get("labelSelector", ""))
    picks = parse_fields(params.get("fieldSelector", ""), fields)
    return lambda obj: labels(obj) and picks(obj)
