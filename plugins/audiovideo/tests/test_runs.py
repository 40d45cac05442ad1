"""End to end: the trainer runs sampler, objective and evaluators together
(on in-memory clips with a tone per clip, in seconds), and the shipped
experiments run a few steps as Sacred runs on their own datasets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import sslx
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.trainer import MemoryRecorder, train
from sslx.plugins import load_plugins
from sslx.records import record_run

REPO = Path(__file__).resolve().parents[3]
EXPERIMENTS = REPO / "experiments"
FAST = [
    "trainer.max_steps=4",
    "trainer.warmup_steps=1",
    "trainer.num_workers=0",
    "trainer.progress=false",
    "trainer.log_every=2",
    "trainer.checkpoint_every=2",
]


class Tones(sslx.Dataset):
    """Clips of one bright square on black (its side tells the class, 0-2),
    whose sound is a tone of the clip's own pitch: 12 training, 6 test clips."""

    name = "tones_test"

    def split(self, name: str) -> sslx.ArrayClips:
        n, length, rate = (12, 16, 4000) if name == "train" else (6, 16, 4000)
        rng = np.random.default_rng(0 if name == "train" else 1)
        frames = np.zeros((n, length, 16, 16, 1), np.uint8)
        labels = np.arange(n) % 3
        t = np.arange(2 * rate) / rate  # 2 s: 16 frames at 8 fps
        audio = np.zeros((n, len(t)), np.float32)
        for c in range(n):
            side = 4 + 3 * labels[c]
            x, y = rng.integers(0, 16 - side, 2)
            frames[c, :, y : y + side, x : x + side] = 255
            audio[c] = 0.5 * np.sin(2 * math.pi * (150 + 100 * c) * t)
        info = sslx.DataInfo(channels=1, image_size=(16, 16), mean=(0.1,), std=(0.3,), num_classes=3)
        return sslx.ArrayClips(frames, labels, info, fps=8.0, audio=audio, sample_rate=rate)


class TonesPlugin:
    @sslx.hookimpl
    def sslx_register_datasets(self, register):
        register(Tones)


def test_the_trainer_runs_audio_video_and_its_evaluators():
    host = load_plugins(strict=True)
    host.add_plugin(TonesPlugin(), "tones_test")
    exp = resolve(
        {
            "dataset": {"name": "tones_test"},
            "augmentation": {
                "name": "simclr",
                "crop_scale": [0.8, 1.0],
                "flip_prob": 0.0,
                "jitter_prob": 0.0,
                "blur_prob": 0.0,
            },
            "sampler": {"name": "audio_video", "pairs": 2},
            "encoder": {"name": "small_cnn", "width": 4, "blocks": 2},
            "objective": {
                "name": "avc",
                "sample_rate": 4000,
                "n_fft": 128,
                "n_mels": 16,
                "audio_width": 4,
                "audio_blocks": 2,
                "embedding_dim": 16,
                "proj_hidden_dim": 16,
            },
            "evaluators": [{"name": "av_retrieval", "num_clips": 4}, {"name": "linear"}],
            "trainer": {"batch_size": 8, "max_steps": 3, "num_workers": 0, "progress": False, "log_every": 1},
        },
        host,
    )
    rec = MemoryRecorder()
    result = train(exp, host, rec)
    assert [s for s, _ in rec.metrics["train.loss"]] == [1, 2, 3]
    assert all(0 <= v <= 1 for _, v in rec.metrics["train.av_top1"])
    assert result["eval.av_retrieval_clips"] == 4
    assert 0 <= result["eval.av_retrieval_top1"] <= 1 and 0 <= result["eval.av_retrieval_v2a_top1"] <= 1
    assert 0 <= result["eval.linear_top1"] <= 1


def needs(dataset: str):
    return pytest.mark.skipif(
        dataset not in load_plugins().registry.names("dataset"),
        reason=f"dataset {dataset!r} (plugin sslx-datasets) is not installed",
    )


@pytest.mark.slow
@needs("talking_digits")
def test_audio_video_experiment_runs_as_a_sacred_run(tmp_path):
    host = load_plugins(strict=True)
    raw = apply_overrides(
        read_experiment(EXPERIMENTS / "audio_video.json"),
        FAST
        + [
            "trainer.batch_size=16",
            "dataset.train_size=32",
            "dataset.test_size=16",
            "encoder.width=4",
            "objective.audio_width=4",
            "evaluators.0.num_clips=8",
        ],
    )
    record = record_run(resolve(raw, host), host, runs_dir=tmp_path, name="audio_video")
    metrics = json.loads((record.run_dir / "metrics.json").read_text())
    for name in (
        "train.loss",
        "train.av_top1",
        "eval.av_retrieval_top1",
        "eval.av_retrieval_v2a_top1",
        "eval.linear_top1",
    ):
        assert name in metrics, name
    clips = metrics["eval.av_retrieval_clips"]
    assert clips["steps"][0] == 0 and clips["values"] == [8.0] * len(clips["steps"]), (
        "the floor at step 0, then trained"
    )


@pytest.mark.slow
@needs("video_folder")
def test_real_clips_experiment_runs_and_records_skipped_packets(tmp_path):
    host = load_plugins(strict=True)
    raw = apply_overrides(
        read_experiment(EXPERIMENTS / "audio_video_real.json"),
        FAST + ["trainer.batch_size=4", "encoder.width=4", "objective.audio_width=4"],
    )
    record = record_run(resolve(raw, host), host, runs_dir=tmp_path, name="audio_video_real")
    info = json.loads((record.run_dir / "info.json").read_text())
    assert "data" in info and "skipped" in json.dumps(info["data"])
    metrics = json.loads((record.run_dir / "metrics.json").read_text())
    assert "train.loss" in metrics
