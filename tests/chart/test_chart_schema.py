"""values.schema.json: every default passes, every unknown key or wrong type fails."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.chart.rendering import SCENARIOS


def test_defaults_and_every_scenario_pass(chart: helm_python.Chart) -> None:
    chart.validate_schema(chart.values)
    for values, _ in SCENARIOS.values():
        chart.validate_schema(chart.merge_values(values))


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unknown top-level key": ({"replicas": 3}, "replicas"),
    "unknown nested key": ({"webhook": {"timeout": 5}}, "timeout"),
    "unknown key deep down": ({"certificates": {"self": {"secret": "x"}}}, "secret"),
    "string for an integer": ({"replicaCount": "2"}, "replicaCount"),
    "zero replicas": ({"replicaCount": 0}, "replicaCount"),
    "timeout over 30 s": ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
    "unknown failure policy": ({"webhook": {"failurePolicy": "Deny"}}, "failurePolicy"),
    "unknown cert mode": ({"certificates": {"mode": "auto"}}, "mode"),
    "unknown rule action": ({"policy": {"rules": {"address-overlap": "block"}}}, "rules"),
    "unknown rule id": ({"policy": {"rules": {"no-such-rule": "warn"}}}, "no-such-rule"),
    "string for a boolean": ({"policy": {"allowOverrides": "yes"}}, "allowOverrides"),
    "bad admission-policy toggle": ({"validatingAdmissionPolicy": {"enabled": "on"}}, "enabled"),
    "port out of range": ({"webhook": {"probePort": 70000}}, "probePort"),
    "configmap without namespace": ({"inventory": {"kubeVip": {"configMap": "kv"}}}, "configMap"),
    "non-string node selector": ({"nodeSelector": {"a": 1}}, "nodeSelector"),
    "bad duration": ({"certificates": {"certManager": {"duration": "1y"}}}, "duration"),
    "caBundle not base64": ({"certificates": {"external": {"caBundle": "-----BEGIN"}}}, "caBundle"),
    "unknown agent key": ({"agent": {"enabled": True, "noSuchKey": "x"}}, "noSuchKey"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_rejects(chart: helm_python.Chart, case: str) -> None:
    values, where = BAD[case]
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values(values))
    assert where in str(err.value)


def test_render_refuses_values_the_schema_rejects(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmError, match="replicas"):
        chart.render({"replicas": 3}, name="eip-guard", namespace="eip-guard")


def _objects(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    found = [(path, node)] if node.get("type") == "object" and "properties" in node else []
    for key, child in (node.get("properties") or {}).items():
        found += _objects(child, f"{path}.{key}")
    return found


def test_every_schema_object_is_closed(chart: helm_python.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    for path, node in _objects(schema):
        assert node.get("additionalProperties") is False, path


def test_schema_and_values_yaml_name_the_same_keys(chart: helm_python.Chart) -> None:
    def keys(node: dict[str, Any], values: dict[str, Any], path: str) -> None:
        props = node["properties"]
        assert set(values) <= set(props), f"{path}: values.yaml keys the schema lacks"
        for key in node.get("required", []):
            assert key in values, f"{path}.{key}: required but has no default"
        for key, child in props.items():
            if child.get("type") == "object" and "properties" in child and key in values:
                keys(child, values[key], f"{path}.{key}")

    schema = chart.schema
    assert schema is not None
    keys(schema, chart.values, "$")
