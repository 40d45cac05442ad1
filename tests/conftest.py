"""Fixtures of the host's tests: the real installed plugins, tiny versions
of the shipped experiments, and fake plugin distributions."""

from __future__ import annotations

import sys
import textwrap
from importlib import invalidate_caches
from pathlib import Path

import pytest
from helpers import EXPERIMENTS, tiny_overrides

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import PluginHost, load_plugins


@pytest.fixture
def host() -> PluginHost:
    return load_plugins(strict=True)


@pytest.fixture
def tiny(host: PluginHost):
    """``tiny(name, *sets)``: experiments/<name>.json shrunk, validated."""

    def make(name: str, *sets: str):
        raw = apply_overrides(read_experiment(EXPERIMENTS / f"{name}.json"), tiny_overrides(name) + list(sets))
        return resolve(raw, host, source=name)

    return make


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
