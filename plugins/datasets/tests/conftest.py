"""Shared by the dataset tests: the real prepared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sslx_datasets import store


def require_prepared(*relative: str) -> Path:
    """The data folder, after checking that ``relative`` paths in it exist;
    fails (not skips) with the fix when they do not: tests read real data."""
    folder = store.data_dir()
    missing = [r for r in relative if not (folder / r).exists()]
    if missing:
        pytest.fail(
            f"the data folder {folder} lacks {', '.join(missing)}: prepare it with `make setup` "
            f"(or `.venv/bin/sslx data prepare all`) before running these tests."
        )
    return folder


@pytest.fixture
def prepared():
    """``prepared(*relative)``: :func:`require_prepared` for tests."""
    return require_prepared
