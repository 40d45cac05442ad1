"""Experiment files: validation, defaults, overrides, and the error messages a
user sees for each kind of mistake (never a traceback)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner
from helpers import EXPERIMENTS, SSLX

from sslx.cli import cli
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.errors import ConfigError, UserError


def base() -> dict:
    return read_experiment(EXPERIMENTS / "moco.json")


def problems_of(data: dict, host) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        resolve(data, host, source="exp.json")
    return dict(err.value.problems)


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.json")), ids=lambda p: p.name)
def test_shipped_experiments_validate(path, host):
    exp = resolve(read_experiment(path), host, source=str(path))
    assert exp.config["trainer"]["batch_size"] >= 2
    assert set(exp.config) == {
        "description",
        "seed",
        "dataset",
        "augmentation",
        "sampler",
        "encoder",
        "objective",
        "evaluators",
        "trainer",
    }


def test_defaults_are_filled_in(host):
    exp = resolve({**base(), "objective": {"name": "moco"}}, host)
    assert exp.config["objective"] == {
        "name": "moco",
        "temperature": 0.2,
        "queue_size": 65536,
        "momentum": 0.99,
        "momentum_end": 1.0,
        "momentum_schedule": "cosine",
        "proj_hidden_dim": None,
        "proj_dim": 128,
        "symmetric": False,
    }
    assert exp.config["trainer"]["optimizer"] == "sgd"
    # the resolved config is itself a valid experiment that resolves to the same thing
    assert resolve(json.loads(json.dumps(exp.config)), host).config == exp.config


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "seed": 0,\n  "dataset": {"name": "fashion_mnist"}\n  "trainer": {}\n}\n')
    with pytest.raises(UserError) as err:
        read_experiment(path)
    msg = str(err.value)
    assert f"{path}, line 4, column 3" in msg and "invalid JSON" in msg and "missing comma" in msg


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"seed": 0, "seed": 1}')
    with pytest.raises(UserError, match="duplicate key 'seed'"):
        read_experiment(path)


def test_unknown_component_gives_path_suggestion_and_list(host):
    problems = problems_of({**base(), "objective": {"name": "mocco"}}, host)
    msg = problems["/objective/name"]
    assert "unknown objective 'mocco'" in msg
    assert "Did you mean 'moco'?" in msg
    registered = ", ".join(sorted(host.registry.names("objective")))
    assert f"Registered objectives: {registered}." in msg and "moco, npid" in registered


def test_wrong_type_and_range_give_path_expected_and_got(host):
    data = base()
    data["objective"] = {"name": "moco", "temperature": -1, "queue_size": "big"}
    data["trainer"] = {"batch_size": 2.5, "optimizer": "adam"}
    problems = problems_of(data, host)
    assert problems["/objective/temperature"].startswith("expected a value greater than 0, got -1")
    assert "objective 'moco' from plugin 'moco' (sslx-moco 0.1.0)" in problems["/objective/temperature"]
    assert 'expected a valid integer, got "big"' in problems["/objective/queue_size"]
    assert "got 2.5" in problems["/trainer/batch_size"]
    assert "'sgd' or 'adamw'" in problems["/trainer/optimizer"] and 'got "adam"' in problems["/trainer/optimizer"]


def test_strings_are_not_numbers(host):
    problems = problems_of({**base(), "seed": "0"}, host)
    assert problems["/seed"].startswith('expected a valid integer, got "0"')


def test_unknown_keys_get_did_you_mean(host):
    data = base()
    data["objective"] = {"name": "moco", "temprature": 0.1}
    data["trainerr"] = {}
    problems = problems_of(data, host)
    assert "unknown parameter of objective 'moco'" in problems["/objective/temprature"]
    assert "Did you mean 'temperature'?" in problems["/objective/temprature"]
    assert "Did you mean 'trainer'?" in problems["/trainerr"]


def test_missing_sections_and_names(host):
    data = base()
    del data["encoder"]
    data["sampler"] = {"views": 2}
    problems = problems_of(data, host)
    assert problems["/encoder"].startswith("missing section") and "small_cnn" in problems["/encoder"]
    assert problems["/sampler"].startswith("missing `name`") and "Registered samplers: " in problems["/sampler"]
    assert "crops" in problems["/sampler"].partition("Registered samplers: ")[2]


def test_cross_field_validation_reports_the_component(host):
    data = base()
    data["augmentation"] = {"name": "mocov2", "crop_scale": [0.9, 0.2]}
    problems = problems_of(data, host)
    assert "crop_scale must be [low, high]" in problems["/augmentation"]


def test_all_problems_are_reported_at_once(host):
    data = base()
    data["encoder"] = {"name": "resnet19"}
    data["evaluators"] = [{"name": "knn", "k": 0}]
    problems = problems_of(data, host)
    assert set(problems) == {"/encoder/name", "/evaluators/0/k"}
    assert "Did you mean 'resnet18'" in problems["/encoder/name"]


def test_set_overrides():
    data = apply_overrides(
        base(),
        [
            "objective.temperature=0.1",
            "trainer.max_steps=5",
            "evaluators.0.k=50",
            "description=hello world",
            "augmentation.crop_scale=[0.5, 1]",
            "trainer.grad_clip=null",
        ],
    )
    assert data["objective"]["temperature"] == 0.1
    assert data["trainer"]["max_steps"] == 5
    assert data["evaluators"][0]["k"] == 50
    assert data["description"] == "hello world"
    assert data["augmentation"]["crop_scale"] == [0.5, 1]
    assert data["trainer"]["grad_clip"] is None
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_overrides(base(), ["objective.temperature"])
    with pytest.raises(UserError, match="evaluators.3 is not an item of a list of 1"):
        apply_overrides(base(), ["evaluators.3.k=1"])
    with pytest.raises(UserError, match="seed is a a number"):
        apply_overrides(base(), ["seed.x=1"])


def test_cli_prints_one_paragraph_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    data = base()
    data["objective"]["name"] = "simclrr"
    bad.write_text(json.dumps(data))
    proc = subprocess.run([SSLX, "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"Error: {bad}:/objective/name: unknown objective 'simclrr'. Did you mean 'simclr'?" in proc.stderr


def test_a_bad_value_given_with_set_names_the_set_not_the_file():
    moco = EXPERIMENTS / "moco.json"
    result = CliRunner().invoke(
        cli, ["validate", str(moco), "--set", "trainer.lr=fast", "--set", "objective.momentum=2"]
    )
    assert result.exit_code == 2
    assert f"--set trainer.lr=fast (over {moco}):/trainer/lr: expected a valid number" in result.stderr
    assert f"--set objective.momentum=2 (over {moco}):/objective/momentum:" in result.stderr
    # a section replaced as a whole: its problems name that --set too; the file's own mistakes still name the file
    result = CliRunner().invoke(cli, ["validate", str(moco), "--set", 'encoder={"name": "small_cnn", "width": -1}'])
    assert (
        '--set encoder={"name": "small_cnn", "width": -1} (over' in result.stderr and "/encoder/width" in result.stderr
    )


def test_validate_prints_the_resolved_experiment():
    result = CliRunner().invoke(cli, ["validate", str(EXPERIMENTS / "simclr.json"), "--set", "trainer.lr=0.1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trainer"]["lr"] == 0.1


def test_missing_experiment_file():
    result = CliRunner().invoke(cli, ["validate", "nope.json"])
    assert result.exit_code == 2 and "nope.json: no such experiment file" in result.output


def test_json_schema_accepts_the_shipped_experiments_and_rejects_mistakes(host):
    import jsonschema

    from sslx.config import json_schema

    schema = json_schema(host)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXPERIMENTS.glob("*.json"):
        assert list(validator.iter_errors(read_experiment(path))) == [], path
    bad = base()
    bad["objective"]["temperature"] = -1
    bad["trainer"]["optimiser"] = "sgd"
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "optimiser" in messages
    assert not validator.is_valid({**base(), "objective": {"name": "moco", "temperature": -1}})
    assert validator.is_valid({**base(), "$schema": "./sslx.schema.json"})
