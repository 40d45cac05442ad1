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
    "evaluators.0.k=20",
]


def tiny_overrides(name: str) -> list[str]:
    extra = ["objective.queue_size=64"] if name == "moco" else []
    return TINY + extra


def read_run(run_dir: Path) -> dict:
    """The JSON records of a Sacred file-store run."""
    out = {}
    for name in ("run", "config", "metrics", "info"):
        path = run_dir / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.exists() else None
    return out
