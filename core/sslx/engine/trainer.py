"""The trainer: builds a run's components, trains, evaluates, checkpoints.

It knows nothing about any method (the objective computes the loss and owns
its state) and nothing about Sacred (it writes through a :class:`Recorder`).
``train`` reads top to bottom in the phases of a run.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import sslx
from sslx import distributed
from sslx.components import (
    Augmentation,
    Batch,
    Dataset,
    Encoder,
    EvalContext,
    Evaluator,
    Objective,
    ObjectiveOutput,
    PairSampler,
    TrainInfo,
)
from sslx.config import ResolvedExperiment, TrainerParams
from sslx.engine import checkpoint as ckpt
from sslx.engine.data import DeviceBatches, ViewDataset, train_loader, worker_user_error
from sslx.engine.share import CoreShare, auto_workers
from sslx.errors import ProcessStopped, TrainingDiverged, UserError

if TYPE_CHECKING:
    from sslx.plugins import PluginHost


M = TypeVar("M", bound=torch.nn.Module)


class Recorder(Protocol):
    """Where a run's records go (Sacred in :mod:`sslx.records`)."""

    run_dir: Path | None

    def log_scalar(self, name: str, value: float, step: int) -> None: ...

    def add_artifact(self, path: Path, name: str) -> None: ...

    def set_info(self, key: str, value: Any) -> None: ...

    def flush(self) -> None:
        """Make everything recorded so far durable (called after each checkpoint)."""


@dataclass
class MemoryRecorder:
    """A recorder that keeps metrics in memory (tests, notebooks)."""

    run_dir: Path | None = None
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.metrics.setdefault(name, []).append((step, float(value)))

    def add_artifact(self, path: Path, name: str) -> None:
        self.artifacts[name] = path

    def set_info(self, key: str, value: Any) -> None:
        self.info[key] = value

    def flush(self) -> None:
        pass


class NullRecorder:
    """The recorder of processes other than rank 0 under DDP: they keep nothing."""

    run_dir: Path | None = None

    def log_scalar(self, name: str, value: float, step: int) -> None:
        pass

    def add_artifact(self, path: Path, name: str) -> None:
        pass

    def set_info(self, key: str, value: Any) -> None:
        pass

    def flush(self) -> None:
        pass


class History:
    """A recorder in front of the run's recorder that keeps every metric point,
    so that each checkpoint carries the curve up to its step: a resumed run
    logs those points again first, and its records hold the whole curve,
    the same as a run that never stopped."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.run_dir = recorder.run_dir
        self.points: dict[str, list[list[float]]] = {}

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.points.setdefault(name, []).append([step, float(value)])
        self.recorder.log_scalar(name, value, step)

    def add_artifact(self, path: Path, name: str) -> None:
        self.recorder.add_artifact(path, name)

    def set_info(self, key: str, value: Any) -> None:
        self.recorder.set_info(key, value)

    def flush(self) -> None:
        self.recorder.flush()

    def replay(self, points: dict[str, list[list[float]]]) -> None:
        """Log the points a checkpoint carries (the runs this one continues)."""
        for name, series in points.items():
            for step, value in series:
                self.log_scalar(name, value, int(step))


@dataclass
class RunHandle:
    """The run as lifecycle hooks see it (see :class:`sslx.hookspecs.RunContext`)."""

    config: dict[str, Any]
    recorder: Recorder
    run_dir: Path | None = None

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.recorder.log_scalar(name, value, step)


@dataclass
class Parts:
    """The built components of a run."""

    dataset: Dataset
    augmentation: Augmentation
    sampler: PairSampler
    encoder: Encoder
    objective: Objective
    train_size: int
    total_steps: int


# ----------------------------------------------------------------------------
# building blocks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "trainer.device is 'cuda' but no CUDA device is available: set trainer.device to 'auto' or 'cpu'."
        )
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def total_steps(t: TrainerParams, train_size: int, group_size: int = 1) -> int:
    """Optimizer steps of a run over ``train_size`` items, each giving ``group_size`` samples."""
    if t.batch_size % group_size:
        raise UserError(
            f"trainer.batch_size ({t.batch_size}) must be a multiple of the {group_size} samples the sampler "
            f"draws from each item: set trainer.batch_size to {max(1, t.batch_size // group_size) * group_size}."
        )
    per_epoch = train_size // (t.batch_size // group_size)
    if per_epoch == 0:
        raise UserError(
            f"trainer.batch_size ({t.batch_size}) is larger than the training split ({train_size} items"
            f"{f' of {group_size} samples' if group_size > 1 else ''}): lower trainer.batch_size or use more data."
        )
    steps = per_epoch * t.epochs
    return min(steps, t.max_steps) if t.max_steps else steps


def lr_at(t: TrainerParams, step: int, total: int) -> float:
    """Learning rate for optimizer step ``step`` (counting from 0)."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
    final = t.lr * t.final_lr_ratio
    return final + (t.lr - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, t: TrainerParams) -> torch.optim.Optimizer:
    """Weight decay on weights only: biases and normalisation parameters are exempt."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, fused=t.fused_optimizer or None)
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.momentum, 0.999), fused=t.fused_optimizer or None)


def to_device(module: M, device: torch.device, channels_last: bool) -> M:
    """``module`` on ``device``, its 4-d weights in channels-last layout when asked."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings: about 1/sqrt(D) when
    healthy, 0 when collapsed to one vector."""
    z = F.normalize(embeddings.detach().float(), dim=1)
    return float(z.std(dim=0).mean())


def build(exp: ResolvedExperiment) -> Parts:
    """Instantiate the components of an experiment (on the CPU)."""
    info, params = exp.components["dataset"]
    dataset: Dataset = info.build(params)
    split = dataset.split("train")
    info, params = exp.components["augmentation"]
    augmentation: Augmentation = info.build(params, split.info)
    info, params = exp.components["sampler"]
    sampler: PairSampler = info.build(params)
    views_info = replace(split.info, channels=augmentation.out_channels)
    info, params = exp.components["encoder"]
    encoder: Encoder = info.build(params, views_info)
    steps = total_steps(exp.trainer, len(split), sampler.group_size)
    train_info = TrainInfo(
        data=views_info,
        num_views=sampler.num_views,
        batch_size=exp.trainer.batch_size,
        total_steps=steps,
        dataset_size=len(split),
        group_size=sampler.group_size,
    )
    info, params = exp.components["objective"]
    objective: Objective = info.build(params, encoder, train_info)
    return Parts(dataset, augmentation, sampler, encoder, objective, len(split), steps)


def eval_context(exp: ResolvedExperiment, parts: Parts, device: torch.device) -> EvalContext:
    """The context the experiment's evaluators run in, on ``parts.encoder``."""
    t = exp.trainer
    return EvalContext(
        encoder=parts.encoder,
        dataset=parts.dataset,
        augmentation=parts.augmentation,
        device=device,
        batch_size=t.eval_batch_size,
        num_workers=auto_workers(t.num_workers),
        progress=t.progress,
        memory_format=torch.channels_last if t.channels_last else torch.contiguous_format,
        seed=exp.seed,
        objective=parts.objective,
    )


def run_evaluators(
    evaluators: list[tuple[Any, Any]],
    ctx: EvalContext,
    recorder: Recorder,
    step: int,
    keep_files: bool = True,
) -> dict[str, float]:
    """Run ``(info, params)`` evaluators in one context (they share its feature
    cache); log their metrics with the ``eval.`` prefix at ``step`` and, with
    ``keep_files``, record the files they wrote as artifacts. Returns the metrics."""
    metrics: dict[str, float] = {}
    # Sacred copies artifacts into the run; a recorder without a run folder keeps the paths, so the files stay
    keep_folder = keep_files and recorder.run_dir is None
    ctx.artifacts_dir = Path(tempfile.mkdtemp(prefix="sslx-eval-"))
    try:
        for info, params in evaluators:
            for name, value in info.build(params).evaluate(ctx).items():
                metrics[f"eval.{name}"] = float(value)
                recorder.log_scalar(f"eval.{name}", float(value), step)
        if keep_files:
            for name, path in ctx.artifacts.items():
                if path.exists():
                    recorder.add_artifact(path, name)
    finally:
        if not keep_folder:
            shutil.rmtree(ctx.artifacts_dir, ignore_errors=True)
    return metrics


@contextmanager
def _graceful_interrupt(enabled: bool = True) -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a request to stop at the next step boundary
    (with a checkpoint); a second one interrupts at once. Not under a
    launcher, which passes Ctrl-C on to every process: they stop at once, and
    the run resumes from its last periodic checkpoint."""
    flag = {"stop": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        print("\nsslx: stopping after this step (Ctrl-C again to abort at once)", flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _state(
    step: int,
    parts: Parts,
    optimizer: torch.optim.Optimizer,
    exp: ResolvedExperiment,
    history: History,
    window: _Window,
) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": 1,
        "sslx_version": sslx.__version__,
        "step": step,
        "objective": parts.objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "config": exp.config,
        "metrics": {name: [list(p) for p in series] for name, series in history.points.items()},
        "window": {"loss_sum": window.loss_sum.detach().cpu(), "steps": window.steps},
    }


@dataclass
class _Window:
    """The steps since the last logged ``train.loss``: their summed loss (on
    the device) and count. A checkpoint keeps it, so a resumed run logs the
    same mean as a run that never stopped, whatever step it resumed at."""

    loss_sum: torch.Tensor
    steps: int = 0


# ----------------------------------------------------------------------------
# the run


def train(
    exp: ResolvedExperiment,
    host: PluginHost,
    recorder: Recorder,
    resume_from: Path | None = None,
) -> dict[str, float]:
    """Train and evaluate one experiment; return the final evaluation metrics.

    Launched by torchrun (``sslx run --nproc N``), every process calls this:
    they join one process group, each trains on its share of every global
    batch under DDP, and rank 0 alone writes records and checkpoints and runs
    the evaluators (the others return ``{}``)."""
    with (
        distributed.process_group(pick_device(exp.trainer.device)) as device,
        _stop_on_sigterm(),
        CoreShare(exp.trainer.threads) as share,
    ):
        return _train(exp, host, recorder, resume_from, device, share)


def _wrap(objective: Objective, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: the objective itself, or under DDP
    the objective wrapped in ``DistributedDataParallel``, which averages the
    gradients of the processes during ``backward`` (buffers such as queues
    and banks are kept equal by the objectives' own collectives, so DDP does
    not broadcast them)."""
    if not distributed.is_distributed():
        return objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        objective,
        device_ids=[device] if device.type == "cuda" else None,
        forward_sync_buffers=False,
        find_unused_parameters=type(objective).ddp_find_unused_parameters,
    )


class _Divergence:
    """Stops a run before a diverged model is kept.

    The first step whose loss was not finite is noted on the device without
    waiting for it (the step never synchronises with the host). ``check``
    reads it back where the host looks anyway (logging, checkpoints,
    evaluations, the end) and also checks every parameter, buffer and
    optimizer state for non-finite values, which a diverging model can hold
    (BatchNorm's running variance, say) while its loss is still finite. A
    checkpoint is written only after ``check`` passed, so the last one on
    disk is always finite."""

    def __init__(self, t: TrainerParams, total_steps: int, device: torch.device, run_dir: Path | None):
        self.t, self.total_steps, self.run_dir = t, total_steps, run_dir
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)
        self.good_step: int | None = None  # the step of the last checkpoint written

    def note(self, loss: torch.Tensor, step: int) -> None:
        first = (self.step < 0) & ~torch.isfinite(loss)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.detach(), self.loss)

    def check(self, step: int, objective: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Raise :class:`TrainingDiverged` if the loss was ever non-finite or
        any state is non-finite now, at ``step``."""
        first = int(self.step)
        if first >= 0:
            lr = lr_at(self.t, first - 1, self.total_steps)
            self._stop(f"the loss became {float(self.loss)} at step {first} (learning rate {lr:.4g})", lr)
        bad = nonfinite_state(objective, optimizer)
        if bad:
            lr = lr_at(self.t, step - 1, self.total_steps)
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            self._stop(
                f"the model became non-finite by step {step} (learning rate {lr:.4g}) while its loss was "
                f"still finite: {shown}",
                lr,
            )

    def _stop(self, what: str, lr: float) -> None:
        if self.good_step is not None and self.run_dir is not None:
            lower = f"{self.t.lr / 10:.3g}"
            where = (
                f"the last good checkpoint (all values finite) is step {self.good_step} in {self.run_dir}: "
                f"continue it with a lower learning rate, `sslx run --resume {self.run_dir} --set "
                f"trainer.lr={lower}` (trainer.warmup_steps and trainer.grad_clip may change on resume too)"
            )
        else:
            where = (
                "no checkpoint had been written yet: start again with a lower trainer.lr, or more "
                "trainer.warmup_steps or a trainer.grad_clip"
            )
        raise TrainingDiverged(
            f"{what}, so the run stopped; {where}. If a lower learning rate does not help, "
            f"check the objective's parameters."
        )


def nonfinite_state(objective: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[str]:
    """The names of the floating-point parameters, buffers and optimizer
    states holding a NaN or an infinity (one synchronisation with the device)."""
    named = [(k, v) for k, v in objective.state_dict().items() if v.is_floating_point()]
    if optimizer is not None:
        names = {id(p): n for n, p in objective.named_parameters()}
        named += [
            (f"optimizer state {key} of {names.get(id(p), '?')}", v)
            for p, state in optimizer.state.items()
            for key, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
        ]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(v).all() for _, v in named])
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(named, finite.tolist(), strict=True) if not ok]


def _check_split(t: TrainerParams, group_size: int, world: int) -> None:
    if world > 1 and t.batch_size % (group_size * world):
        per = group_size * world
        raise UserError(
            f"trainer.batch_size ({t.batch_size}) must split evenly over the {world} processes"
            f"{f' in groups of {group_size} samples per item' if group_size > 1 else ''}: set it to a multiple of "
            f"{per}, such as {max(1, round(t.batch_size / per)) * per}."
        )


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Under a launcher, SIGTERM means another process failed (torchrun then
    stops the rest) or the launch was stopped: raise, so the run is recorded
    as failed with that reason instead of vanishing. Once training has failed
    (for that reason or another), further SIGTERMs are ignored, so that rank 0
    can record why before it exits (torchrun kills with SIGKILL after a grace
    period, and the launcher records a run whose rank 0 vanished)."""
    if distributed.world_size() == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise ProcessStopped(
            f"process {distributed.rank()} was stopped by the launcher (signal {signal.Signals(signum).name}): another "
            f"process of this run failed (its error is printed above) or the launch was stopped."
        )

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except BaseException:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    else:
        signal.signal(signal.SIGTERM, previous)


def _train(
    exp: ResolvedExperiment,
    host: PluginHost,
    recorder: Recorder,
    resume_from: Path | None,
    device: torch.device,
    share: CoreShare,
) -> dict[str, float]:
    t = exp.trainer
    world, main = distributed.world_size(), distributed.is_main_process()
    # -- 1. set-up: seeds, precision (the device and process group are set) ----
    seed_everything(exp.seed)  # the same on every process: objectives' random draws agree
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    share.apply()  # this run's share of the machine's cores, re-divided as other trainings start and end
    workers = auto_workers(t.num_workers)

    # -- 2. components --------------------------------------------------------
    parts = build(exp)
    _check_split(t, parts.sampler.group_size, world)
    if distributed.is_distributed() and t.sync_batchnorm:
        parts.objective = cast(Objective, distributed.convert_sync_batchnorm(parts.objective, device))
    objective = to_device(parts.objective, device, t.channels_last).train()
    optimizer = make_optimizer(objective, t)
    start_step = 0

    # -- 3. resume (every process reads the same checkpoint) --------------------
    history = History(recorder)
    window = _Window(torch.zeros((), device=device))
    if resume_from is not None:
        state = ckpt.load(resume_from)
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_step = int(state["step"])
        recorder.set_info("resumed_at_step", start_step)
        history.replay(state.get("metrics", {}))  # the curve up to the checkpoint: these records hold it all
        if "window" in state:
            window = _Window(state["window"]["loss_sum"].to(device), int(state["window"]["steps"]))
    model: Callable[[Batch], ObjectiveOutput] = _wrap(objective, device)
    if t.compile:
        model = torch.compile(model)

    # -- 4. data: this process's share of each global batch; the test split checked now, not after training --
    train_split = parts.dataset.split("train")
    if main and exp.evaluators:  # the test split loads and every evaluator finds what it needs now, not after training
        parts.dataset.split("test")
        for info, params in exp.evaluators:
            evaluator: Evaluator = info.build(params)
            evaluator.check_data(parts.dataset)
    if t.augment_on_device:  # images kept on the device, each view made for the whole batch at once
        loader: Any = DeviceBatches(
            train_split,
            parts.sampler,
            parts.augmentation,
            t.batch_size,
            exp.seed,
            start_step,
            device,
            rank=distributed.rank(),
            world_size=world,
        )
    else:
        loader = train_loader(
            ViewDataset(train_split, parts.sampler, parts.augmentation),
            t.batch_size,
            exp.seed,
            start_step,
            workers,
            pin_memory=device.type == "cuda",
            rank=distributed.rank(),
            world_size=world,
        )
    run = RunHandle(exp.config, history, recorder.run_dir)
    run_dir = recorder.run_dir if main else None  # rank 0 alone writes checkpoints
    last_path = run_dir / ckpt.LAST if run_dir else None
    views_per_step = t.batch_size * parts.sampler.num_views  # global
    recorder.set_info("total_steps", parts.total_steps)
    if report := parts.dataset.report():
        recorder.set_info("data", report)
    recorder.set_info("device", str(device))
    if world > 1:
        recorder.set_info(
            "distributed",
            {
                "world_size": world,
                "backend": distributed.backend(),
                "sync_batchnorm": t.sync_batchnorm,
                "batch_per_process": t.batch_size // world,
            },
        )
    diverged = _Divergence(t, parts.total_steps, device, run_dir)

    def evaluate(step: int, keep_files: bool = True) -> dict[str, float]:
        """Rank 0 runs the evaluators (with the training RNG set aside, so
        evaluating does not change the training) while the others wait."""
        result: dict[str, float] = {}
        if main:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                result = run_evaluators(exp.evaluators, eval_context(exp, parts, device), history, step, keep_files)
        distributed.barrier()
        return result

    def checkpoint(step: int) -> None:
        """Write the resumable checkpoint (rank 0), after every process found
        the model finite; then make the records up to here durable."""
        diverged.check(step, objective, optimizer)  # never save a diverged model
        if last_path:
            ckpt.save_atomic(_state(step, parts, optimizer, exp, history, window), last_path)
            diverged.good_step = step
            history.flush()

    # -- 5. training loop -------------------------------------------------------
    status, result = "FAILED", None
    host.run_started(run)
    train_start = time.perf_counter()
    current = start_step
    try:
        if t.eval_at_start and start_step == 0:  # the untrained encoder's scores: the floor to beat
            evaluate(0, keep_files=False)
        batches = iter(loader)
        timed, timed_start = 0, time.perf_counter()  # steps and time since the last log: the throughput
        bar = tqdm(
            total=parts.total_steps,
            initial=start_step,
            desc="train",
            disable=not (t.progress and main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        with _graceful_interrupt(enabled=world == 1) as stop, bar:
            for step in range(start_step + 1, parts.total_steps + 1):
                current = step
                try:
                    batch: Batch = next(batches).to(device, channels_last=t.channels_last)
                except UserError as exc:  # a sampler or dataset refusing the data, maybe inside a worker
                    raise worker_user_error(exc) from None
                except RuntimeError:
                    if stop["stop"]:  # a worker went down with the Ctrl-C
                        break
                    raise
                lr = lr_at(t, step - 1, parts.total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    out: ObjectiveOutput = model(batch)
                loss = out.loss.float()
                diverged.note(loss, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # under DDP: the gradients are averaged over the processes here
                if t.grad_clip:
                    torch.nn.utils.clip_grad_norm_(objective.parameters(), t.grad_clip)
                optimizer.step()
                objective.on_step_end(step)
                window.loss_sum += loss.detach()
                window.steps += 1
                timed += 1
                host.step_finished(run, step, out, lr)
                bar.update(1)

                share.recheck()
                if step % t.log_every == 0 or step == parts.total_steps:
                    diverged.check(step, objective, optimizer)
                    now = time.perf_counter()
                    names = list(out.metrics)
                    # one collective for the loss and the method's metrics: their mean over the processes
                    values = distributed.mean_across_processes(
                        torch.stack(
                            [
                                window.loss_sum / window.steps,
                                *(torch.as_tensor(out.metrics[n], device=device).float().reshape(()) for n in names),
                            ]
                        )
                    )
                    std = (
                        embedding_std(distributed.gather_no_grad(out.embeddings))
                        if out.embeddings is not None
                        else None
                    )
                    mean_loss = float(values[0])
                    history.log_scalar("train.loss", mean_loss, step)
                    history.log_scalar("train.lr", lr, step)
                    history.log_scalar("train.views_per_s", views_per_step * timed / (now - timed_start), step)
                    if std is not None:
                        history.log_scalar("collapse.embedding_std", std, step)
                    for name, value in zip(names, values[1:].tolist(), strict=True):
                        history.log_scalar(f"train.{name}", value, step)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.3g}")
                    window.loss_sum.zero_()
                    window.steps = 0
                    timed, timed_start = 0, now
                if t.eval_every and step % t.eval_every == 0 and step != parts.total_steps:
                    diverged.check(step, objective, optimizer)
                    evaluate(step, keep_files=False)
                if (step % t.checkpoint_every == 0 or stop["stop"]) and step != parts.total_steps:
                    checkpoint(step)
                if stop["stop"]:
                    break
        del batches
        diverged.check(current, objective, optimizer)
        recorder.set_info("train_seconds", round(time.perf_counter() - train_start, 3))
        if stop["stop"]:
            status = "INTERRUPTED"
            raise KeyboardInterrupt

        # -- 6. the final checkpoint, kept as the run's artifact before any evaluator can fail ----------
        checkpoint(parts.total_steps)
        if last_path:
            history.add_artifact(last_path, ckpt.FINAL)
            last_path.unlink()
            history.flush()

        # -- 7. evaluation: `sslx run --resume` or `sslx eval` finishes a run that failed here ------------
        result = evaluate(parts.total_steps)
        status = "COMPLETED"
        return result
    except KeyboardInterrupt:
        status = "INTERRUPTED"
        raise
    except RuntimeError as exc:
        if world > 1 and distributed.lost_contact(exc):
            raise ProcessStopped(
                f"process {distributed.rank()} lost contact with the other processes at step {current}: another "
                f"process of this run stopped (its error, if it could print one, is above). The backend said: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from None
        raise
    finally:
        host.run_finished(run, status, result)
