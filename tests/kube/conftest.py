"""Fixtures for live-mode tests: an API stand-in, a writer, and live mode started on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from app.kube.serving import LiveSettings
from app.pki.certs import make_bundle, write_bundle
from tests.kube.fakeapi import FakeApi, Writer, running
from tests.kube.harness import SETTINGS, Cluster
from tests.webhook.conftest import SERVICE_DNS, Certs


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with running() as fake:
        yield fake


@pytest.fixture
def writer(api: FakeApi) -> Iterator[Writer]:
    w = Writer(api)
    yield w
    w.close()


@pytest.fixture
def cluster_factory(api: FakeApi) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(settings: LiveSettings = SETTINGS) -> Cluster:
        made.append(Cluster(api, settings))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and a serving certificate for the webhook's Service name (as tests/webhook has)."""
    out = tmp_path_factory.mktemp("certs")
    write_bundle(make_bundle([SERVICE_DNS], ["127.0.0.1"]), out)
    return Certs(out)
