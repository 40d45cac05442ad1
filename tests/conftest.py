"""Fixtures of the host's tests: fake plugin distributions (the installed
plugins and tiny experiments, ``host`` and ``tiny``, come from the
repository's conftest.py)."""

from __future__ import annotations

import sys
import textwrap
from importlib import invalidate_caches
from pathlib import Path

import pytest


@pytest.fixture
def fake_dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_dists({dist_name: module_source})``: installs distributions with
    an ``sslx`` entry point on sys.path (real importlib metadata, no pip)."""
    site = tmp_path / "site"
    site.mkdir()

    def install(plugins: dict[str, str]) -> Path:
        for dist, source in plugins.items():
            module = dist.replace("-", "_")
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            info = site / f"{module}-1.0.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
            (info / "entry_points.txt").write_text(f"[sslx]\n{module} = {module}\n")
        monkeypatch.syspath_prepend(str(site))
        invalidate_caches()
        return site

    yield install
    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]
