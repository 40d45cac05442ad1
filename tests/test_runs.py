"""Recorded runs end to end: the shipped experiments, Sacred records,
checkpoints, resume, divergence, interruption and lifecycle hooks."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import torch
from helpers import EXPERIMENTS, SSLX, read_run, tiny_overrides

import sslx
from sslx.engine import checkpoint as ckpt
from sslx.records import RunFailed, record_run

TRAIN_METRICS = {"train.loss", "train.lr", "train.views_per_s", "collapse.embedding_std"}


@pytest.mark.parametrize("method", sorted(p.stem for p in EXPERIMENTS.glob("*.json")))
def test_shipped_experiment_runs_end_to_end(method, tmp_path):
    """`sslx run experiments/<method>.json` with a few steps: a COMPLETED
    Sacred run with config, metrics, plugin versions, resource and checkpoint."""
    from click.testing import CliRunner

    from sslx.cli import cli

    sets = [arg for s in tiny_overrides(method) for arg in ("--set", s)]
    proc = CliRunner().invoke(
        cli,
        [
            "run",
            str(EXPERIMENTS / f"{method}.json"),
            "--runs-dir",
            str(tmp_path),
            "--name",
            f"tiny-{method}",
            "--comment",
            "from the test suite",
            *sets,
        ],
    )
    assert proc.exit_code == 0, proc.output
    run_dir = tmp_path / "1"
    assert f"Run 1 COMPLETED: {run_dir}" in proc.stdout
    rec = read_run(run_dir)
    run = rec["run"]
    assert run["status"] == "COMPLETED"
    assert run["experiment"]["name"] == f"tiny-{method}" and run["meta"]["comment"] == "from the test suite"
    # the result is the final evaluation: every metric printed, logged at the last step, in range
    result, evaluators = run["result"], rec["config"]["evaluators"]
    assert bool(result) == bool(evaluators) and all(k.startswith("eval.") for k in result)
    if evaluators and evaluators[0]["name"] == "knn":
        assert "eval.knn_top1" in result and 0.0 <= result["eval.knn_top1"] <= 1.0
    for name, value in result.items():
        assert f"{name} = " in proc.stdout
        assert rec["metrics"][name]["steps"][-1] == 6 and rec["metrics"][name]["values"][-1] == value
    assert run["artifacts"] == ["checkpoint.pt"]
    assert any(res[0].endswith(f"{method}.json") for res in run["resources"])
    deps = run["experiment"]["dependencies"]
    owner = rec["info"]["components"]["objective"]["distribution"]
    assert f"{owner}==0.1.0" in deps and "sslx-datasets==0.1.0" in deps and "sslx==0.1.0" in deps
    assert rec["config"]["trainer"]["max_steps"] == 6
    metrics = rec["metrics"]
    assert TRAIN_METRICS <= set(metrics)
    assert metrics["train.loss"]["steps"] == [2, 4, 6]
    assert all(v > 0 for v in metrics["collapse.embedding_std"]["values"])
    # the final checkpoint holds the whole objective and the config, and yields a plain backbone
    state = ckpt.load(run_dir / "checkpoint.pt")
    assert state["step"] == 6 and state["config"] == rec["config"]
    assert ckpt.encoder_state(state) and all(not k.startswith("encoder.") for k in ckpt.encoder_state(state))
    assert not (run_dir / ckpt.LAST).exists()


# Every objective's own state (banks, EMA targets, counters) surviving a checkpoint bit for bit is checked by the
# conformance kit (check_objective); here the trainer's part, through two methods with the most state to restore:
# MoCo's queue, key encoder and momentum schedule, SwAV's prototypes, queue and freezing schedule.
@pytest.mark.parametrize("method", ["moco", "swav"])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(method, tiny, host, tmp_path):
    """A run that crashes after step 5 (last checkpoint at step 4) and is
    resumed ends bit-identical to a run that never stopped: the method's
    state (queue, prototypes, EMA target, step counters), the momentum
    schedules, the data order and the metric curve survive the restart."""
    exp = tiny(method, "trainer.max_steps=8", "trainer.checkpoint_every=4", "trainer.num_workers=1")
    full = record_run(exp, host, runs_dir=tmp_path / "full")

    class Crash:
        @sslx.hookimpl
        def sslx_step_finished(self, step):
            if step == 5:
                raise RuntimeError("simulated crash")

    host.add_plugin(Crash(), "crash")
    with pytest.raises(RunFailed) as failed:
        record_run(exp, host, runs_dir=tmp_path / "crashed")
    host.remove_plugin("crash")
    crashed_dir = failed.value.record.run_dir
    crashed = read_run(crashed_dir)
    assert crashed["run"]["status"] == "FAILED" and "simulated crash" in crashed["run"]["fail_trace"][-1]
    assert "simulated crash" in crashed["info"]["failure"]
    assert ckpt.load(crashed_dir / ckpt.LAST)["step"] == 4

    resumed = record_run(exp, host, runs_dir=tmp_path / "crashed", resume_from=ckpt.find_checkpoint(crashed_dir))
    rec = read_run(resumed.run_dir)
    assert rec["run"]["status"] == "COMPLETED" and rec["info"]["resumed_at_step"] == 4
    assert rec["info"]["resumed_from"].endswith("last.pt")
    # its records hold the whole curve, point for point the uninterrupted run's (throughput aside: it is timed)
    uninterrupted = read_run(full.run_dir)["metrics"]
    assert rec["metrics"].keys() == uninterrupted.keys()
    for name in set(uninterrupted) - {"train.views_per_s"}:
        assert rec["metrics"][name]["steps"] == uninterrupted[name]["steps"], name
        assert rec["metrics"][name]["values"] == uninterrupted[name]["values"], name
    a = ckpt.load(full.run_dir / "checkpoint.pt")
    b = ckpt.load(resumed.run_dir / "checkpoint.pt")
    assert a["objective"].keys() == b["objective"].keys()
    for key in a["objective"]:
        assert torch.equal(a["objective"][key], b["objective"][key]), key
    assert full.result == resumed.result


def test_resume_refuses_a_different_experiment(tiny, tmp_path):
    exp = tiny("simclr", "trainer.max_steps=3", "trainer.checkpoint_every=2")
    from sslx.plugins import load_plugins

    host = load_plugins()
    record = record_run(exp, host, runs_dir=tmp_path)
    from click.testing import CliRunner

    from sslx.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(EXPERIMENTS / "simclr.json"),
            "--runs-dir",
            str(tmp_path),
            "--resume",
            str(record.run_dir),
            *[a for s in tiny_overrides("simclr") for a in ("--set", s)],
            "--set",
            "objective.temperature=0.3",
        ],
    )
    assert result.exit_code == 2
    assert "cannot resume" in result.output and "objective" in result.output and "Traceback" not in result.output


class NaNObjective(sslx.Objective):
    """Diverges on its third step, for tests."""

    name = "nan_at_three"

    def __init__(self, params, encoder, info):
        super().__init__(params, encoder, info)
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        z = self.encoder(batch.views[0])
        loss = z.pow(2).mean()
        if self.calls == 3:
            loss = loss * float("nan")
        return sslx.ObjectiveOutput(loss=loss, embeddings=z.detach())


class NaNPlugin:
    @sslx.hookimpl
    def sslx_register_objectives(self, register):
        register(NaNObjective)


@pytest.mark.parametrize("log_every", [2, 100])  # the step does not wait for the host: found at a checkpoint too
def test_nan_loss_stops_the_run_keeps_the_last_good_checkpoint_and_records_why(tiny, host, tmp_path, log_every):
    host.add_plugin(NaNPlugin(), "nan")
    exp = tiny(
        "simclr", 'objective={"name": "nan_at_three"}', "trainer.checkpoint_every=2", f"trainer.log_every={log_every}"
    )
    with pytest.raises(RunFailed) as failed:
        record_run(exp, host, runs_dir=tmp_path)
    assert isinstance(failed.value.reason, sslx.UserError)
    message = str(failed.value.reason)
    assert "the loss became nan at step 3" in message
    assert "last good checkpoint (all values finite) is step 2" in message
    assert f"sslx run --resume {failed.value.record.run_dir} --set trainer.lr=" in message
    run_dir = failed.value.record.run_dir
    rec = read_run(run_dir)
    assert rec["run"]["status"] == "FAILED"
    assert "the loss became nan at step 3" in rec["info"]["failure"]
    assert ckpt.load(run_dir / ckpt.LAST)["step"] == 2


def test_a_model_that_diverges_with_a_finite_loss_is_never_checkpointed_and_resumes_with_a_lower_lr(
    tiny, host, tmp_path
):
    """MoCo at a constant lr of 1e4: after about 20 steps BatchNorm's running
    variance overflows while the loss is still finite. The run stops there;
    the checkpoint it kept is finite; it resumes from it with a lower
    learning rate (a change a resume allows) and completes; `sslx eval`
    refuses a checkpoint that is not finite."""
    from click.testing import CliRunner

    from sslx.cli import cli

    exp = tiny(
        "moco",
        "trainer.lr=1e4",
        "trainer.warmup_steps=0",
        'trainer.schedule="constant"',
        "trainer.max_steps=24",
        "trainer.checkpoint_every=2",
        "trainer.log_every=100",
        "evaluators=[]",
    )
    with pytest.raises(RunFailed) as failed:
        record_run(exp, host, runs_dir=tmp_path)
    message, run_dir = str(failed.value.reason), failed.value.record.run_dir
    assert isinstance(failed.value.reason, sslx.UserError) and "so the run stopped" in message
    state = ckpt.load(run_dir / ckpt.LAST)
    assert not [k for k, v in state["objective"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert f"last good checkpoint (all values finite) is step {state['step']}" in message

    resumed = CliRunner().invoke(
        cli, ["run", "--resume", str(run_dir), "--runs-dir", str(tmp_path), "--set", "trainer.lr=0.06"]
    )
    assert resumed.exit_code == 0, resumed.output
    rec = read_run(tmp_path / "2")
    assert rec["run"]["status"] == "COMPLETED" and rec["config"]["trainer"]["lr"] == 0.06
    assert rec["info"]["resumed_at_step"] == state["step"]

    state["objective"][
        next(k for k in state["objective"] if k.startswith("encoder.") and k.endswith("running_var"))
    ].fill_(float("inf"))
    torch.save(state, tmp_path / "bad.pt")
    refused = CliRunner().invoke(
        cli, ["eval", str(tmp_path / "bad.pt"), "--protocol", "knn", "--runs-dir", str(tmp_path)]
    )
    assert refused.exit_code == 2 and "holds NaN or infinite values" in refused.output
    assert "Traceback" not in refused.output


def test_bad_data_is_found_before_the_first_step(tiny, host, tmp_path):
    """An image folder with an unreadable file trains only with
    skip_unreadable (counted in the run's info); a missing test folder stops
    the run before its first step, not after training."""
    import numpy as np
    from PIL import Image
    from skimage import data as photos

    train = tmp_path / "train"
    for i in range(40):
        photo, cls = (photos.astronaut(), "person") if i % 2 else (photos.chelsea(), "cat")
        (train / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(photo[i * 4 : i * 4 + 64, i * 4 : i * 4 + 64])).save(
            train / cls / f"{i}.png"
        )
    (train / "cat" / "empty.jpg").write_bytes(b"")
    folder = {
        "name": "image_folder",
        "root": str(train),
        "test_root": str(train),
        "labeled": True,
        "skip_unreadable": True,
    }
    sets = [
        f"dataset={json.dumps(folder)}",
        "augmentation.size=32",
        "trainer.batch_size=8",
        "trainer.max_steps=2",
        "evaluators.0.k=5",
    ]
    record = record_run(tiny("simclr", *sets), host, runs_dir=tmp_path / "runs")
    assert read_run(record.run_dir)["info"]["data"]["skipped_files"] == {"train": 1, "test": 1}

    missing = {**folder, "test_root": str(tmp_path / "nowhere")}
    with pytest.raises(RunFailed) as failed:
        record_run(tiny("simclr", *sets, f"dataset={json.dumps(missing)}"), host, runs_dir=tmp_path / "runs")
    assert "dataset.test_root" in str(failed.value.reason) and "nowhere" in str(failed.value.reason)
    rec = read_run(failed.value.record.run_dir)
    assert "train.loss" not in (rec["metrics"] or {}) and not (failed.value.record.run_dir / ckpt.LAST).exists()

    unlabeled = {**folder, "labeled": False}  # the kNN evaluator needs labels: found before training too
    with pytest.raises(RunFailed) as failed:
        record_run(tiny("simclr", *sets, f"dataset={json.dumps(unlabeled)}"), host, runs_dir=tmp_path / "runs")
    assert "evaluator 'knn' needs labeled train and test splits" in str(failed.value.reason)
    assert "train.loss" not in (read_run(failed.value.record.run_dir)["metrics"] or {})


def test_cli_reports_a_failed_run_in_one_paragraph(tmp_path):
    """Missing dataset files: the run is recorded as FAILED with the reason,
    and the CLI says where it looked and how to install, without a traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    sets = [a for s in tiny_overrides("simclr") for a in ("--set", s)]
    proc = subprocess.run(
        [
            SSLX,
            "run",
            str(EXPERIMENTS / "simclr.json"),
            "--runs-dir",
            str(tmp_path / "runs"),
            *sets,
            "--set",
            f"dataset.root={empty}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"Fashion-MNIST files not found: looked in {empty}" in proc.stderr
    assert "apt-get install dataset-fashion-mnist" in proc.stderr and "SSLX_FASHION_MNIST_DIR" in proc.stderr
    run_dir = tmp_path / "runs" / "1"
    assert f"Run 1 FAILED, recorded in {run_dir}" in proc.stderr
    assert read_run(run_dir)["run"]["status"] == "FAILED"
    assert "Fashion-MNIST files not found" in read_run(run_dir)["info"]["failure"]


def test_lifecycle_hooks_fire_in_order(tiny, host, tmp_path):
    calls = []

    class Observer:
        @sslx.hookimpl
        def sslx_run_started(self, run):
            calls.append(("started", run.config["objective"]["name"], run.run_dir is not None))

        @sslx.hookimpl
        def sslx_step_finished(self, run, step, output, lr):
            calls.append(("step", step, bool(torch.isfinite(output.loss)), lr > 0))
            run.log_scalar("observer.step", step, step)

        @sslx.hookimpl
        def sslx_run_finished(self, run, status, result):
            calls.append(("finished", status, sorted(result)))

    host.add_plugin(Observer(), "observer")
    record = record_run(tiny("simclr", "trainer.max_steps=3"), host, runs_dir=tmp_path)
    assert calls == [
        ("started", "simclr", True),
        ("step", 1, True, True),
        ("step", 2, True, True),
        ("step", 3, True, True),
        ("finished", "COMPLETED", ["eval.knn_top1"]),
    ]
    assert read_run(record.run_dir)["metrics"]["observer.step"]["values"] == [1, 2, 3]


def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(tiny, host, tmp_path):
    """The first SIGINT finishes the current step, writes a checkpoint and
    records the run as INTERRUPTED; the run can then be resumed."""

    class Interrupt:
        @sslx.hookimpl
        def sslx_step_finished(self, step):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    host.add_plugin(Interrupt(), "interrupt")
    with pytest.raises(RunFailed) as stopped:
        record_run(tiny("simclr"), host, runs_dir=tmp_path)
    assert isinstance(stopped.value.reason, KeyboardInterrupt)
    run_dir = stopped.value.record.run_dir
    assert read_run(run_dir)["run"]["status"] == "INTERRUPTED"
    assert ckpt.load(run_dir / ckpt.LAST)["step"] == 2


def test_the_plugin_written_in_the_docs_trains(tiny, host, tmp_path):
    """docs/plugins.md's complete method plugin, registered in-process, trains
    and is recorded like any bundled method."""
    import re
    import types

    from helpers import REPO

    text = (REPO / "docs" / "plugins.md").read_text()
    source = re.search(r"`src/sslx_mymethod/__init__.py`:\n\n```python\n(.*?)```", text, re.S).group(1)
    module = types.ModuleType("sslx_mymethod")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    host.add_plugin(module, "mymethod")
    record = record_run(tiny("simclr", 'objective={"name": "mymethod", "temperature": 0.2}'), host, runs_dir=tmp_path)
    rec = read_run(record.run_dir)
    assert rec["run"]["status"] == "COMPLETED"
    assert rec["config"]["objective"] == {"name": "mymethod", "temperature": 0.2}
    assert rec["info"]["components"]["objective"]["plugin"] == "mymethod"


def test_cli_resume_continues_a_finished_run_with_its_recorded_config(tmp_path):
    """`sslx run --resume RUN_DIR` needs no experiment file: it takes the
    run's recorded config, name and tags; trainer.max_steps may grow."""
    from click.testing import CliRunner

    from sslx.cli import cli

    sets = [a for s in tiny_overrides("simclr") for a in ("--set", s)]
    first = CliRunner().invoke(
        cli,
        [
            "run",
            str(EXPERIMENTS / "simclr.json"),
            "--runs-dir",
            str(tmp_path),
            *sets,
            "--set",
            "trainer.max_steps=4",
            "--name",
            "short",
            "--tag",
            "sweep=s1",
            "--tag",
            "point=0",
        ],
    )
    assert first.exit_code == 0, first.output
    resume = ["run", "--resume", str(tmp_path / "1"), "--runs-dir", str(tmp_path), "--set", "trainer.max_steps=6"]
    bad = CliRunner().invoke(cli, [*resume, "--tag", "point"])
    assert bad.exit_code == 2 and "--tag" in bad.output and "KEY=VALUE" in bad.output
    second = CliRunner().invoke(cli, [*resume, "--tag", "point=7"])
    assert second.exit_code == 0, second.output
    assert read_run(tmp_path / "1")["info"]["tags"] == {"sweep": "s1", "point": "0"}
    assert read_run(tmp_path / "2")["info"]["tags"] == {"sweep": "s1", "point": "7"}  # kept, and the new one wins
    assert f"Run 2 COMPLETED: {tmp_path / '2'}" in second.output
    rec = read_run(tmp_path / "2")
    assert rec["run"]["experiment"]["name"] == "short"
    assert rec["info"]["resumed_at_step"] == 4 and rec["info"]["resumed_from"].endswith("checkpoint.pt")
    assert rec["metrics"]["train.loss"]["steps"] == [2, 4, 6]  # steps 2 and 4 from the checkpoint it continues
    assert ckpt.load(tmp_path / "2" / "checkpoint.pt")["step"] == 6
    # a run that completed all its steps has nothing to continue: refused, saying what to do instead
    again = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "2"), "--runs-dir", str(tmp_path)])
    assert again.exit_code == 2 and "nothing to continue" in again.stderr and "sslx eval" in again.stderr
    assert not (tmp_path / "3").exists()
