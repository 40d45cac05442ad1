"""docs/writing-plugins.md works as written: its ```sh blocks, run literally,
in order and in one shell from an empty folder, make a fresh virtual
environment, install sslx from a copy of this checkout, make, edit, test and
install the plugin, train it twice, read the records and break and repair
the plugin. A failing step fails the test with its block and its output.

Nothing downloads: the fresh environment sees the third-party packages
already installed here (torch, sacred, ...; through PYTHONPATH, without sslx
or any sslx plugin), and pip runs with no index, so every sslx distribution
is installed by the tutorial's own commands and a step that would need the
network fails."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO, read_run
from sslx_authoring import scaffold

TUTORIAL = REPO / "docs" / "writing-plugins.md"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
MARK = "@@ tutorial block "
# Settings of the shell running this test that would change what the tutorial's commands do.
UNSET = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "SSLX_LOAD_PLUGINS",
    "SSLX_STRICT_PLUGINS",
    "SSLX_DEBUG",
    "SSLX_PLUGINS_TOML",
)


def sh_blocks() -> list[str]:
    return SH_BLOCK.findall(TUTORIAL.read_text())


def copy_checkout(dest: Path) -> Path:
    """The files git knows in this checkout (tracked, or new and not
    ignored), copied to ``dest``: what a clone with this working tree's
    changes holds, without its virtual environment and build outputs (a
    build from the copy leaves the checkout untouched)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def third_party_packages(dest: Path) -> Path:
    """``dest`` with a link to every package installed in this environment
    except sslx and its plugins (their files, metadata and editable hooks)."""
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("sslx", "__editable__")):
            (dest / entry.name).symlink_to(entry)
    return dest


def failed_block(output: str, blocks: list[str], returncode: int) -> str:
    """The block that failed (the last one that started) and its output."""
    number, _, tail = output.rpartition(MARK)[2].partition("\n")
    block = int(number)
    return (
        f"docs/writing-plugins.md: sh block {block + 1} of {len(blocks)} failed (exit status {returncode}):\n"
        f"{blocks[block]}\n--- its output ---\n{tail}"
    )


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path):
    blocks = sh_blocks()
    script = "set -e -o pipefail\n" + "".join(f"echo '{MARK}{i}'\n{block}" for i, block in enumerate(blocks))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["SSLX_SRC"] = str(copy_checkout(tmp_path / "sslx"))
    (tmp_path / "deps").mkdir()
    env["PYTHONPATH"] = str(third_party_packages(tmp_path / "deps"))
    env["PIP_NO_INDEX"] = "1"
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, failed_block(proc.stdout, blocks, proc.returncode)

    assert "5 passed" in proc.stdout  # the generated tests and the tutorial's own
    assert "alpha : float = 2.0" in proc.stdout  # sslx describe shows the new parameter
    runs = [read_run(work / "sslx-align-uniform" / "runs" / run) for run in ("1", "2")]
    assert [run["run"]["status"] for run in runs] == ["COMPLETED", "COMPLETED"]
    assert [run["config"]["objective"]["alpha"] for run in runs] == [2.0, 1.0]
    assert "No module named 'a_module_that_is_not_installed'" in proc.stdout  # the broken plugin was reported
    last = proc.stdout.rstrip().splitlines()[-1]  # the repaired plugin loads again, beside the first-party ones
    assert last == str(
        ["align_uniform", "augmentations", "authoring", "compare", "crops", "datasets", "encoders", "knn", "mongo"]
    )


def test_the_tutorials_edit_is_a_small_change_of_the_generated_objective(tmp_path):
    """The module the tutorial pastes is what `sslx new-plugin align_uniform`
    makes with alpha added: when the example changes, the tutorial's copy
    must follow."""
    pasted = next(
        re.search(r"<<'EOF'\n(.*?)^EOF$", b, re.S | re.M).group(1)
        for b in sh_blocks()
        if b.startswith("cat > src/sslx_align_uniform/__init__.py")
    )
    generated = (
        scaffold.new_plugin("align_uniform", "objective", tmp_path) / "src" / "sslx_align_uniform" / "__init__.py"
    ).read_text()
    changed = [
        line
        for line in difflib.unified_diff(generated.splitlines(), pasted.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert 0 < len(changed) <= 30, (
        "the tutorial's module differs from the generated one in more than the edit:\n" + "\n".join(changed)
    )
