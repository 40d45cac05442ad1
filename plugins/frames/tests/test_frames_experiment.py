"""experiments/frames.json and frames_vtest.json run end to end: a few
training steps with the host's tiny overrides (tests/helpers.py), then their
evaluation (kNN on moving digits; none on the unlabeled real video, whose
decoding report is recorded in the run's info)."""

from __future__ import annotations

import math
from pathlib import Path

from helpers import tiny_overrides

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.trainer import MemoryRecorder, train
from sslx.plugins import load_plugins

REPO = Path(__file__).resolve().parents[3]


def run_tiny(name: str) -> tuple[dict, MemoryRecorder]:
    host = load_plugins(strict=True)
    path = REPO / "experiments" / f"{name}.json"
    exp = resolve(apply_overrides(read_experiment(path), tiny_overrides(name)), host, source=str(path))
    recorder = MemoryRecorder()
    result = train(exp, host, recorder)
    losses = [value for _, value in recorder.metrics["train.loss"]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert recorder.info["total_steps"] == 6
    return result, recorder


def test_moving_digits_experiment_runs_end_to_end():
    result, _ = run_tiny("frames")
    assert 0.0 <= result["eval.knn_top1"] <= 1.0


def test_real_video_experiment_runs_end_to_end():
    """vtest.avi (from `sslx data prepare clips`) decodes without skipped packets."""
    result, recorder = run_tiny("frames_vtest")
    assert result == {}
    assert recorder.info["data"]["packets_skipped"] == 0
