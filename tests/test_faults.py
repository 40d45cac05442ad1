"""Kill -9 of the training process at chosen moments, with the real `sslx
run` command: between checkpoints, just after one, and during the final
evaluation. Each killed run reads as DIED, keeps every point logged up to
its last checkpoint, and `sslx run --resume` ends with the weights and
every logged metric of a run that never stopped (benchmarks/faults.py does
the same at random moments)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from benchmarks import faults

pytestmark = pytest.mark.slow

# A plugin the killed processes load (through PYTHONPATH): SIGKILL at a step, or in an evaluator.
FAULT_PLUGIN = '''
import os
import signal
from pathlib import Path

from pydantic import Field

import sslx


@sslx.hookimpl
def sslx_step_finished(step):
    if str(step) == os.environ.get("SSLX_FAULT_KILL_AT_STEP"):
        os.kill(os.getpid(), signal.SIGKILL)


class KillOnceParams(sslx.Params):
    marker: str = Field(description="The file that says the kill happened already.")


class KillOnce(sslx.Evaluator):
    """Kills its own process with SIGKILL the first time it evaluates (creating marker), then scores 1."""

    name = "kill_once"
    Params = KillOnceParams

    def evaluate(self, ctx):
        marker = Path(self.params.marker)
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"survived": 1.0}


@sslx.hookimpl
def sslx_register_evaluators(register):
    register(KillOnce)
'''


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The fault plugin installed where the processes find it, the shrunk
    experiment with its evaluators (kNN, then the one that can kill), and
    the uninterrupted run to compare with."""
    root = tmp_path_factory.mktemp("faults")
    site = root / "site"
    (site / "sslx_fault_injection-1.0.dist-info").mkdir(parents=True)
    (site / "sslx_fault_injection.py").write_text(textwrap.dedent(FAULT_PLUGIN))
    (site / "sslx_fault_injection-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sslx-fault-injection\nVersion: 1.0\n"
    )
    (site / "sslx_fault_injection-1.0.dist-info" / "entry_points.txt").write_text(
        "[sslx]\nfault_injection = sslx_fault_injection\n"
    )
    marker = root / "killed-once"
    evaluators = [{"name": "knn", "k": 20}, {"name": "kill_once", "marker": str(marker)}]
    sets = [s for s in faults.SETS if not s.startswith(("trainer.max_steps", "dataset.test_size", "evaluators."))]
    sets += ["trainer.max_steps=16", "dataset.test_size=256", f"evaluators={json.dumps(evaluators)}"]
    env = {"PYTHONPATH": str(site)}
    marker.touch()  # the uninterrupted run's evaluator does not kill
    reference = faults.reference_run(root, sets, env)
    return {"root": root, "sets": sets, "env": env, "marker": marker, "reference": reference}


def check(outcome: faults.Outcome, where: str, resumed: bool = True) -> None:
    assert outcome.killed_at == where, outcome
    assert outcome.shown_dead, "the killed run still reads as RUNNING"
    assert outcome.resumed == resumed and outcome.identical, outcome.problems
    assert outcome.points_lost == 0 and outcome.duplicates == 0


@pytest.mark.parametrize(
    "step,where",
    [(1, "before the first checkpoint"), (7, "after step 5's checkpoint"), (11, "after step 10's checkpoint")],
)
def test_killed_before_between_and_just_after_checkpoints(harness, step, where):
    """Step 1 comes before any checkpoint (the run reads as DIED all the
    same, and starts again); step 7 is two steps past the checkpoint of step
    5; step 11 the step right after the checkpoint of step 10 (whose points
    it must keep)."""
    h = harness
    outcome = faults.trial(
        "train",
        h["reference"],
        h["root"] / f"step{step}",
        lambda proc, runs: None,
        h["sets"],
        env={**h["env"], "SSLX_FAULT_KILL_AT_STEP": str(step)},
        resume_env=h["env"],
    )
    check(outcome, where, resumed=step > 5)


def test_killed_during_the_final_evaluation(harness):
    """The kNN evaluator has run, the second evaluator kills the process: the
    final checkpoint was kept first, so the resume only evaluates, and the
    run ends as if nothing happened."""
    h = harness
    h["marker"].unlink()
    outcome = faults.trial(
        "eval",
        h["reference"],
        h["root"] / "eval",
        lambda proc, runs: None,
        h["sets"],
        env=h["env"],
        resume_env=h["env"],
    )
    check(outcome, "after step 16's checkpoint, during the final evaluation")
    assert Path(h["marker"]).exists()
