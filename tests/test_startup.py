"""Commands import only what they use (DESIGN.md, section 2: "Registering a
component imports nothing heavy; a component imports its libraries when it is
built, a command when it runs").

Each command runs in a fresh interpreter through the real CLI with every
installed plugin, and the test reads which heavy libraries ended up in
``sys.modules``: ``--help`` and ``--version`` load the plugins' entry modules
only, so no torch at all; ``plugins``, ``validate`` and ``describe`` collect
every component, so torch, numpy and pydantic, but none of the libraries a
component needs only once it is built (albumentations, OpenCV, PyAV, SciPy,
torchvision, matplotlib, scikit-learn) or that only recording needs (Sacred,
pymongo). Timing is left to benchmarks/startup.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

# Imported only where they are used: by a built component, or by a command that records or plots.
BUILD_TIME = ("albumentations", "cv2", "av", "scipy", "sacred", "pymongo", "matplotlib", "torchvision", "sklearn")
# Not even the contract's own libraries: these commands build no component.
NO_COMPONENTS = ("torch", "numpy", "pydantic", *BUILD_TIME)

# Runs the command line given as JSON in argv[1]; prints its exit status and the loaded modules as JSON.
DRIVER = """
import json, sys
from sslx.cli import cli
try:
    status = cli.main(json.loads(sys.argv[1]), prog_name="sslx", standalone_mode=False)
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status or 0, "modules": sorted(sys.modules)}))
"""


def run_command(args: list[str]) -> tuple[int, set[str]]:
    """Run ``sslx ARGS`` in a fresh interpreter (from the repository, with
    every installed plugin: ``SSLX_LOAD_PLUGINS`` is unset); its exit status
    and the modules it loaded."""
    env = {k: v for k, v in os.environ.items() if k != "SSLX_LOAD_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["status"], set(report["modules"])


def heavy(modules: set[str], libraries: tuple[str, ...]) -> list[str]:
    """Which of ``libraries`` (top-level packages) were imported."""
    return sorted({m.split(".")[0] for m in modules}.intersection(libraries))


@pytest.mark.parametrize("args", [["--help"], ["--version"]], ids=" ".join)
def test_help_and_version_import_no_torch(args):
    status, modules = run_command(args)
    assert status == 0
    assert {"sslx_moco", "sslx_datasets"} <= modules  # the plugins' entry modules were loaded...
    assert heavy(modules, NO_COMPONENTS) == []  # ...and imported nothing heavy


@pytest.mark.parametrize(
    "args", [["plugins"], ["validate", "experiments/moco.json"], ["describe", "objective", "moco"]], ids=" ".join
)
def test_commands_that_read_components_import_no_build_time_library(args):
    status, modules = run_command(args)
    assert status == 0
    assert {"sslx_moco.objective", "sslx_augmentations.views", "sslx_datasets.video"} <= modules  # every component
    assert heavy(modules, BUILD_TIME) == []
