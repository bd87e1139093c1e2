"""Fixtures of the certificate tests: a Kubernetes API emulator and the chart's objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helm_python import Chart

from tests.chart.rendering import CHART, objects, render_raw
from tests.pki.kube_emulator import running


@pytest.fixture
def api() -> Iterator[str]:
    """The base URL of a fresh API emulator (kmock with resourceVersions)."""
    with running() as url:
        yield url


@pytest.fixture(scope="session")
def chart_objects() -> list[dict[str, Any]]:
    """What `helm template` renders with the default values (self mode)."""
    with Chart.load(CHART) as chart:
        return objects(render_raw(chart, {}))
