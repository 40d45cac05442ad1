"""Runs the templates' own tests on the template modules as they are, in
this process and without installing anything: src/ goes on sys.path, so
that ``import sslx_example.objective`` finds the objective's template.

``sslx new-plugin`` copies neither this file nor src/sslx_example/__init__.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

# Needs the plugin installed, which a template never is: the end-to-end test of sslx-authoring runs it in a
# generated plugin.
collect_ignore = ["tests/test_installed.py"]
