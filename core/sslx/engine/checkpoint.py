"""Checkpoints: written atomically, loaded safely.

A checkpoint is a dict of tensors and plain data (``torch.load`` with
``weights_only=True`` reads it): ``step``, ``objective`` (the objective's
state_dict: encoder, heads, momentum encoders, queues, banks), ``optimizer``,
``rng`` and the ``config`` it was trained with. ``encoder_state`` extracts the
plain backbone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sslx.errors import UserError

LAST = "last.pt"  # the resumable checkpoint of a run in progress
FINAL = "checkpoint.pt"  # the checkpoint artifact of a finished run


def save_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` so that a crash leaves the old file or the new
    one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def find_checkpoint(run: Path, final_first: bool = False) -> Path:
    """The checkpoint of a run folder. To resume (the default): its last
    periodic one, else its final one. To evaluate or export
    (``final_first``): its final one, else its last periodic one; a
    checkpoint file is then taken as it is."""
    run = Path(run)
    if final_first and run.is_file():
        return run
    names = (FINAL, LAST) if final_first else (LAST, FINAL)
    for name in names:
        if (run / name).exists():
            return run / name
    if final_first and not run.is_dir():
        raise UserError(
            f"{run}: no such run folder or checkpoint file. Give a run folder such as runs/3 "
            f"(it holds {FINAL}) or a checkpoint file."
        )
    purpose = "to read" if final_first else "to resume from"
    raise UserError(
        f"{run}: this run has no checkpoint {purpose} (looked for {names[0]} and {names[1]}). Give the directory "
        f"of a run that completed or wrote at least one checkpoint (see trainer.checkpoint_every)."
    )


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc}).") from None


def encoder_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The plain backbone weights inside a training checkpoint."""
    prefix = "encoder."
    return {k[len(prefix) :]: v for k, v in checkpoint["objective"].items() if k.startswith(prefix)}
