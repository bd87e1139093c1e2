"""Fixtures of the chart tests: the loaded chart and a render function (see rendering.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import helm_python
import pytest

from tests.chart.rendering import CHART, Obj, RenderFn, objects, render_raw


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> RenderFn:
    def _render(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Obj]:
        return objects(render_raw(chart, values, **kwargs))

    return _render
