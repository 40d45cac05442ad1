"""The trainer: builds a run's components, trains, evaluates, checkpoints.

It knows nothing about any method (the objective computes the loss and owns
its state) and nothing about Sacred (it writes through a :class:`Recorder`).
``train`` reads top to bottom in the phases of a run.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import sslx
from sslx.engine import checkpoint as ckpt
from sslx import distributed
from sslx.components import (
    Augmentation,
    Batch,
    Dataset,
    Encoder,
    EvalContext,
    Objective,
    ObjectiveOutput,
    PairSampler,
    TrainInfo,
)
from sslx.config import ResolvedExperiment, TrainerParams
from sslx.engine.data import DeviceBatches, ViewDataset, auto_workers, train_loader, worker_user_error
from sslx.errors import ProcessStopped, TrainingDiverged, UserError


class Recorder(Protocol):
    """Where a run's records go (Sacred in :mod:`sslx.records`)."""

    run_dir: Path | None

    def log_scalar(self, name: str, value: float, step: int) -> None: ...

    def add_artifact(self, path: Path, name: str) -> None: ...

    def set_info(self, key: str, value: Any) -> None: ...


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


class NullRecorder:
    """The recorder of processes other than rank 0 under DDP: they keep nothing."""

    run_dir: Path | None = None

    def log_scalar(self, name: str, value: float, step: int) -> None:
        pass

    def add_artifact(self, path: Path, name: str) -> None:
        pass

    def set_info(self, key: str, value: Any) -> None:
        pass


@dataclass
class RunHandle:
    """The run as lifecycle hooks see it (see :class:`sslx.hookspecs.RunContext`)."""

    config: dict[str, Any]
    recorder: Recorder

    @property
    def run_dir(self) -> Path | None:
        return self.recorder.run_dir

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
        raise UserError("trainer.device is 'cuda' but no CUDA device is available: set trainer.device to 'auto' or 'cpu'.")
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
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, fused=t.fused_optimizer or None)
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.momentum, 0.999), fused=t.fused_optimizer or None)


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings: about 1/sqrt(D) when
    healthy, 0 when collapsed to one vector."""
    z = F.normalize(embeddings.detach().float(), dim=1)
    return float(z.std(dim=0).mean())


def build(exp: ResolvedExperiment) -> Parts:
    """Instantiate the components of an experiment (on the CPU)."""
    info, params = exp.components["dataset"]
    dataset: Dataset = info.cls(params)  # type: ignore[call-arg]
    split = dataset.split("train")
    info, params = exp.components["augmentation"]
    augmentation: Augmentation = info.cls(params, split.info)  # type: ignore[call-arg]
    info, params = exp.components["sampler"]
    sampler: PairSampler = info.cls(params)  # type: ignore[call-arg]
    views_info = replace(split.info, channels=augmentation.out_channels)
    info, params = exp.components["encoder"]
    encoder: Encoder = info.cls(params, views_info)  # type: ignore[call-arg]
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
    objective: Objective = info.cls(params, encoder, train_info)  # type: ignore[call-arg]
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
    evaluators: list[tuple[Any, Any]], ctx: EvalContext, recorder: Recorder, step: int, keep_files: bool = True,
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
            for name, value in info.cls(params).evaluate(ctx).items():  # type: ignore[call-arg]
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


def _state(step: int, parts: Parts, optimizer: torch.optim.Optimizer, exp: ResolvedExperiment) -> dict[str, Any]:
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
    }


# ----------------------------------------------------------------------------
# the run


def train(
    exp: ResolvedExperiment,
    host: Any,
    recorder: Recorder,
    resume_from: Path | None = None,
) -> dict[str, float]:
    """Train and evaluate one experiment; return the final evaluation metrics.

    Launched by torchrun (``sslx run --nproc N``), every process calls this:
    they join one process group, each trains on its share of every global
    batch under DDP, and rank 0 alone writes records and checkpoints and runs
    the evaluators (the others return ``{}``)."""
    with distributed.process_group(pick_device(exp.trainer.device)) as device, _stop_on_sigterm():
        return _train(exp, host, recorder, resume_from, device)


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
    """The first step whose loss was not finite, noted on the device without
    waiting for it (the step never synchronises with the host); ``check``
    reads it back where the host looks anyway (logging, checkpoints,
    evaluations, the end) and stops the run before a diverged model is saved."""

    def __init__(self, t: TrainerParams, total_steps: int, device: torch.device):
        self.t, self.total_steps = t, total_steps
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)

    def note(self, loss: torch.Tensor, step: int) -> None:
        first = (self.step < 0) & ~torch.isfinite(loss)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.detach(), self.loss)

    def check(self, last_path: Path | None) -> None:
        step = int(self.step)
        if step < 0:
            return
        lr = lr_at(self.t, step - 1, self.total_steps)
        where = f"the last good checkpoint is {last_path}" if last_path and last_path.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"the loss became {float(self.loss)} at step {step} (learning rate {lr:.4g}), so the run stopped; "
            f"{where}. Lower trainer.lr, add trainer.warmup_steps or trainer.grad_clip, or check the objective's parameters."
        )


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
    as failed with that reason instead of vanishing."""
    if distributed.world_size() == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise ProcessStopped(
            f"process {distributed.rank()} was stopped by the launcher (signal {signal.Signals(signum).name}): another "
            f"process of this run failed (its error is printed above) or the launch was stopped."
        )

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(
    exp: ResolvedExperiment, host: Any, recorder: Recorder, resume_from: Path | None, device: torch.device,
) -> dict[str, float]:
    t = exp.trainer
    world, main = distributed.world_size(), distributed.is_main_process()
    # -- 1. set-up: seeds, precision (the device and process group are set) ----
    seed_everything(exp.seed)  # the same on every process: objectives' random draws agree
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    if t.threads:
        torch.set_num_threads(t.threads)
    workers = auto_workers(t.num_workers)

    # -- 2. components --------------------------------------------------------
    parts = build(exp)
    _check_split(t, parts.sampler.group_size, world)
    if distributed.is_distributed() and t.sync_batchnorm:
        parts.objective = distributed.convert_sync_batchnorm(parts.objective, device)  # type: ignore[assignment]
    layout = torch.channels_last if t.channels_last else torch.contiguous_format
    objective = parts.objective.to(device, memory_format=layout).train()
    optimizer = make_optimizer(objective, t)
    start_step = 0

    # -- 3. resume (every process reads the same checkpoint) --------------------
    if resume_from is not None:
        state = ckpt.load(resume_from)
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_step = int(state["step"])
        recorder.set_info("resumed_at_step", start_step)
    model = _wrap(objective, device)
    if t.compile:
        model = torch.compile(model)

    # -- 4. data: this process's share of each global batch ---------------------
    train_split = parts.dataset.split("train")
    if t.augment_on_device:  # images kept on the device, each view made for the whole batch at once
        loader: Any = DeviceBatches(train_split, parts.sampler, parts.augmentation, t.batch_size, exp.seed, start_step,
                                    device, rank=distributed.rank(), world_size=world)
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
    run = RunHandle(exp.config, recorder)
    run_dir = recorder.run_dir if main else None  # rank 0 alone writes checkpoints
    last_path = run_dir / ckpt.LAST if run_dir else None
    views_per_step = t.batch_size * parts.sampler.num_views  # global
    recorder.set_info("total_steps", parts.total_steps)
    if report := parts.dataset.report():
        recorder.set_info("data", report)
    recorder.set_info("device", str(device))
    if world > 1:
        recorder.set_info("distributed", {"world_size": world, "backend": distributed.backend(),
                                          "sync_batchnorm": t.sync_batchnorm, "batch_per_process": t.batch_size // world})

    def evaluate(step: int, keep_files: bool = True) -> dict[str, float]:
        """Rank 0 runs the evaluators (with the training RNG set aside, so
        evaluating does not change the training) while the others wait."""
        result: dict[str, float] = {}
        if main:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                result = run_evaluators(exp.evaluators, eval_context(exp, parts, device), recorder, step, keep_files)
        distributed.barrier()
        return result

    # -- 5. training loop -------------------------------------------------------
    status, result = "FAILED", None
    host.run_started(run)
    train_start = time.perf_counter()
    current = start_step
    try:
        if t.eval_at_start and start_step == 0:  # the untrained encoder's scores: the floor to beat
            evaluate(0, keep_files=False)
        batches = iter(loader)
        diverged = _Divergence(t, parts.total_steps, device)
        loss_sum = torch.zeros((), device=device)
        window, window_start = 0, time.perf_counter()
        bar = tqdm(
            total=parts.total_steps, initial=start_step, desc="train", disable=not (t.progress and main),
            dynamic_ncols=True, mininterval=1.0,
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
                loss_sum += loss.detach()
                window += 1
                host.step_finished(run, step, out, lr)
                bar.update(1)

                if step % t.log_every == 0 or step == parts.total_steps:
                    diverged.check(last_path)
                    now = time.perf_counter()
                    names = list(out.metrics)
                    # one collective for the loss and the method's metrics: their mean over the processes
                    values = distributed.mean_across_processes(torch.stack(
                        [loss_sum / window, *(torch.as_tensor(out.metrics[n], device=device).float().reshape(()) for n in names)]))
                    std = embedding_std(distributed.gather_no_grad(out.embeddings)) if out.embeddings is not None else None
                    mean_loss = float(values[0])
                    recorder.log_scalar("train.loss", mean_loss, step)
                    recorder.log_scalar("train.lr", lr, step)
                    recorder.log_scalar("train.views_per_s", views_per_step * window / (now - window_start), step)
                    if std is not None:
                        recorder.log_scalar("collapse.embedding_std", std, step)
                    for name, value in zip(names, values[1:].tolist(), strict=True):
                        recorder.log_scalar(f"train.{name}", value, step)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.3g}")
                    loss_sum.zero_()
                    window, window_start = 0, now
                if last_path and (step % t.checkpoint_every == 0 or stop["stop"]) and step != parts.total_steps:
                    diverged.check(last_path)  # never save a diverged model
                    ckpt.save_atomic(_state(step, parts, optimizer, exp), last_path)
                if stop["stop"]:
                    break
                if t.eval_every and step % t.eval_every == 0 and step != parts.total_steps:
                    diverged.check(last_path)
                    evaluate(step, keep_files=False)
        del batches
        diverged.check(last_path)
        recorder.set_info("train_seconds", round(time.perf_counter() - train_start, 3))
        if stop["stop"]:
            status = "INTERRUPTED"
            raise KeyboardInterrupt

        # -- 6. evaluation ------------------------------------------------------
        result = evaluate(parts.total_steps)

        # -- 7. the final checkpoint as an artifact -------------------------------
        if last_path:
            ckpt.save_atomic(_state(parts.total_steps, parts, optimizer, exp), last_path)
            recorder.add_artifact(last_path, ckpt.FINAL)
            last_path.unlink()
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

