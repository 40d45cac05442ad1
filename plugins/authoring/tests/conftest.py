"""Shared by the authoring tests: one fresh virtual environment per session
for the tests that install plugins, and the installed first-party plugins."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sslx.plugins import PluginHost, load_plugins


@pytest.fixture(scope="session")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtual environment, one per test session, for
    the tests that pip install plugins: what they install stays out of this
    environment (which other test runs share). It sees this environment's
    packages (sslx, the first-party plugins, torch, pip, pytest) through a
    .pth file, so installing a plugin with --no-deps downloads nothing."""
    root = tmp_path_factory.mktemp("env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    parent = sysconfig.get_paths()["purelib"]
    (site / "parent_environment.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


@pytest.fixture(scope="module")
def first_party() -> PluginHost:
    """The installed plugins (sslx's first-party set among them), loaded once per test module."""
    return load_plugins(strict=False)
