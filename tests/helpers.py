"""Helpers shared by the host's tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
SSLX = str(Path(sys.executable).parent / "sslx")

# Shrinks a shipped experiment to seconds on a CPU, without changing its method.
TINY = [
    "dataset.train_size=256",
    "dataset.test_size=128",
    "encoder.width=8",
    "encoder.blocks=2",
    "trainer.batch_size=32",
    "trainer.max_steps=6",
    "trainer.warmup_steps=2",
    "trainer.num_workers=0",
    "trainer.progress=false",
    "trainer.log_every=2",
    "trainer.checkpoint_every=3",
]


# Per-method additions to TINY (banks, queues and heads sized for 256 images).
TINY_EXTRA: dict[str, list[str]] = {
    "moco": ["objective.queue_size=64"],
    "audio_video": ["objective.audio_width=4", "objective.audio_blocks=2", "evaluators.0.num_clips=16"],
    "audio_video_real": [
        "objective.audio_width=4",
        "objective.audio_blocks=2",
        "trainer.batch_size=8",
    ],  # 9 train clips
    "npid": ["objective.num_negatives=64"],
    "pirl": ["objective.num_negatives=64"],
    "swav": [
        "objective.num_prototypes=16",
        "objective.freeze_prototypes_steps=2",
        "objective.queue_length=64",
        "objective.queue_start_step=3",
    ],
    "tracks": ["evaluators.0.num_clips=20"],
}


def tiny_overrides(name: str) -> list[str]:
    evaluators = json.loads((EXPERIMENTS / f"{name}.json").read_text()).get("evaluators", [])
    knn = ["evaluators.0.k=20"] if evaluators and evaluators[0]["name"] == "knn" else []
    return TINY + knn + TINY_EXTRA.get(name, [])


def read_run(run_dir: Path) -> dict:
    """The JSON records of a Sacred file-store run."""
    out = {}
    for name in ("run", "config", "metrics", "info"):
        path = run_dir / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.exists() else None
    return out
