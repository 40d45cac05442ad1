"""Plugin discovery and loading: the first-party set, isolation of broken
plugins, strict mode, SSLX_LOAD_PLUGINS, plugins.toml checks, listings."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib

import pytest
from click.testing import CliRunner
from helpers import REPO, SSLX

import sslx
from sslx.cli import cli
from sslx.errors import PluginError
from sslx.plugins import check_plugin_set, load_plugins
from sslx.registry import Provenance, Registry

FIRST_PARTY = {p["name"]: p for p in tomllib.loads((REPO / "plugins.toml").read_text())["plugin"]}

BROKEN_IMPORT = """
    raise ImportError("this plugin needs a package that is not installed")
"""
BROKEN_REGISTRAR = """
    import sslx

    class Half(sslx.Evaluator):
        name = "half"
        def evaluate(self, ctx):
            return {}

    @sslx.hookimpl
    def sslx_register_evaluators(register):
        register(Half)
        raise RuntimeError("registration blew up")
"""
MISSPELLED_HOOK = """
    import sslx

    @sslx.hookimpl
    def sslx_register_encoder(register):
        pass
"""
DUPLICATE = """
    import sslx

    class Moco(sslx.Objective):
        name = "moco"

    @sslx.hookimpl
    def sslx_register_objectives(register):
        register(Moco)
"""
GOOD = """
    import sslx

    class Everything(sslx.Evaluator):
        '''Reports nothing, for tests.'''
        name = "nothing"
        def evaluate(self, ctx):
            return {}

    @sslx.hookimpl
    def sslx_register_evaluators(register):
        register(Everything)
"""


def test_first_party_plugins_load_with_their_components(host):
    loaded = {p.distribution: p for p in host.plugins}
    assert set(FIRST_PARTY) <= set(loaded)
    for dist in FIRST_PARTY:
        record = loaded[dist]
        assert record.loaded and record.version == "0.1.0"
        assert record.hooks and not record.warnings, record  # every hook it implements is a known one
    assert {"barlow_twins", "byol", "moco", "npid", "pirl", "simclr", "swav", "vicreg"} <= set(
        host.registry.names("objective")
    )
    assert {"fashion_mnist", "image_folder"} <= set(host.registry.names("dataset"))
    assert host.component("objective", "moco").provenance == Provenance("moco", "sslx-moco", "0.1.0")
    assert all(lp.problem is None for lp in check_plugin_set(REPO / "plugins.toml", host))


def test_broken_plugins_are_reported_and_skipped_while_the_rest_work(fake_dists):
    fake_dists(
        {
            "fake-broken": BROKEN_IMPORT,
            "fake-half": BROKEN_REGISTRAR,
            "fake-typo": MISSPELLED_HOOK,
            "fake-dup": DUPLICATE,
            "fake-good": GOOD,
        }
    )
    host = load_plugins(strict=False)
    by_name = {p.name: p for p in host.plugins}
    assert "ImportError: this plugin needs a package" in by_name["fake_broken"].error  # found at import
    assert by_name["fake_half"].loaded, "registrars run only when a command first needs a component"
    problems = "\n".join(host.load_problems())  # collects the components
    assert not by_name["fake_half"].loaded
    assert by_name["fake_broken"].distribution == "fake-broken" and by_name["fake_broken"].version == "1.0"
    assert "RuntimeError: registration blew up" in by_name["fake_half"].error
    assert host.registry.find("evaluator", "half") is None, "a failed plugin's partial registrations are rolled back"
    assert by_name["fake_typo"].loaded and "unknown hook 'sslx_register_encoder'" in by_name["fake_typo"].warnings[0]
    # a duplicate name is an error naming both plugins, and neither wins silently
    clash = by_name["moco"].error  # entry points load in name order: fake_dup came first
    assert "objective 'moco' is registered twice" in clash
    assert "'fake_dup' (fake-dup 1.0)" in clash and "'moco' (sslx-moco 0.1.0)" in clash
    with pytest.raises(sslx.UserError, match="provided by two plugins"):
        host.component("objective", "moco")
    # the rest work: first-party components and the good fake plugin
    assert host.component("objective", "simclr").provenance.distribution == "sslx-simclr"
    assert host.component("evaluator", "nothing").provenance.distribution == "fake-good"
    for name in ("fake_broken", "fake_half", "fake_typo", "moco"):
        assert name in problems


def test_strict_mode_makes_a_broken_plugin_fatal(fake_dists, monkeypatch):
    fake_dists({"fake-broken": BROKEN_IMPORT})
    with pytest.raises(PluginError, match=r"plugin 'fake_broken' \(fake-broken 1.0\) failed to load \(strict mode\)"):
        load_plugins(strict=True)
    monkeypatch.setenv("SSLX_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        load_plugins()


def test_strict_mode_makes_an_unknown_hook_fatal(fake_dists):
    fake_dists({"fake-typo": MISSPELLED_HOOK})
    with pytest.raises(PluginError, match="unknown hook 'sslx_register_encoder'"):
        load_plugins(strict=True)


def test_sslx_load_plugins_limits_or_empties_the_set(monkeypatch):
    monkeypatch.setenv("SSLX_LOAD_PLUGINS", "")
    assert load_plugins().plugins == []
    monkeypatch.setenv("SSLX_LOAD_PLUGINS", "moco, sslx-datasets, nosuch")
    host = load_plugins()
    assert sorted(p.name for p in host.plugins) == ["datasets", "moco"]
    assert host.registry.names("encoder") == []
    assert any("'nosuch'" in line for line in host.load_problems())


def test_registry_rejects_bad_components():
    reg = Registry()
    prov = Provenance("p", None, None)

    class NotAnEncoder:
        name = "x"

    with pytest.raises(PluginError, match="not a subclass of sslx.Encoder"):
        reg.add("encoder", NotAnEncoder, prov)  # type: ignore[arg-type]

    class BadName(sslx.Evaluator):
        name = "Bad-Name"

        def evaluate(self, ctx):
            return {}

    with pytest.raises(PluginError, match="lower-case letters"):
        reg.add("evaluator", BadName, prov)
    reg.add("evaluator", BadName, prov, name="fine_name")
    assert reg.names("evaluator") == ["fine_name"]
    assert "Did you mean 'fine_name'" in reg.unknown_name_message("evaluator", "fine_nam")


def test_in_process_plugin_with_bad_hook_arguments_is_reported(host):
    class Wrong:
        @sslx.hookimpl
        def sslx_register_encoders(self, register, extra_argument):
            pass

    record = load_plugins(strict=False).add_plugin(Wrong(), "wrong")
    assert "invalid hook implementation" in record.error and "extra_argument" in record.error


def test_plugins_toml_reports_missing_and_incompatible(tmp_path, host):
    listing = tmp_path / "plugins.toml"
    listing.write_text(
        '[[plugin]]\nname = "sslx-moco"\npath = "plugins/moco"\nversion = ">=0.2"\n\n'
        '[[plugin]]\nname = "sslx-nonexistent"\npath = "plugins/x"\nversion = ">=0.1"\n\n'
        '[[plugin]]\nname = "sslx-knn"\npath = "plugins/knn"\nversion = ">=0.1,<0.2"\n'
    )
    result = {lp.distribution: lp for lp in check_plugin_set(listing, host)}
    assert "sslx-moco 0.1.0 is installed but plugins.toml requires sslx-moco>=0.2" in result["sslx-moco"].problem
    assert "not installed" in result["sslx-nonexistent"].problem and result["sslx-nonexistent"].installed is None
    assert result["sslx-knn"].problem is None and result["sslx-knn"].installed == "0.1.0"


def test_plugins_command_json_lists_every_first_party_plugin():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    listed = {p["distribution"]: p for p in data["plugins"]}
    for dist in FIRST_PARTY:
        assert listed[dist]["version"] == "0.1.0" and listed[dist]["hooks"] and listed[dist]["error"] is None
        # a plugin adds components, or tools (commands, recorders): never nothing
        assert listed[dist]["components"] or {"sslx_register_commands", "sslx_run_observers"} & set(
            listed[dist]["hooks"]
        )
    assert listed["sslx-moco"]["components"] == {"objective": ["moco"]}
    assert data["problems"] == []
    assert {lp["distribution"] for lp in data["plugin_set"]["listed"]} == set(FIRST_PARTY)


def test_plugins_command_shows_a_broken_plugin_and_the_rest_keep_working(fake_dists, tmp_path):
    fake_dists({"fake-broken": BROKEN_IMPORT})
    proc = CliRunner().invoke(cli, ["plugins", "--json"])
    assert proc.exit_code == 1
    data = json.loads(proc.stdout)
    broken = next(p for p in data["plugins"] if p["name"] == "fake_broken")
    assert "ImportError: this plugin needs a package that is not installed" in broken["error"]
    assert "was skipped" in proc.stderr and "Traceback" not in proc.stderr
    # another command still works, with a one-line warning
    proc = CliRunner().invoke(cli, ["describe", "objective", "simclr"])
    assert proc.exit_code == 0 and "temperature" in proc.stdout
    assert "warning: plugin 'fake_broken' (fake-broken 1.0) was skipped" in proc.stderr


def test_version_lists_plugins():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert f"sslx {sslx.__version__}" in result.output
    for dist in FIRST_PARTY:
        assert f"{dist} 0.1.0" in result.output


def test_describe_documents_every_parameter(host):
    result = CliRunner().invoke(cli, ["describe", "objective", "moco", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["distribution"] == "sslx-moco" and "MoCo v2" in data["description"]
    params = {p["name"]: p for p in data["parameters"]}
    assert params["temperature"]["default"] == 0.2 and params["temperature"]["type"] == "float"
    assert all(p["description"] for p in data["parameters"])
    assert data["json_schema"]["properties"]["queue_size"]["minimum"] == 1
    text = CliRunner().invoke(cli, ["describe", "encoder", "small_cnn"]).output
    assert "width : int = 32" in text and "Channels of the first block" in text
    bad = CliRunner().invoke(cli, ["describe", "objective", "mocco"])
    assert bad.exit_code == 2 and "Did you mean 'moco'" in bad.output and "Traceback" not in bad.output


def test_every_first_party_parameter_is_described(host):
    for info in host.registry.all():
        assert info.description, f"{info.kind} {info.name} has no description"
        for param in info.params:
            assert param.description, f"{info.kind} {info.name}: parameter {param.name} has no description"


COMMAND_PLUGIN = """
    import click
    import sslx

    @click.command()
    @click.argument("who")
    def hello(who):
        '''Say hello (a command added by a plugin).'''
        click.echo(f"hello {who} from a plugin")

    @sslx.hookimpl
    def sslx_register_commands(cli):
        cli.add_command(hello)
"""


def test_a_plugin_adds_a_cli_command(fake_dists):
    site = fake_dists({"fake-cmd": COMMAND_PLUGIN})
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([SSLX, "hello", "world"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello world from a plugin\n"
    listing = subprocess.run([SSLX, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert "hello" in listing.stdout and "Say hello" in listing.stdout
