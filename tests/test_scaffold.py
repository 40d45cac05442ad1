"""`sslx new-plugin`: for every kind, the generated distribution installs
into this environment, passes its own tests, is listed by `sslx plugins`,
and its experiment runs to COMPLETED with the plugin's component in it; bad
and taken names are refused with one paragraph that says what to do. The
generated plugins are uninstalled afterwards, also when a test fails."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import SSLX

import sslx
from sslx import UserError, scaffold
from sslx.cli import cli
from sslx.config import COMPONENT_SECTIONS, resolve

KINDS = tuple(scaffold.EXAMPLES)


@pytest.mark.parametrize("version,expected", [("0.1.0", ">=0.1,<0.2"), ("0.3.7", ">=0.3,<0.4"),
                                              ("1.2.0", ">=1.2,<2"), ("2.0.1", ">=2.0,<3")])
def test_plugins_require_the_sslx_versions_compatible_with_this_one(version, expected):
    assert scaffold.compatible_range(version) == expected


@pytest.mark.parametrize("name,example", [("MyMethod", "my_method"), ("2fast", "my_2fast"), ("my-method", "my_method"),
                                          ("class", "my_class"), ("my__method", "my_method"), ("method_", "method"),
                                          ("", "my_method")])
def test_bad_names_are_refused_with_what_is_expected_and_an_example(name, example, tmp_path):
    with pytest.raises(UserError) as err:
        scaffold.new_plugin(name, "objective", tmp_path)
    assert str(err.value) == (
        f"cannot make a plugin named {name!r}: a plugin's name is lowercase letters and digits, starting with a "
        f"letter, with single underscores between words, and not a Python keyword. It names the component in "
        f"experiments, the package sslx_<name> and the distribution sslx-<name>; for example: "
        f"sslx new-plugin {example}"
    )
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_left_alone(tmp_path):
    (tmp_path / "sslx-mine").mkdir()
    (tmp_path / "sslx-mine" / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("mine", "objective", tmp_path)
    assert str(err.value) == f"{tmp_path / 'sslx-mine'} already exists: choose another name, or another parent " \
                             f"folder with --dir."
    assert [p.name for p in (tmp_path / "sslx-mine").iterdir()] == ["notes.txt"]


def test_names_taken_by_installed_plugins_or_their_components_are_refused(tmp_path, host):
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("simclr", "objective", tmp_path)
    assert str(err.value) == (
        "cannot make a plugin named 'simclr': the distribution sslx-simclr 0.1.0 is installed. Choose another name, "
        "such as 'my_simclr', or uninstall sslx-simclr first if it is an older copy of this plugin.")
    with pytest.raises(UserError) as err:
        scaffold.new_plugin("mnist", "dataset", tmp_path, host)
    assert str(err.value) == (
        "cannot make a plugin named 'mnist': the dataset 'mnist' is registered by plugin 'datasets' (sslx-datasets "
        "0.1.0), and two with one name make it unusable. Choose another name, such as 'my_mnist'.")
    assert not any(tmp_path.iterdir())


def test_the_experiments_first_party_parts_are_valid_and_come_from_the_distributions_named(host):
    resolve(scaffold.FIRST_PARTY, host)
    parts = [(kind, scaffold.FIRST_PARTY[kind]["name"]) for kind in COMPONENT_SECTIONS]
    for kind, name in [*parts, ("evaluator", scaffold.FIRST_PARTY["evaluators"][0]["name"])]:
        assert host.component(kind, name).provenance.distribution == scaffold.FIRST_PARTY_DISTRIBUTIONS[kind]


def test_the_default_is_an_objective_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["new-plugin", "mine"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Created sslx-mine/: the objective 'mine' in src/sslx_mine/__init__.py. Next:")
    module = (tmp_path / "sslx-mine" / "src" / "sslx_mine" / "__init__.py").read_text()
    assert "class MineObjective(sslx.Objective):" in module and "register(MineObjective)" in module


def test_the_command_prints_a_refusal_without_a_traceback(tmp_path):
    proc = subprocess.run([SSLX, "new-plugin", "My-Method", "--kind", "sampler", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: cannot make a plugin named 'My-Method': ") and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith("for example: sslx new-plugin my_method")
    assert not any(tmp_path.iterdir())


def pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


# The end-to-end tests come last in this file: while their plugins are installed, this process sees their entry
# points but cannot import them (an editable install takes effect when an interpreter starts), so a plugin host
# loaded here would report them as broken.


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind's plugin, ``scaffolded_<kind>``, made with `sslx new-plugin`
    and installed (editable) into this environment; uninstalled at the end."""
    parent = tmp_path_factory.mktemp("plugins")
    roots = {}
    for kind in KINDS:
        result = CliRunner().invoke(cli, ["new-plugin", f"scaffolded_{kind}", "--kind", kind, "--dir", str(parent)])
        assert result.exit_code == 0, result.output
        roots[kind] = parent / f"sslx-scaffolded-{kind}"
        assert f"Created {roots[kind]}/" in result.output
    try:
        pip("install", "--no-build-isolation", "--no-deps", *(f"--editable={root}" for root in roots.values()))
        yield roots
    finally:
        pip("uninstall", "-y", *(f"sslx-scaffolded-{kind}" for kind in KINDS))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_tests_pass(plugins, kind):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=plugins[kind],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "4 passed" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_experiment_runs(plugins, kind, tmp_path):
    name = f"scaffolded_{kind}"
    proc = subprocess.run([SSLX, "run", str(plugins[kind] / "experiments" / f"{name}.json"), "--runs-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())
    info = json.loads((tmp_path / "runs" / "1" / "info.json").read_text())
    assert run["status"] == "COMPLETED"
    if kind == "evaluator":
        assert 0 <= run["result"][f"eval.{name}_top1"] <= 1
    else:
        assert info["components"][kind]["distribution"] == f"sslx-scaffolded-{kind}"
    assert 0 <= run["result"]["eval.knn_top1"] <= 1


@pytest.mark.slow
def test_sslx_plugins_lists_every_generated_plugin(plugins):
    proc = subprocess.run([SSLX, "plugins", "--json"], capture_output=True, text=True, timeout=120)
    listed = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    for kind in KINDS:
        mine = listed[f"scaffolded_{kind}"]
        assert (mine["distribution"], mine["version"], mine["error"]) == (f"sslx-scaffolded-{kind}", "0.1.0", None)
        assert mine["components"] == {kind: [f"scaffolded_{kind}"]}
    assert proc.returncode == 0, proc.stdout


@pytest.mark.slow
def test_the_distribution_declares_sslx_its_entry_point_and_test_extra(plugins):
    project = tomllib.loads((plugins["dataset"] / "pyproject.toml").read_text())["project"]
    assert project["name"] == "sslx-scaffolded-dataset"
    assert project["dependencies"][0] == f"sslx{scaffold.compatible_range(sslx.__version__)}"
    assert "scikit-image>=0.22" in project["dependencies"]
    assert project["entry-points"]["sslx"] == {"scaffolded_dataset": "sslx_scaffolded_dataset"}
    assert project["optional-dependencies"]["test"] == ["pytest>=8", "scikit-image>=0.22"]
