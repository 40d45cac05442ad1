"""experiments/tracks.json end to end, shrunk to a few steps: the sampler on
the moving_digits dataset, SimCLR, and the re-identification evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import tiny_overrides

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.trainer import MemoryRecorder, train
from sslx.plugins import load_plugins

EXPERIMENT = Path(__file__).resolve().parents[3] / "experiments" / "tracks.json"


def test_shipped_experiment_trains_and_reports_reid():
    host = load_plugins()
    if "moving_digits" not in host.registry.names("dataset"):
        pytest.skip("the moving_digits dataset (sslx-datasets) is not installed")
    raw = apply_overrides(read_experiment(EXPERIMENT), tiny_overrides("tracks"))
    exp = resolve(raw, host, source=str(EXPERIMENT))
    recorder = MemoryRecorder()
    result = train(exp, host, recorder)
    assert set(result) == {"eval.reid_top1", "eval.reid_gallery"}
    assert 0.0 <= result["eval.reid_top1"] <= 1.0
    # every object of the chosen test clips that shows in two frames 8 apart: about 3 per clip
    assert 20 <= result["eval.reid_gallery"] <= 3 * exp.config["evaluators"][0]["num_clips"]
    losses = [v for _, v in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
