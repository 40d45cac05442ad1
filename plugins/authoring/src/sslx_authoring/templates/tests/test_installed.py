"""The installed plugin as sslx finds it: `sslx plugins` lists it, loaded,
from its distribution, with its one component. Install the plugin first:
pip install --no-build-isolation -e '.[test]'
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_installed_plugin_is_listed():
    proc = subprocess.run(
        [sys.executable, "-m", "sslx", "plugins", "--json"], capture_output=True, text=True, timeout=120
    )
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    install = "pip install --no-build-isolation -e '.[test]'"
    assert "example" in plugins, f"sslx-example is not installed: {install}"
    plugin = plugins["example"]
    assert plugin["error"] is None, plugin["error"]
    assert plugin["distribution"] == "sslx-example"
    assert list(plugin["components"].values()) == [["example"]]
