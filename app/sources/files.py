"""Reading what admins hand us as files: cluster snapshots, Eip manifests, policy files.

Every failure is a :class:`InputError` whose text names the file and says what is wrong,
so the CLI and the server can print one line and exit, never a traceback.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jiter
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from app.core.rules import RULE_IDS, RULES
from app.core.verdict import Action, Policy
from app.sources.errors import InputError
from app.sources.gc_pause import gc_paused

SNAPSHOT_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 * 1024 * 1024


def _read(path: Path) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES: the size is checked while reading, since
    /dev/zero, a FIFO or /proc files say nothing (or 0) in st_size."""
    too_big = InputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise too_big  # without reading it
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise too_big
    return data


def _documents(path: Path) -> Iterator[Any]:
    data = _read(path)
    if path.suffix == ".json":  # bytes: jiter reads UTF-8 itself (decoding took 0.05 s)
        if data.startswith(codecs.BOM_UTF8):  # as json.loads of bytes, and the YAML reader
            data = data[len(codecs.BOM_UTF8) :]
        if not data or data.isspace():  # not strip(): that copies 47 MB to look
            return  # empty, said by the caller as for YAML; jiter would say "EOF at column 0"
        yield _json_document(path, data)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    del data
    try:
        with gc_paused():
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise InputError(f"{path}: not valid YAML: {where}{exc.problem}") from exc
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"{path}: not valid YAML or JSON: {exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{path}: nested too deeply to be a Kubernetes manifest") from exc
    yield from docs


def _json_document(path: Path, data: bytes) -> Any:
    """A .json file, parsed by jiter (pydantic-core's parser): at 47 MB, parse and free take
    0.55 s where ``json.loads`` of the decoded text took 0.95 s, mostly because repeated
    strings ("all" cache mode) are made once. The cache is cleared after the parse: its up to
    16,384 strings would keep pages of the freed snapshot resident (17 MB at the xl size).

    It reads what ``json.loads`` reads, with the same values (big ints, NaN, duplicate keys:
    the last wins), except lone UTF-16 surrogate escapes such as ``"\\ud800"`` and nesting
    more than 201 levels deep, which it refuses with a message. Its messages give line and column.
    """
    try:
        with gc_paused():
            return jiter.from_json(data, cache_mode="all")
    except ValueError as exc:
        try:
            data.decode("utf-8")  # the message of the text reader (YAML files') for bad UTF-8
        except UnicodeDecodeError as bad:
            raise InputError(f"{path}: cannot read: {bad}") from bad
        raise InputError(f"{path}: not valid YAML or JSON: {exc}") from exc
    finally:
        jiter.cache_clear()


def _is_list(doc: Any, path: Path) -> bool:
    """Whether ``doc`` is a ``kind: ...List``; an InputError when it is no object at all."""
    if type(doc) is not dict and not isinstance(doc, Mapping):  # the ABC check is slow
        raise InputError(f"{path}: expected Kubernetes objects, found a {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        return True
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{path}: an object without 'kind' (is this a Kubernetes manifest?)")
    return False


MAX_LIST_DEPTH = 8  # Lists inside Lists: kubectl writes one level; more is a mistake


def _objects(doc: Any, path: Path) -> list[Mapping[str, Any]]:
    if doc is None:
        return []
    if not _is_list(doc, path):
        return [doc]
    found: list[Mapping[str, Any]] = []
    _list_items(doc, path, found, set(), 1)
    return found


def _list_items(
    doc: Any, path: Path, found: list[Mapping[str, Any]], seen: set[int], depth: int
) -> None:
    """Every object of the List ``doc`` into ``found``, Lists inside it opened.

    YAML aliases can make a List hold itself (endless) or the same List many times over (a
    700-byte file expanding to a billion objects): a List met twice is refused.
    """
    if id(doc) in seen:
        raise InputError(
            f"{path}: a List appears twice, or inside itself (YAML aliases): write the items out"
        )
    if depth > MAX_LIST_DEPTH:
        raise InputError(f"{path}: Lists nested more than {MAX_LIST_DEPTH} deep")
    seen.add(id(doc))
    # A loop, not a generator per item: that cost 0.3 s for a List of 160,000 objects.
    append = found.append
    for item in doc["items"]:
        # The usual item, a dict with a kind that is no List, without the call (160,000).
        if type(item) is dict:
            kind = item.get("kind")
            if type(kind) is str and kind and not kind.endswith("List"):
                append(item)
                continue
        if item is None:
            continue
        if _is_list(item, path):
            _list_items(item, path, found, seen, depth + 1)
        else:
            append(item)


def _unreadable(exc: OSError) -> None:
    raise InputError(f"{exc.filename}: cannot read the directory: {exc.strerror or exc}")


def _files(path: Path) -> list[Path]:
    """The snapshot files of ``path``: itself, or those under it (links to directories are
    not followed, as ``Path.rglob`` does not). What cannot be read is an error, never left
    out: a snapshot missing part of the cluster would allow what it should deny."""
    if path.is_dir():
        found: list[Path] = []
        for top, _dirs, names in os.walk(path, onerror=_unreadable):
            for name in names:
                file = Path(top, name)
                if file.suffix not in SNAPSHOT_SUFFIXES:
                    continue
                if not file.exists():
                    raise InputError(f"{file}: a broken symbolic link")
                if not file.is_file():
                    raise InputError(f"{file}: not a regular file")
                found.append(file)
        if not found:
            raise InputError(f"{path}: a directory without .yaml, .yml or .json files")
        return sorted(found)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [path]


def _file_objects(path: Path) -> list[Mapping[str, Any]]:
    # An empty file is what 'kubectl get ... > snapshot.yaml' leaves when kubectl fails:
    # judged as a cluster, it would allow every Eip. An empty List is kubectl's "nothing".
    docs = [doc for doc in _documents(path) if doc is not None]
    if not docs:
        raise InputError(
            f"{path}: empty, no YAML or JSON document (did the command that wrote it fail?)"
        )
    return [obj for doc in docs for obj in _objects(doc, path)]


def load_objects(*paths: Path) -> list[Mapping[str, Any]]:
    """Objects from YAML/JSON files: a `kind: List`, several documents, or a directory.
    A file without a document, or a directory without a file, is an InputError."""
    return [obj for p in paths for f in _files(p) for obj in _file_objects(f)]


def _one_file(path: Path) -> Path:
    """``path``, which must be a file: a directory given where one file is read would be
    walked whole before saying so (all of /tmp, say)."""
    if path.is_dir():
        raise InputError(f"{path}: a directory; give one file")
    return path


def load_one(path: Path) -> Mapping[str, Any]:
    """Exactly one object, e.g. the Eip given to `eip-guard check -f`."""
    objects = load_objects(_one_file(path))
    if len(objects) != 1:
        raise InputError(f"{path}: expected exactly one object, found {len(objects)}")
    return objects[0]


class PolicyFile(BaseModel):
    """The policy file: per-rule actions and whether the allow-rules annotation counts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rules: dict[str, Action] = {}
    allowOverrides: bool = True  # the YAML key, spelled as Kubernetes spells keys

    @field_validator("rules", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false; the admin meant the action "off".
        if isinstance(value, Mapping):
            return {k: "off" if v is False else v for k, v in value.items()}
        return value

    def to_policy(self) -> Policy:
        unknown = sorted(set(self.rules) - RULE_IDS)
        if unknown:
            raise InputError(f"unknown rule id(s) {unknown}; known: {sorted(RULE_IDS)}")
        # Silently warning where the admin wrote deny would pass what they meant to stop.
        denying = sorted(
            r.id for r in RULES if r.warns_only and self.rules.get(r.id) is Action.DENY
        )
        if denying:
            raise InputError(
                f"{', '.join(denying)}: this rule never denies, only warns (what it knows of "
                "node subnets may be incomplete); give it warn or off"
            )
        return Policy(actions=dict(self.rules), allow_overrides=self.allowOverrides)


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    docs = [d for f in _files(_one_file(path)) for d in _documents(f)]
    if len(docs) != 1 or not isinstance(docs[0], Mapping):
        raise InputError(f"{path}: a policy file holds one mapping (rules:, allowOverrides:)")
    try:
        return PolicyFile.model_validate(docs[0]).to_policy()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from exc
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
