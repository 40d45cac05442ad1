"""``sslx bench``: how close a run's training comes to what its model alone can do.

Two measurements of the same experiment on the same device, one after the
other:

* **model only**: the objective's training step (forward, backward,
  optimizer, ``on_step_end``) on one synthetic batch already on the device,
  with the run's precision and memory layout; no data pipeline at all. This
  is the ceiling the data pipeline can at best reach.
* **end to end**: the real trainer (data loading or ``augment_on_device``,
  the step, logging) for as many steps as the model-only phase managed in
  its share of the time, timed from the end of step ``warmup`` to the last.

The ratio end-to-end / model-only says how much of the device the data path
leaves idle. Peak memory is the device's (CUDA) or the process's resident
set (CPU).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import torch

import sslx
from sslx.components import Batch
from sslx.config import ResolvedExperiment
from sslx.engine.data import ViewDataset
from sslx.engine.trainer import MemoryRecorder, build, make_optimizer, pick_device, seed_everything, to_device, train

if TYPE_CHECKING:
    from sslx.plugins import PluginHost


class StepClock:
    """Plugin that notes when each optimizer step finished (``times``). At
    the steps in ``sync_at`` (a timed span's ends) it first waits for the
    GPU, so the span holds the work queued in it; other steps never wait."""

    def __init__(self, sync_at: Collection[int] = ()) -> None:
        self.sync_at = sync_at
        self.times: list[float] = []

    @sslx.hookimpl
    def sslx_step_finished(self, run, step, output, lr):
        if step in self.sync_at and torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(exp: ResolvedExperiment, seconds: float, warmup: int) -> tuple[float, int]:
    """Steps per second of the objective's training step on one on-device
    batch shaped like the run's (random views), after ``warmup`` steps;
    and the number of timed steps."""
    t = exp.trainer
    seed_everything(exp.seed)
    device = pick_device(t.device)
    parts = build(exp)
    objective = to_device(parts.objective, device, t.channels_last).train()
    optimizer = make_optimizer(objective, t)
    shape = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation).__getitems__(
        [(i, i) for i in range(t.batch_size // parts.sampler.group_size)]
    )
    batch = Batch(
        views=[torch.randn_like(v) for v in shape.views], index=shape.index, label=shape.label, meta=shape.meta
    ).to(device, channels_last=t.channels_last)
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    step, start, timed = 0, 0.0, 0
    while True:
        step += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = objective(batch).loss.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        objective.on_step_end(step)
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        elif step > warmup:
            timed += 1
            if timed % 5 == 0:
                _sync(device)
                if time.perf_counter() - start >= seconds:
                    return timed / (time.perf_counter() - start), timed


def end_to_end(exp: ResolvedExperiment, host: PluginHost, steps: int, warmup: int) -> float:
    """Steps per second of the real trainer over ``steps`` steps after ``warmup``."""
    from sslx.config import apply_overrides, resolve

    raw = apply_overrides(
        exp.config,
        [
            f"trainer.max_steps={warmup + steps}",
            "evaluators=[]",
            "trainer.progress=false",
            "trainer.eval_at_start=false",
            "trainer.eval_every=null",
            f"trainer.checkpoint_every={warmup + steps}",
        ],
    )
    clock = StepClock({warmup, warmup + steps})
    host.add_plugin(clock, "sslx-bench-clock")
    try:
        train(resolve(raw, host, source="sslx bench"), host, MemoryRecorder())
    finally:
        host.remove_plugin("sslx-bench-clock")
    return steps / (clock.times[-1] - clock.times[warmup - 1])


def bench(exp: ResolvedExperiment, host: PluginHost, seconds: float = 20.0, warmup: int = 5) -> dict[str, Any]:
    """Measure ``exp`` for about ``seconds`` in all (see the module docstring)."""
    t = exp.trainer
    device = pick_device(t.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model_rate, timed = model_only(exp, seconds / 2, warmup)
    data_rate = end_to_end(exp, host, max(5, timed), warmup)
    sampler, params = exp.components["sampler"]
    views = t.batch_size * sampler.build(params).num_views
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "device (CUDA max allocated)"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process resident set"
    return {
        "device": str(device),
        "batch_size": t.batch_size,
        "views_per_step": views,
        "end_to_end_views_per_s": round(views * data_rate, 1),
        "model_only_views_per_s": round(views * model_rate, 1),
        "ratio": round(data_rate / model_rate, 4),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_of": kind,
        "augment_on_device": t.augment_on_device,
        "precision": "bf16" if (t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")) else "fp32",
        "timed_steps": {"model_only": timed, "end_to_end": max(5, timed)},
    }
