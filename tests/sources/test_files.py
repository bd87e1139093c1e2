"""Snapshot files: what a bad file says, and that .json files read as `json.loads` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.sources.files import InputError, load_objects

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}}


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_objects(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"kind": "List", "items": [\n  {"kind": "Service",}\n]}', "line 2 column 22"),
        ('{"kind": "List", "items": [', "line 1 column 27"),
        ("", "line 1 column 0"),
        ('{"kind": "Service"} {}', "line 1 column 21"),
        ("\ufeff{}", "line 1 column 1"),  # a BOM: json.loads refused it too
    ],
)
def test_invalid_json_names_the_file_and_where(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}: not valid YAML or JSON: ")
    assert message.endswith(f" at {where}")


def test_json_that_is_not_utf8_says_so_as_before(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_bytes(b'{"kind": "Service", "metadata": {"name": "caf\xe9"}}')
    assert error_of(path) == (
        f"{path}: cannot read: 'utf-8' codec can't decode byte 0xe9 in position 45: "
        "invalid continuation byte"
    )


def test_json_nested_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    # json.loads went on until a RecursionError (a traceback); the parser stops at 200.
    path = tmp_path / "snap.json"
    path.write_text('{"kind": "Service", "spec": ' + "[" * 2000 + "]" * 2000 + "}")
    assert "recursion limit exceeded at line 1 column" in error_of(path)


def test_json_values_read_as_json_loads_reads_them(tmp_path: Path) -> None:
    text = json.dumps(
        {
            **SERVICE,
            "spec": {
                "big": 2**80,
                "neg": -0,
                "f": 1e400,
                "small": 5e-324,
                "e": "\u00e9\ud83d\ude00",
            },
        }
    ).replace('"neg": 0', '"neg": -0, "neg": 7')  # a duplicate key: the last one wins
    path = tmp_path / "snap.json"
    path.write_text(text, encoding="utf-8")
    assert load_objects(path) == [json.loads(text)]
    nan = tmp_path / "nan.json"
    nan.write_text('{"kind": "Service", "spec": [NaN, Infinity, -Infinity]}')
    assert str(load_objects(nan)) == str([json.loads(nan.read_text())])


def test_a_json_list_and_a_yaml_file_give_the_same_objects(tmp_path: Path) -> None:
    items = [SERVICE, {**SERVICE, "metadata": {"name": "b"}}]
    (tmp_path / "a.json").write_text(json.dumps({"kind": "List", "items": items}))
    (tmp_path / "b.yaml").write_text(json.dumps({"kind": "List", "items": items}))
    assert load_objects(tmp_path / "a.json") == load_objects(tmp_path / "b.yaml") == items
