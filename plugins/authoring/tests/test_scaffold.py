"""`sslx new-plugin`: every kind's plugin is the template renamed
throughout, with a valid experiment and a distribution that declares what
it needs; bad and taken names are refused with what to do; and one plugin,
installed into a fresh virtual environment, passes its own tests and trains.

The templates' behaviour is tested by their own tests, in this process
(``src/sslx_authoring/templates/tests``)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from sslx_authoring import INSTALL, scaffold

import sslx
from sslx.cli import cli
from sslx.config import COMPONENT_SECTIONS, read_experiment, resolve
from sslx.errors import UserError
from sslx.plugins import REGISTRARS, PluginHost
from sslx.registry import KIND_NAMES


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize(
    "version,expected", [("0.1.0", ">=0.1,<0.2"), ("0.3.7", ">=0.3,<0.4"), ("1.2.0", ">=1.2,<2"), ("2.0.1", ">=2.0,<3")]
)
def test_plugins_require_the_sslx_versions_compatible_with_this_one(version, expected):
    assert scaffold.compatible_range(version) == expected


@pytest.mark.parametrize(
    "name,suggestion",
    [
        ("MyMethod", "my_method"),
        ("2fast", "my_2fast"),
        ("my-method", "my_method"),
        ("class", "my_class"),
        ("my__method", "my_method"),
        ("method_", "method"),
        ("", "my_method"),
    ],
)
def test_bad_names_are_refused_with_what_a_name_is_and_a_good_one(name, suggestion, tmp_path):
    with pytest.raises(UserError) as err:
        scaffold.new_plugin(name, "objective", tmp_path)
    message = str(err.value)
    assert message.startswith(f"cannot make a plugin named {name!r}: ")
    assert "lowercase letters and digits" in message and "not a Python keyword" in message
    assert message.endswith(f"sslx new-plugin {suggestion}")
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_left_alone(tmp_path):
    (tmp_path / "sslx-mine").mkdir()
    (tmp_path / "sslx-mine" / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("mine", "objective", tmp_path)
    assert str(tmp_path / "sslx-mine") in str(err.value) and "--dir" in str(err.value)
    assert [p.name for p in (tmp_path / "sslx-mine").iterdir()] == ["notes.txt"]


def test_names_taken_by_installed_plugins_or_their_components_are_refused(tmp_path, first_party):
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("simclr", "objective", tmp_path)
    assert "sslx-simclr 0.1.0 is installed" in str(err.value) and "'my_simclr'" in str(err.value)
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("mnist", "dataset", tmp_path, first_party)
    assert "the dataset 'mnist' is registered by plugin 'datasets' (sslx-datasets" in str(err.value)
    assert "'my_mnist'" in str(err.value)
    assert not any(tmp_path.iterdir())


def test_the_experiments_first_party_parts_are_valid_and_come_from_the_distributions_named(first_party):
    resolve(scaffold.FIRST_PARTY, first_party)
    parts = [(kind, scaffold.FIRST_PARTY[kind]["name"]) for kind in COMPONENT_SECTIONS]
    for kind, name in [*parts, ("evaluator", scaffold.FIRST_PARTY["evaluators"][0]["name"])]:
        assert first_party.component(kind, name).provenance.distribution == scaffold.FIRST_PARTY_DISTRIBUTIONS[kind]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_each_kind_is_its_template_renamed(kind, tmp_path, first_party: PluginHost, monkeypatch):
    """The plugin imports from its own folder (no install) and registers its
    component under the new name; its experiment is valid; no trace of the
    placeholder is left; the distribution declares what the component needs."""
    name = f"made_{kind}"
    root = scaffold.new_plugin(name, kind, tmp_path)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        f"experiments/{name}.json",
        "pyproject.toml",
        f"src/sslx_{name}/__init__.py",
        "tests/test_installed.py",
        f"tests/test_{name}.py",
    ]
    leftovers = {f: re.findall(r".{0,30}example.{0,30}", (root / f).read_text(), re.IGNORECASE) for f in files}
    assert not any(leftovers.values()), leftovers

    monkeypatch.syspath_prepend(root / "src")
    try:
        module = importlib.import_module(f"sslx_{name}")
        assert first_party.add_plugin(module, name).error is None
    finally:
        sys.modules.pop(f"sslx_{name}")
    info = first_party.component(kind, name)
    assert info.cls.__name__ == f"Made{kind.capitalize()}{kind.capitalize()}"
    resolve(read_experiment(root / "experiments" / f"{name}.json"), first_party)

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"sslx-made-{kind}"
    assert project["entry-points"]["sslx"] == {name: f"sslx_{name}"}
    assert project["dependencies"][:2] == [f"sslx{scaffold.compatible_range(sslx.__version__)}", "torch>=2.1"]
    assert project["dependencies"][2:] == list(scaffold.REQUIRES.get(kind, ()))
    assert project["optional-dependencies"]["test"] == ["pytest>=8", "scikit-image>=0.22"]


def test_the_readme_and_description_describe_the_new_plugin_and_say_what_to_edit(tmp_path):
    """Not the template's component: they name the new one and ask for its
    description; the README installs it the one way the docs do."""
    root = scaffold.new_plugin("mine", "sampler", tmp_path)
    template_summary = (scaffold.TEMPLATES / "src" / "sslx_example" / "sampler.py").read_text().splitlines()[0]
    readme = (root / "README.md").read_text()
    description = tomllib.loads((root / "pyproject.toml").read_text())["project"]["description"]
    assert "'mine'" in description and "replace this line" in description
    assert readme.startswith("# sslx-mine\n\nThe sampler `mine` for sslx. Replace this paragraph with what it does")
    assert "global and local" not in readme + description and template_summary not in readme
    assert f"```sh\n{INSTALL}\n```" in readme
    assert f"`{REGISTRARS['sampler']}` hook" in readme


def test_the_default_is_an_objective_in_the_current_folder_and_the_next_steps_are_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["new-plugin", "mine"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Created sslx-mine/: the objective 'mine' in src/sslx_mine/__init__.py. Next:")
    assert f"  cd sslx-mine\n  {INSTALL}\n  python -m pytest\n  sslx run experiments/mine.json" in result.output
    module = (tmp_path / "sslx-mine" / "src" / "sslx_mine" / "__init__.py").read_text()
    assert "class MineObjective(sslx.Objective):" in module and "register(MineObjective)" in module


def test_the_command_prints_a_refusal_without_a_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "My-Method", "--kind", "sampler", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot make a plugin named 'My-Method': ")
    assert result.stderr.rstrip().endswith("sslx new-plugin my_method") and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_generated_plugin_installs_passes_its_tests_and_trains(fresh_env, tmp_path):
    """End to end, as a user does it: make the plugin, pip install it
    (editable, with its entry point) into a fresh environment, run its tests
    (the installed check among them), then train its experiment with
    first-party parts. An evaluator: its metric in the run's result proves
    the experiment used it."""
    result = CliRunner().invoke(cli, ["new-plugin", "centroids", "--kind", "evaluator", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "sslx-centroids"
    run(
        fresh_env,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-build-isolation",
        "--no-deps",
        "-e",
        root,
    )
    tests = run(fresh_env, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root).stdout
    assert "4 passed" in tests, tests
    run(fresh_env, "-m", "sslx", "run", root / "experiments" / "centroids.json", "--runs-dir", tmp_path / "runs")
    record = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())
    info = json.loads((tmp_path / "runs" / "1" / "info.json").read_text())
    assert record["status"] == "COMPLETED"
    assert 0 <= record["result"]["eval.centroids_top1"] <= 1 and 0 <= record["result"]["eval.knn_top1"] <= 1
    assert "sslx-centroids==0.1.0" in record["experiment"]["dependencies"], record["experiment"]["dependencies"]
    assert info["components"]["objective"]["distribution"] == "sslx-simclr"


def test_the_entry_module_is_light():
    """Every sslx command loads this plugin: its module imports neither torch
    nor the scaffold's machinery, which its commands import when they run."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sslx_authoring; "
            "print(sorted(m for m in ('torch', 'packaging', 'sslx_authoring.scaffold', "
            "'sslx_authoring.hookdocs') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
