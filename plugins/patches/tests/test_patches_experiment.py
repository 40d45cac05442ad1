"""experiments/patches.json runs end to end: a few training steps with the
host's tiny overrides (tests/helpers.py), then its kNN evaluation."""

from __future__ import annotations

import math
from pathlib import Path

from helpers import tiny_overrides

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.trainer import MemoryRecorder, train
from sslx.plugins import load_plugins

REPO = Path(__file__).resolve().parents[3]


def test_experiment_runs_end_to_end():
    host = load_plugins(strict=True)
    path = REPO / "experiments" / "patches.json"
    exp = resolve(apply_overrides(read_experiment(path), tiny_overrides("patches")), host, source=str(path))
    recorder = MemoryRecorder()
    result = train(exp, host, recorder)
    assert 0.0 <= result["eval.knn_top1"] <= 1.0
    losses = [value for _, value in recorder.metrics["train.loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert recorder.info["total_steps"] == 6
