"""What the benchmark scripts share: the hardware line, training a shipped
experiment for a wall-clock budget, and writing a marked section of a docs page."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.trainer import MemoryRecorder, build, eval_context, run_evaluators, seed_everything, train
from sslx.records import RunRecord, record_run

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} cores, CPU only"


def seconds_per_step(host, experiment: Path, steps: int = 40) -> float:
    """The trainer's own views/s over the second half of a short run."""
    raw = apply_overrides(
        read_experiment(experiment),
        [f"trainer.max_steps={steps}", "trainer.progress=false", f"trainer.log_every={steps // 2}", "evaluators=[]"],
    )
    exp = resolve(raw, host)
    rec = MemoryRecorder()
    train(exp, host, rec)
    views_per_s = rec.metrics["train.views_per_s"][-1][1]  # the second window: past warm-up effects
    sampler, params = exp.components["sampler"]
    views_per_step = exp.trainer.batch_size * sampler.cls(params).num_views
    return views_per_step / views_per_s


def train_for_budget(
    host, experiment: Path, budget: float, runs_dir: Path, name: str, sets: list[str] = ()
) -> tuple[RunRecord, int]:
    """Train a shipped experiment (with ``sets`` applied) for about ``budget``
    seconds: a short calibration run measures the step time, then the
    schedule (warm-up and cosine decay) is sized to the budget. Returns the
    recorded run and its steps."""
    steps = max(10, int(budget / seconds_per_step(host, experiment)))
    raw = apply_overrides(
        read_experiment(experiment),
        [f"trainer.max_steps={steps}", "trainer.epochs=1000", "trainer.progress=false", *sets],
    )
    exp = resolve(raw, host, source=str(experiment))
    return record_run(exp, host, runs_dir=runs_dir, name=name, experiment_file=experiment), steps


def evaluate_untrained(host, experiment: Path, protocols: list[tuple[str, list[str]]], encoder=None) -> dict:
    """Metrics of evaluators ``(name, --set assignments)`` on the experiment's
    encoder at its seeded initialisation (what a run starts from), or on
    ``encoder(data_info)`` instead (a fixed feature map such as raw pixels)."""
    exp = resolve(apply_overrides(read_experiment(experiment), ["trainer.progress=false"]), host)
    seed_everything(exp.seed)
    parts = build(exp)
    if encoder is not None:
        parts.encoder = encoder(parts.encoder.data)
    evaluators = []
    for name, sets in protocols:
        info = host.component("evaluator", name)
        evaluators.append((info, info.cls.Params(**apply_overrides({}, sets))))
    ctx = eval_context(exp, parts, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return run_evaluators(evaluators, ctx, MemoryRecorder(), step=0)


def write_section(path: Path, name: str, section: str) -> None:
    """Put ``section`` between ``<!-- name:start -->`` and ``<!-- name:end -->``
    in a markdown page, replacing what was there (or appending)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Results\n\nMeasured by the scripts in `benchmarks/`.\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
