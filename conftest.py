"""Settings and fixtures for the whole test suite (host and plugins alike),
made before any test module imports torch.

With ``pytest -n N`` (pytest-xdist, as ``make test`` runs it) every worker
trains with one torch thread, and the ``sslx`` processes tests start inherit
that: on a 2-core machine two workers that each spin two threads slow each
other down far beyond sharing (measured: 0.14x each)."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def host():
    """Every installed plugin, strictly loaded (a broken one fails the test)."""
    from sslx.plugins import load_plugins

    return load_plugins(strict=True)


@pytest.fixture
def tiny(host):
    """``tiny(name, *sets)``: experiments/<name>.json shrunk to seconds (tests/helpers.py), validated."""
    from helpers import EXPERIMENTS, tiny_overrides

    from sslx.config import apply_overrides, read_experiment, resolve

    def make(name: str, *sets: str):
        raw = apply_overrides(read_experiment(EXPERIMENTS / f"{name}.json"), tiny_overrides(name) + list(sets))
        return resolve(raw, host, source=name)

    return make


def pytest_collection_modifyitems(items: list) -> None:
    """The slow tests first (those marked ``slow``: multi-process runs, the
    tutorial, fault injection), so that pytest-xdist spreads them over the
    workers from the start instead of leaving one to run them at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
