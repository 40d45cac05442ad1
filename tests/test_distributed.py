"""Every objective gives the same answer in two processes as in one.

Each shipped method trains for two steps through the real trainer, once in
this process and once in two gloo processes (DDP, SyncBatchNorm, each
process holding half of every global batch). After each step the loss (the
processes' mean), every parameter's gradient, the parameters and the
buffers (queues, memory banks, BatchNorm statistics) must equal the
single-process ones within float32 tolerance, and the two processes must
hold exactly the same parameters and buffers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import EXPERIMENTS, SSLX, read_run, tiny_overrides

import sslx
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine import trainer
from sslx.engine.trainer import MemoryRecorder, train
from sslx.plugins import load_plugins
from sslx.testing import run_in_processes

# one shipped experiment per objective
EXPERIMENT_OF = {
    "simclr": "simclr",
    "moco": "moco",
    "npid": "npid",
    "pirl": "pirl",
    "swav": "swav",
    "barlowtwins": "barlowtwins",
    "vicreg": "vicreg",
    "byol": "byol",
    "rotation": "rotation",
    "jigsaw": "jigsaw",
    "relpos": "relpos",
    "avc": "audio_video",
}
STEPS = 2


def experiment(name: str, host, *extra: str):
    sets = tiny_overrides(name) + [
        f"trainer.max_steps={STEPS}",
        "trainer.log_every=1",
        "evaluators=[]",
        "trainer.warmup_steps=0",
        "trainer.lr=0.001",
        "trainer.optimizer=sgd",
        "trainer.channels_last=false",
    ]  # CPU BatchNorm is less exact channels-last
    if name == "swav":  # prototypes frozen in step 1, trained in step 2
        sets.append("objective.freeze_prototypes_steps=1")
    if name == "barlowtwins":  # its loss is in the hundreds: a step of the same size needs a smaller rate
        sets.append("trainer.lr=0.00001")
    return resolve(
        apply_overrides(read_experiment(EXPERIMENTS / f"{name}.json"), sets + list(extra)), host, source=name
    )


class Capture:
    """After each optimizer step: the step's loss and the objective's
    gradients, parameters and buffers."""

    def __init__(self, parts_of):
        self.parts_of = parts_of
        self.steps: list[dict] = []

    @sslx.hookimpl
    def sslx_step_finished(self, run, step, output, lr):
        objective = self.parts_of["parts"].objective
        self.steps.append(
            {
                "loss": output.loss.detach().double(),
                "grads": {n: p.grad.detach().clone() for n, p in objective.named_parameters() if p.grad is not None},
                "params": {n: p.detach().clone() for n, p in objective.named_parameters()},
                "buffers": {n: b.detach().clone() for n, b in objective.named_buffers()},
            }
        )


def capture_training(name: str, *extra: str) -> list[dict]:
    """Train experiment ``name`` for STEPS steps in this process (or in the
    current process group) and return what :class:`Capture` saw."""
    host = load_plugins(strict=True)
    holder: dict = {}
    original = trainer.build

    def build(exp):
        holder["parts"] = original(exp)
        return holder["parts"]

    capture = Capture(holder)
    host.add_plugin(capture, "capture")
    trainer.build = build
    try:
        train(experiment(name, host, *extra), host, MemoryRecorder())
    finally:
        trainer.build = original
    return capture.steps


NO_SYNC_BN = "trainer.sync_batchnorm=false"


def worker(rank: int, out_dir: str, names: list[str]) -> None:
    torch.set_num_threads(1)
    for name in names:
        torch.save(capture_training(name), f"{out_dir}/{name}.rank{rank}.pt")
    torch.save(capture_training("simclr", NO_SYNC_BN), f"{out_dir}/simclr-nosync.rank{rank}.pt")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run_in_processes(worker, 2, str(out), list(EXPERIMENT_OF.values()))
    return out


def relative_errors(got: dict, want: dict) -> dict[str, float]:
    """Per tensor ``|got - want| / (|want| + 1e-3 * the largest |want| of the
    kind)`` in the Euclidean norm; the floor keeps tensors whose true value
    is about zero (a bias followed by BatchNorm gets no gradient) from
    comparing noise with noise."""
    floats = {k: v.double() for k, v in want.items() if v.is_floating_point()}
    scale = max((float(v.norm()) for v in floats.values()), default=0.0)
    return {k: float((got[k].double() - v).norm() / (v.norm() + 1e-3 * scale + 1e-30)) for k, v in floats.items()}


# Measured against a float64 run of the same step, the single-process float32
# gradients of the first convolutions are off by up to 1e-4 (relative), and
# in float64 the two-process gradients match to 1e-12: the tolerances leave
# a margin above float32 noise. Parameters inherit the gradients' noise
# where a step is large next to them (Barlow Twins' loss is in the hundreds).
GRAD_TOL, STATE_TOL, LOSS_TOL = 2e-3, 1e-4, 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(EXPERIMENT_OF))
def test_two_processes_give_the_single_process_answer(objective, two_processes):
    name = EXPERIMENT_OF[objective]
    single = capture_training(name)
    ranks = [torch.load(two_processes / f"{name}.rank{r}.pt") for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == STEPS
    for step, (one, *two) in enumerate(zip(single, *ranks), start=1):
        where = f"{objective}, step {step}"
        # the processes hold exactly the same model, queues and banks, and got the same averaged gradients
        for kind in ("params", "buffers", "grads"):
            assert two[0][kind].keys() == two[1][kind].keys() == one[kind].keys(), f"{where}: {kind} differ in names"
            for key, value in two[0][kind].items():
                assert torch.equal(value, two[1][kind][key]), (
                    f"{where}: {kind[:-1]} {key} differs between the processes"
                )
        loss = float((two[0]["loss"] + two[1]["loss"]) / 2)  # what the trainer logs: the processes' mean
        assert loss == pytest.approx(float(one["loss"]), rel=LOSS_TOL), where
        for kind, tol in (("grads", GRAD_TOL), ("params", STATE_TOL), ("buffers", STATE_TOL)):
            errors = relative_errors(two[0][kind], one[kind])
            worst = max(errors, key=errors.get)
            assert errors[worst] < tol, f"{where}: {kind[:-1]} {worst} is off by {errors[worst]:.2e} (relative)"


def test_without_sync_batchnorm_the_answer_depends_on_the_processes(two_processes):
    """The control: with per-process BatchNorm statistics the loss and the
    gradients differ from one process's, far beyond the tolerances above."""
    single = capture_training("simclr", NO_SYNC_BN)[0]
    ranks = [torch.load(two_processes / f"simclr-nosync.rank{r}.pt")[0] for r in range(2)]
    loss = float((ranks[0]["loss"] + ranks[1]["loss"]) / 2)
    assert abs(loss - float(single["loss"])) > 100 * LOSS_TOL * float(single["loss"])
    assert max(relative_errors(ranks[0]["grads"], single["grads"]).values()) > 10 * GRAD_TOL


# ----------------------------------------------------------------------------
# the core helpers, against explicit float64 computations


def collectives_worker(rank: int, out_dir: str) -> None:
    from torch import nn

    from sslx import distributed

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 5, generator=gen, dtype=torch.float64) * 3 + 1  # the global batch
    w = torch.randn(8, 3, 4, 5, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    bn = distributed.convert_sync_batchnorm(
        nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)), torch.device("cpu")
    ).double()
    with torch.no_grad():
        bn[0].weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
        bn[0].bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    mine = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
    y = bn(mine)
    (y * w[rank * 4 : (rank + 1) * 4]).sum().backward()
    z = mine.detach().flatten(1)[:, :3].clone().requires_grad_()  # gather: every row, gradient to mine
    everything = distributed.gather(z)
    (everything * torch.arange(1.0, 25.0, dtype=torch.float64).reshape(8, 3)).sum().backward()
    torch.manual_seed(5)
    draws = distributed.local_part(torch.randint(100, (8,)))
    torch.save(
        {
            "type": type(bn[0]).__name__,
            "y": y.detach(),
            "gx": mine.grad,
            "gw": bn[0].weight.grad,
            "gb": bn[0].bias.grad,
            "running": (bn[0].running_mean, bn[0].running_var),
            "gathered": everything.detach(),
            "gz": z.grad,
            "draws": draws,
        },
        f"{out_dir}/rank{rank}.pt",
    )


def test_global_batchnorm_gather_and_local_part_against_explicit_formulas(tmp_path):
    run_in_processes(collectives_worker, 2, str(tmp_path))
    r = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    assert r[0]["type"] == "GlobalBatchNorm"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 5, generator=gen, dtype=torch.float64) * 3 + 1
    w = torch.randn(8, 3, 4, 5, generator=gen, dtype=torch.float64)
    # batch normalisation over all 8 samples, written out: biased variance to normalise
    xs = x.clone().requires_grad_()
    mean = xs.mean(dim=(0, 2, 3), keepdim=True)
    var = ((xs - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    gamma = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = (xs - mean) / torch.sqrt(var + 1e-5) * gamma.view(1, 3, 1, 1) + beta.view(1, 3, 1, 1)
    (y * w).sum().backward()
    close = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([r[0]["y"], r[1]["y"]]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r[0]["gx"], r[1]["gx"]]), xs.grad, **close)
    torch.testing.assert_close(r[0]["gw"] + r[1]["gw"], gamma.grad, **close)  # DDP then averages the processes
    torch.testing.assert_close(r[0]["gb"] + r[1]["gb"], beta.grad, **close)
    n = 8 * 4 * 5  # running statistics: unbiased variance, momentum 0.3 from (0, 1)
    for rank in r:
        torch.testing.assert_close(rank["running"][0], 0.3 * mean.detach().flatten(), **close)
        torch.testing.assert_close(rank["running"][1], 0.7 + 0.3 * var.detach().flatten() * n / (n - 1), **close)
    # gather: both processes hold all rows in rank order; each row's gradient is the sum over processes
    rows = x.flatten(1)[:, :3]
    for rank in r:
        torch.testing.assert_close(rank["gathered"], rows, rtol=0, atol=0)
    weights = torch.arange(1.0, 25.0, dtype=torch.float64).reshape(8, 3)
    torch.testing.assert_close(torch.cat([r[0]["gz"], r[1]["gz"]]), 2 * weights, rtol=0, atol=0)
    # local_part: the processes' draws are the single-process draws, split
    torch.manual_seed(5)
    assert torch.equal(torch.cat([r[0]["draws"], r[1]["draws"]]), torch.randint(100, (8,)))


def test_a_global_batch_that_does_not_split_is_refused(tiny):
    from sslx.engine.trainer import _check_split
    from sslx.errors import UserError

    exp = tiny("simclr", "trainer.batch_size=30")
    with pytest.raises(
        UserError, match=r"trainer.batch_size \(30\) must split evenly over the 4 processes.*such as 32"
    ):
        _check_split(exp.trainer, 1, 4)
    _check_split(exp.trainer, 1, 2)


# ----------------------------------------------------------------------------
# whole runs: torchrun, sslx run --nproc, failures and resuming

# At the experiment's rate (0.06) this tiny model is chaotic: one process with 1 thread and with 2 threads
# (float sums in another order) already part ways by step 4. At 0.01 the curves are comparable.
RUN_SETS = [*tiny_overrides("simclr"), "trainer.channels_last=false", "trainer.log_every=1", "trainer.lr=0.01"]


def sets(*extra: str) -> list[str]:
    return [f"--set={s}" for s in (*RUN_SETS, *extra)]


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_torchrun_gives_one_sacred_run_with_the_losses_of_one_process(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "sslx",
            "run",
            str(EXPERIMENTS / "simclr.json"),
            "--runs-dir",
            str(tmp_path / "two"),
            *sets(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [SSLX, "run", str(EXPERIMENTS / "simclr.json"), "--runs-dir", str(tmp_path / "one"), *sets()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.stdout.count("COMPLETED") == 1 and two.stdout.count("sslx 0.") == 1, "rank 0 alone reports"
    (run_dir,) = run_dirs(tmp_path / "two")  # exactly one Sacred run
    record, single = read_run(run_dir), read_run(run_dirs(tmp_path / "one")[0])
    assert record["run"]["status"] == "COMPLETED"
    assert record["info"]["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "sync_batchnorm": True,
        "batch_per_process": 16,
    }
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "last.pt").exists()
    losses, reference = record["metrics"]["train.loss"], single["metrics"]["train.loss"]
    assert losses["steps"] == reference["steps"] == list(range(1, 7))
    assert losses["values"] == pytest.approx(reference["values"], rel=1e-4)  # the same data, the same steps
    assert "eval.knn_top1" in record["run"]["result"]


def processes_of(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the worker processes a launcher started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_text().split("\0") if "=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher.pid and "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


def start_and_kill(runs: Path, rank: int | None) -> subprocess.CompletedProcess:
    """Start a long 2-process run, SIGKILL process ``rank`` once the first
    checkpoint is written (or, with None, press Ctrl-C: SIGINT to the
    launcher's process group), and return what the launcher said."""
    launcher = subprocess.Popen(
        [
            SSLX,
            "run",
            str(EXPERIMENTS / "simclr.json"),
            "--nproc",
            "2",
            "--runs-dir",
            str(runs),
            *sets("trainer.max_steps=400", "trainer.checkpoint_every=4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (runs / "1" / "last.pt").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.05)
    if rank is None:
        os.killpg(launcher.pid, signal.SIGINT)
    else:
        os.kill(processes_of(launcher)[rank], signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_process_fails_the_run_which_resumes(tmp_path, killed):
    """Another process dying makes rank 0 record the run as failed; rank 0
    dying makes the launcher record it. Either way it resumes."""
    stopped = start_and_kill(tmp_path, killed)
    assert stopped.returncode == 1
    assert f"the distributed run stopped: process {killed} was killed by SIGKILL" in stopped.stderr
    assert f"sslx run --resume {tmp_path / '1'} --nproc 2" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    failed = read_run(tmp_path / "1")
    assert failed["run"]["status"] == "FAILED"
    if killed == 1:  # rank 0 records it: it either lost its peer in a collective or got the launcher's SIGTERM first
        failure = failed["info"]["failure"]
        assert "process 0 lost contact with the other processes" in failure or "stopped by the launcher" in failure
    else:
        assert "process 0 was killed by SIGKILL" in failed["info"]["failure"]
        assert "ended before it could record why" in failed["run"]["fail_trace"][0]

    resumed = subprocess.run(
        [
            SSLX,
            "run",
            "--resume",
            str(tmp_path / "1"),
            "--nproc",
            "2",
            "--runs-dir",
            str(tmp_path),
            "--set=trainer.max_steps=10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in run_dirs(tmp_path)] == ["1", "2"]
    record = read_run(tmp_path / "2")
    assert record["run"]["status"] == "COMPLETED"
    start = record["info"]["resumed_at_step"]
    assert start >= 4 and start % 4 == 0
    assert record["metrics"]["train.loss"]["steps"] == list(range(1, 11))  # the steps before it from the checkpoint


@pytest.mark.slow
def test_ctrl_c_interrupts_every_process_and_says_how_to_resume(tmp_path):
    stopped = start_and_kill(tmp_path, None)
    assert stopped.returncode == 130
    assert (
        f"INTERRUPTED, recorded in {tmp_path / '1'}. Continue it with: sslx run --resume {tmp_path / '1'} --nproc 2"
        in stopped.stderr
    )
    assert "SignalException" not in stopped.stderr
    assert read_run(tmp_path / "1")["run"]["status"] == "INTERRUPTED"
    assert (tmp_path / "1" / "last.pt").exists()
