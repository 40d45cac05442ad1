"""`sslx eval RUN_DIR --protocol NAME`: every evaluator on a finished tiny
run, each recorded as its own Sacred run that names the run it evaluates."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import EXPERIMENTS, read_run, tiny_overrides

from sslx.cli import cli
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import load_plugins
from sslx.records import RunFailed, record_evaluation, record_run

# protocol -> (--set assignments sized for the tiny run, the metrics it must record)
PROTOCOLS = {
    "knn": (["k=10"], {"eval.knn_top1"}),
    "linear": (["l2=[0.0001, 0.01]"], {"eval.linear_top1", "eval.linear_l2"}),
    "linear_layers": (["l2=0.001"], {"eval.layer.block1.linear_top1", "eval.layer.block2.linear_top1"}),
    "finetune": (
        ["label_fraction=0.5", "epochs=2", "batch_size=32"],
        {"eval.finetune_top1", "eval.finetune_label_fraction", "eval.finetune_train_size"},
    ),
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished tiny MoCo run (small CNN with 2 stages) in its own file store."""
    host = load_plugins(strict=True)
    raw = apply_overrides(read_experiment(EXPERIMENTS / "moco.json"), tiny_overrides("moco"))
    runs_dir = tmp_path_factory.mktemp("runs")
    record = record_run(resolve(raw, host), host, runs_dir=runs_dir, name="tiny-moco")
    return record.run_dir


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_each_protocol_is_recorded_as_a_run_linked_to_the_pretraining_run(pretrained, protocol, host):
    sets, expected = PROTOCOLS[protocol]
    before = read_run(pretrained)
    record = record_evaluation(pretrained, protocol, [*sets, "trainer.progress=false"], host)
    assert record.status == "COMPLETED"
    assert record.run_dir.parent == pretrained.parent  # recorded in the same file store
    rec = read_run(record.run_dir)
    assert rec["run"]["status"] == "COMPLETED"
    assert rec["run"]["experiment"]["name"] == f"tiny-moco.eval.{protocol}"
    evaluates = rec["config"]["evaluates"]
    assert evaluates["run_id"] == pretrained.name and evaluates["name"] == "tiny-moco"
    assert evaluates["status"] == "COMPLETED" and evaluates["step"] == 6
    assert evaluates["checkpoint"] == str((pretrained / "checkpoint.pt").resolve())
    assert rec["info"]["evaluates"] == evaluates
    assert rec["config"]["protocol"]["name"] == protocol
    assert rec["config"]["pretraining"] == before["config"]
    assert rec["info"]["components"]["evaluator"]["name"] == protocol
    # the metrics, at the checkpoint's step, and the same numbers as the run's result
    assert expected <= set(rec["metrics"]) and expected <= set(rec["run"]["result"])
    for name in expected:
        assert rec["metrics"][name]["steps"] == [6]
        assert rec["metrics"][name]["values"] == [rec["run"]["result"][name]]
    for name, value in rec["run"]["result"].items():
        if name.endswith("_top1"):
            assert 0.0 <= value <= 1.0
    if protocol == "linear_layers":
        assert rec["run"]["artifacts"] == ["layer_probe.png"]
        assert (record.run_dir / "layer_probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the evaluated run is left as it was
    assert read_run(pretrained) == before


def test_cli_eval_prints_the_metrics_and_the_link(pretrained, tmp_path):
    proc = CliRunner().invoke(
        cli,
        [
            "eval",
            str(pretrained),
            "--protocol",
            "knn",
            "--set",
            "k=5",
            "--set",
            "trainer.progress=false",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert proc.exit_code == 0, proc.output
    assert f"Evaluation run 1 COMPLETED: {tmp_path / '1'} (evaluates {pretrained})" in proc.stdout
    assert "eval.knn_top1 = " in proc.stdout
    assert read_run(tmp_path / "1")["config"]["protocol"] == {"name": "knn", "k": 5, "temperature": 0.1}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--protocol", "lineer"], "Did you mean 'linear'"),
        (
            ["--protocol", "knn", "--set", "k=0"],
            "--protocol knn --set k=0: k: expected a value greater than or equal to 1",
        ),
        (["--protocol", "knn", "--set", "kk=3"], "unknown parameter of evaluator 'knn'"),
        (["--protocol", "knn", "--set", "encoder.width=4"], "may change only dataset, augmentation, trainer"),
    ],
)
def test_bad_evaluation_requests_are_one_paragraph_and_record_nothing(pretrained, tmp_path, args, message):
    proc = CliRunner().invoke(cli, ["eval", str(pretrained), *args, "--runs-dir", str(tmp_path)])
    assert proc.exit_code == 2, proc.output
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_an_evaluation_that_fails_is_recorded_with_its_reason(pretrained, host, tmp_path):
    """A request that is valid but cannot run here (CUDA on a CPU machine)
    leaves a FAILED evaluation run that says why."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RunFailed) as failed:
        record_evaluation(pretrained, "knn", ["trainer.device=cuda"], host, runs_dir=tmp_path)
    rec = read_run(failed.value.record.run_dir)
    assert rec["run"]["status"] == "FAILED"
    assert "no CUDA device is available" in rec["info"]["failure"]
    assert rec["config"]["evaluates"]["run_id"] == pretrained.name


def test_a_checkpoint_file_can_be_evaluated_directly(pretrained, host, tmp_path):
    """RUN_DIR may be the checkpoint itself; the evaluation still names its run."""
    record = record_evaluation(
        pretrained / "checkpoint.pt", "knn", ["k=5", "trainer.progress=false"], host, runs_dir=tmp_path, name="direct"
    )
    rec = read_run(record.run_dir)
    assert rec["run"]["experiment"]["name"] == "direct"
    assert rec["config"]["evaluates"]["run_id"] == pretrained.name
    assert rec["config"]["evaluates"]["checkpoint"] == str((pretrained / "checkpoint.pt").resolve())
    assert 0.0 <= rec["run"]["result"]["eval.knn_top1"] <= 1.0


def test_evaluators_chosen_in_the_experiment_run_at_the_end_of_training(tiny, host, tmp_path):
    """The same protocols in an experiment's `evaluators`: their metrics at the
    last step (and at every eval_every), their plot kept once, at the end."""
    exp = tiny(
        "moco", "trainer.eval_every=3", 'evaluators=[{"name": "knn", "k": 10}, {"name": "linear_layers", "l2": 0.001}]'
    )
    record = record_run(exp, host, runs_dir=tmp_path)
    rec = read_run(record.run_dir)
    assert sorted(rec["run"]["artifacts"]) == ["checkpoint.pt", "layer_probe.png"]
    assert set(rec["run"]["result"]) == {
        "eval.knn_top1",
        "eval.layer.block1.linear_top1",
        "eval.layer.block2.linear_top1",
    }
    for name in rec["run"]["result"]:
        assert rec["metrics"][name]["steps"] == [3, 6]


def test_a_loaded_run_brings_its_trained_heads_for_evaluators_that_use_them(pretrained, host):
    """`sslx eval` rebuilds the whole objective: the encoder strictly, the rest
    (MoCo's heads, key encoder and queue here) as trained, where the shapes fit."""
    import torch

    from sslx.engine import checkpoint as ckpt
    from sslx.engine.evaluation import load_trained

    saved = ckpt.load(pretrained / "checkpoint.pt")["objective"]
    _, parts, _ = load_trained(pretrained / "checkpoint.pt", host)
    loaded = parts.objective.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    # state whose shape no longer fits (a smaller queue) keeps its fresh values; everything else still loads
    _, small, _ = load_trained(pretrained / "checkpoint.pt", host, ["objective.queue_size=32"])
    fresh = small.objective.state_dict()
    assert fresh["queue.features"].shape[0] == 32 != saved["queue.features"].shape[0]
    assert not torch.equal(fresh["queue.features"][:32], saved["queue.features"][:32])
    assert all(torch.equal(fresh[k], saved[k]) for k in saved if k != "queue.features")
