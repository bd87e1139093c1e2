"""Reading what admins hand us as files: cluster snapshots, Eip manifests, policy files.

Every failure is a :class:`InputError` whose text names the file and says what is wrong,
so the CLI and the server can print one line and exit, never a traceback.
"""

from __future__ import annotations

import codecs
import itertools
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiter
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from app.core.eips import GROUP, SPEC_FIELDS, VERSIONS, Eip, is_eip, same_spec
from app.core.fields import as_mapping, as_str
from app.core.rules import RULE_IDS, RULES
from app.core.verdict import Action, Policy
from app.sources.errors import InputError, shown
from app.sources.gc_pause import gc_paused
from app.sources.kubectl_yaml import KubectlLoader, StrictLoader, key_twice
from app.sources.manifest import described

SNAPSHOT_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 * 1024 * 1024
STDIN = "-"  # as a path: read standard input, as kubectl's `-f -`


def is_stdin(path: Path) -> bool:
    return str(path) == STDIN


def _read_stdin() -> bytes:
    stream = sys.stdin
    if stream is None:  # closed at start (`<&-`)
        raise InputError(f"{shown(STDIN)}: standard input is closed: pipe the file in")
    raw = getattr(stream, "buffer", None)
    if raw is not None:
        data: bytes = raw.read(MAX_FILE_BYTES + 1)
        return data
    return str(stream.read(MAX_FILE_BYTES + 1)).encode("utf-8", "surrogateescape")


def _read(path: Path) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES: the size is checked while reading, since
    /dev/zero, a FIFO or /proc files say nothing (or 0) in st_size."""
    too_big = InputError(f"{shown(path)}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        if is_stdin(path):
            data = _read_stdin()
        else:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise too_big  # without reading it
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _cannot_read(path, exc) from exc
    if len(data) > MAX_FILE_BYTES:
        raise too_big
    return data


def _cannot_read(path: Path, exc: OSError) -> InputError:
    # strerror, not str(exc): that repeats the path, quoted ("[Errno 13] ...: 'x.yaml'").
    return InputError(f"{shown(path)}: cannot read: {exc.strerror or exc}")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{shown(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}): give a YAML or JSON file (a binary file, or another encoding?)"
    )


def _documents(path: Path, *, strict: bool = False) -> Iterator[Any]:
    """The documents of ``path``; ``strict`` for a manifest or a policy (see StrictLoader)."""
    data = _read(path)
    # Standard input has no suffix: `kubectl get -o json | eip-guard ... --cluster -` is
    # told by its first character (YAML's reader took 8 times the time and memory of jiter's
    # at the xl size). YAML can begin with "{" too: what jiter refuses there is read as YAML.
    sniffed = is_stdin(path) and data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
    if path.suffix == ".json" or sniffed:  # bytes: jiter reads UTF-8 itself (0.05 s less)
        if data.startswith(codecs.BOM_UTF8):  # as json.loads of bytes, and the YAML reader
            data = data[len(codecs.BOM_UTF8) :]
        if not data or data.isspace():  # not strip(): that copies 47 MB to look
            return  # empty, said by the caller as for YAML; jiter would say "EOF at column 0"
        try:
            doc = _json_document(path, data)
        except InputError:
            if not sniffed:
                raise
        else:
            twice = key_twice(data) if strict else None
            if twice is not None:
                raise InputError(f"{shown(path)}: not valid JSON: {twice}")
            yield doc
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    del data
    try:
        with gc_paused():
            docs = list(yaml.load_all(text, Loader=StrictLoader if strict else KubectlLoader))
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise InputError(f"{shown(path)}: not valid YAML: {where}{exc.problem}") from exc
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"{shown(path)}: not valid YAML or JSON: {exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{shown(path)}: nested too deeply to be a Kubernetes manifest") from exc
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
            raise _not_utf8(path, bad) from bad
        raise InputError(f"{shown(path)}: not valid YAML or JSON: {exc}") from exc
    finally:
        jiter.cache_clear()


def _is_list(doc: Any, path: Path) -> bool:
    """Whether ``doc`` is a ``kind: ...List``; an InputError when it is no object at all, or
    a List whose items are no list (read as empty, its objects would be lost unseen)."""
    if type(doc) is not dict and not isinstance(doc, Mapping):  # the ABC check is slow
        raise InputError(f"{shown(path)}: expected Kubernetes objects, found {described(doc)}")
    kind = doc.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InputError(
            f"{shown(path)}: an object whose kind is {described(kind)}, not a string such as "
            "Node or Eip"
        )
    if not isinstance(kind, str) or not kind:
        raise InputError(
            f"{shown(path)}: an object without 'kind' (is this a Kubernetes manifest?)"
        )
    if kind.endswith("List"):
        items = doc.get("items")
        if isinstance(items, list):
            return True
        if items is not None:
            raise InputError(
                f"{shown(path)}: {kind} with items as {described(items)}, not a list: its objects "
                "would be left out of the cluster. Write items as a YAML list ('- ' before "
                "each object), as kubectl does"
            )
    return False


MAX_LIST_DEPTH = 8  # Lists inside Lists: kubectl writes one level; more is a mistake


Objects = list[Mapping[str, Any]]


def _objects(doc: Any, path: Path, eips: Objects) -> Objects:
    """The objects of one document; those of a kind spelt 'eip' also into ``eips``."""
    if doc is None:
        return []
    if not _is_list(doc, path):
        if doc["kind"] in _EIP_KINDS:
            eips.append(doc)
        return [doc]
    found: Objects = []
    _list_items(doc, path, found, eips, seen=set(), depth=1)
    return found


def _list_items(
    doc: Any, path: Path, found: Objects, eips: Objects, *, seen: set[int], depth: int
) -> None:
    """Every object of the List ``doc`` into ``found`` (and ``eips``, see _objects), Lists
    inside it opened.

    YAML aliases can make a List hold itself (endless) or the same List many times over (a
    700-byte file expanding to a billion objects): a List met twice is refused.
    """
    if id(doc) in seen:
        raise InputError(
            f"{shown(path)}: a List appears twice, or inside itself (YAML aliases): write the "
            "items out"
        )
    if depth > MAX_LIST_DEPTH:
        raise InputError(f"{shown(path)}: Lists nested more than {MAX_LIST_DEPTH} deep")
    seen.add(id(doc))
    # A loop, not a generator per item: that cost 0.3 s for a List of 160,000 objects.
    append = found.append
    for item in doc["items"]:
        # The usual item, a dict with a kind that is no List, without the call (160,000).
        if type(item) is dict:
            kind = item.get("kind")
            if type(kind) is str and kind and not kind.endswith("List"):
                append(item)
                if kind in _EIP_KINDS:  # here: a pass of its own took 10% of the load
                    eips.append(item)
                continue
        if item is None:
            continue
        if _is_list(item, path):
            _list_items(item, path, found, eips, seen=seen, depth=depth + 1)
        else:
            append(item)
            if item["kind"] in _EIP_KINDS:
                eips.append(item)


def _unreadable(exc: OSError) -> None:
    where = shown(exc.filename) if exc.filename is not None else "a directory"
    raise InputError(f"{where}: cannot read the directory: {exc.strerror or exc}")


def _files(path: Path) -> list[Path]:
    """The snapshot files of ``path``: itself, or those under it (links to directories are
    not followed, as ``Path.rglob`` does not). What cannot be read is an error, never left
    out: a snapshot missing part of the cluster would allow what it should deny."""
    if is_stdin(path):
        return [path]
    file = path
    try:
        if path.is_dir():
            found: list[Path] = []
            for top, _dirs, names in os.walk(path, onerror=_unreadable):
                for name in names:
                    file = Path(top, name)
                    if file.suffix not in SNAPSHOT_SUFFIXES:
                        continue
                    if not file.exists():
                        raise InputError(f"{shown(file)}: a broken symbolic link")
                    if not file.is_file():
                        raise InputError(f"{shown(file)}: not a regular file")
                    found.append(file)
            if not found:
                raise InputError(f"{shown(path)}: a directory without .yaml, .yml or .json files")
            return sorted(found)
        if not path.exists():
            raise InputError(f"{shown(path)}: no such file or directory")
    except OSError as exc:  # what exists() and is_dir() do not answer False to (a name too long)
        raise _cannot_read(file, exc) from exc
    return [path]


def _file_objects(path: Path, *, strict: bool = False) -> tuple[Objects, Objects]:
    """The objects of a file, and those of them whose kind is spelt 'eip'."""
    # An empty file is what 'kubectl get ... > snapshot.yaml' leaves when kubectl fails:
    # judged as a cluster, it would allow every Eip. An empty List is kubectl's "nothing".
    docs = [doc for doc in _documents(path, strict=strict) if doc is not None]
    if not docs:
        raise InputError(
            f"{shown(path)}: empty, no YAML or JSON document (did the command that wrote it fail?)"
        )
    eips: Objects = []
    return [obj for doc in docs for obj in _objects(doc, path, eips)], eips


# 'eip' in every case: 'Eip' is read, the others noted (kinds are case-sensitive).
_EIP_KINDS = frozenset(map("".join, itertools.product("eE", "iI", "pP")))
_EIP_API_VERSIONS = frozenset(f"{GROUP}/{version}" for version in VERSIONS)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The objects of snapshot files, and what was left out of them, one line each."""

    objects: list[Mapping[str, Any]]
    notes: tuple[str, ...] = ()


class _Eips:
    """The Eips of a snapshot, file by file: what looks like an Eip but is none is noted
    (the inventory skips it, and an admin should learn that it did), and one name given
    two different Eips is an error: the inventory keeps one Eip per name, so the other's
    pool would be dropped unseen, allowing what it should deny. The same Eip twice (one
    cluster's objects in two files) is read once."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self._seen: dict[str, tuple[Path, Mapping[str, Any]]] = {}

    def check(self, objects: Objects, eips: Objects, path: Path) -> Objects:
        """``objects`` of the file ``path`` less repeats of an Eip already read, given those
        of them whose kind is spelt 'eip'; notes and errors as above."""
        repeats = [id(o) for o in eips if self._repeat(o, path)]
        if not repeats:
            return objects
        dropped = set(repeats)
        return [o for o in objects if id(o) not in dropped]

    def _repeat(self, obj: Mapping[str, Any], path: Path) -> bool:
        version = obj.get("apiVersion")
        if obj["kind"] != "Eip" or not (
            (type(version) is str and version in _EIP_API_VERSIONS) or is_eip(obj)
        ):
            self.notes.append(_not_an_eip(obj, path))
            return False
        meta = obj.get("metadata")
        name = meta.get("name") if type(meta) is dict else None
        if type(name) is not str:
            name = as_str(as_mapping(meta).get("name"))  # as Eip.from_object reads it
        first = self._seen.setdefault(name, (path, obj))
        if first[1] is obj:
            return False
        earlier, later = Eip.from_object(first[1]), Eip.from_object(obj)
        if same_spec(earlier, later):
            return True  # the first copy read is kept
        raise InputError(_two_eips(name, first[0], path, earlier, later))


def _not_an_eip(obj: Mapping[str, Any], path: Path) -> str:
    """Why an object of a kind spelt 'eip' is no Eip the inventory reads."""
    kind, version = obj["kind"], obj.get("apiVersion")
    name = as_str(as_mapping(obj.get("metadata")).get("name")) or "(no name)"
    what = f"{kind} {name} (in {shown(path)}): ignored"
    if kind != "Eip":
        return f"{what}: kind {kind!r} is not 'Eip' (kinds are case-sensitive)"
    given = f"apiVersion {version!r}" if version is not None else "no apiVersion"
    return (
        f"{what}: {given}, so not OpenELB's Eip ({GROUP}/{VERSIONS[0]}); if it is one, fix "
        "its apiVersion"
    )


def _two_eips(name: str, first: Path, then: Path, earlier: Eip, later: Eip) -> str:
    """Why one name given two different Eips is refused, naming both places."""
    fields = [
        label for attr, label in SPEC_FIELDS if getattr(earlier, attr) != getattr(later, attr)
    ]
    differ = list(dict.fromkeys(fields)) or ["spec"]
    if earlier.address_text != later.address_text:  # the pool: the one an admin looks for
        differ[0] = f"spec.address ({earlier.address_text!r}, then {later.address_text!r})"
    if first == then:
        where = f"twice in {shown(first)}"
    else:
        where = f"in {shown(first)} and again in {shown(then)}"
    return (
        f"Eip {name!r} is {where}, differing in {', '.join(differ)}: a cluster holds one Eip "
        "of a name, so one of them would be judged and the other dropped unseen. Keep the "
        "current one (snapshots of the cluster taken at different times?)"
    )


def load_snapshot(*paths: Path, strict: bool = False) -> Snapshot:
    """Objects from YAML/JSON files: a `kind: List`, several documents, or a directory.
    A file without a document, or a directory without a file, is an InputError, and so is
    one Eip name given to two different Eips; what looks like an Eip but is none is noted.
    ``strict``: a key given twice in one mapping is an InputError too (see StrictLoader)."""
    objects: list[Mapping[str, Any]] = []
    eips = _Eips()
    for p in paths:
        for f in _files(p):
            found = _file_objects(f, strict=strict)
            with gc_paused():  # what it makes survives; a collection would walk every object
                objects += eips.check(*found, f)
    return Snapshot(objects, tuple(eips.notes))


def load_objects(*paths: Path, strict: bool = False) -> list[Mapping[str, Any]]:
    """The objects of :func:`load_snapshot` (what it notes left unsaid)."""
    return load_snapshot(*paths, strict=strict).objects


def _one_file(path: Path) -> Path:
    """``path``, which must be a file: a directory given where one file is read would be
    walked whole before saying so (all of /tmp, say)."""
    try:
        if not is_stdin(path) and path.is_dir():
            raise InputError(f"{shown(path)}: a directory; give one file")
    except OSError as exc:
        raise _cannot_read(path, exc) from exc
    return path


def load_one(path: Path) -> Mapping[str, Any]:
    """Exactly one object, e.g. the Eip given to `eip-guard check -f`."""
    objects = load_objects(_one_file(path), strict=True)
    if len(objects) != 1:
        raise InputError(f"{shown(path)}: expected exactly one object, found {len(objects)}")
    return objects[0]


class PolicyFile(BaseModel):
    """The policy file: per-rule actions and whether the allow-rules annotation counts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rules: dict[str, Action] = {}
    allowOverrides: bool = True  # the YAML key, spelled as Kubernetes spells keys

    @field_validator("rules", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # `rules:` with every rule commented out, or helm's toYaml of `rules: null`: no rules.
        if value is None:
            return {}
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


def _policy_error(exc: ValidationError) -> str:
    """The first error pydantic found in a policy file, as its admin names things."""
    first = exc.errors()[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        hint = (
            " (a Kubernetes object? give the policy file itself)"
            if loc[0] in ("apiVersion", "kind")
            else ""
        )
        return f"{loc[0]}: not a key of a policy file, which holds rules: and allowOverrides:{hint}"
    if loc[0] == "rules" and loc[-1] == "[key]":
        return f"rules: a rule id that is {described(first['input'])}, not a string"
    where = ".".join(str(p) for p in loc)
    return f"{where}: {first['msg']}"


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    # Empty documents (a `---` that ends the file, as helm and kubectl write them) hold nothing.
    docs = [d for f in _files(_one_file(path)) for d in _documents(f, strict=True) if d is not None]
    if len(docs) != 1 or not isinstance(docs[0], Mapping):
        raise InputError(
            f"{shown(path)}: a policy file holds one mapping (rules:, allowOverrides:)"
        )
    try:
        return PolicyFile.model_validate(docs[0]).to_policy()
    except ValidationError as exc:
        raise InputError(f"{shown(path)}: {_policy_error(exc)}") from exc
    except InputError as exc:
        raise InputError(f"{shown(path)}: {exc}") from exc
