"""Feature extraction for evaluators: a frozen encoder over a whole split.

Features are computed once per evaluation and kept in ``EvalContext.cache``,
so the kNN, the linear probe and the per-layer probe of one evaluation share
a single pass over the data.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeAlias

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslx.components import Augmentation, Encoder, EvalContext, ImageSplit
from sslx.errors import UserError

__all__ = ["EvalViews", "extract", "extract_features", "labeled_or_error", "split_labels"]

Features: TypeAlias = "torch.Tensor | dict[str, torch.Tensor]"


class EvalViews(torch.utils.data.Dataset):
    """The deterministic evaluation views of a split (``Augmentation.eval``),
    with their indices: item ``i`` is ``(view, i)``."""

    def __init__(self, split: ImageSplit, augmentation: Augmentation, indices: np.ndarray | None = None):
        self.split = split
        self.augmentation = augmentation
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.augmentation.eval(self.split.image(int(self.indices[i])))


def split_labels(split: ImageSplit, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels ``(N,)`` of a split, ``-1`` where unknown."""
    labels = split.labels if split.labels is not None else np.full(len(split), -1)
    return torch.as_tensor(labels, dtype=torch.long, device=device)


@torch.no_grad()
def extract(
    ctx: EvalContext,
    split_name: str,
    fn: Callable[[Encoder, torch.Tensor], Features] | None = None,
    key: Hashable = "features",
) -> tuple[Features, torch.Tensor]:
    """Run ``fn(encoder, images)`` (default: the encoder's forward) in eval
    mode over every item of a split, in order; return the concatenated
    outputs (float32, on ``ctx.device``; a dict when ``fn`` returns one) and
    the labels ``(N,)``. Results are cached in ``ctx.cache`` under
    ``(split_name, key)``: give each distinct ``fn`` its own ``key``."""
    cached = ctx.cache.get((split_name, key))
    if cached is not None:
        return cached
    fn = fn or (lambda encoder, x: encoder(x))
    split = ctx.dataset.split(split_name)
    loader = DataLoader(
        EvalViews(split, ctx.augmentation),
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # leaves the global RNG of the run untouched
    )
    encoder = ctx.encoder
    was_training = encoder.training
    encoder.eval()
    outputs: list[Features] = []
    try:
        for x in tqdm(loader, desc=f"features ({split_name})", disable=not ctx.progress, leave=False, mininterval=2):
            x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"):
                out = fn(encoder, x)
            outputs.append({k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float())
    finally:
        encoder.train(was_training)
    tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
    dicts = [o for o in outputs if isinstance(o, dict)]
    feats: Features = torch.cat(tensors) if tensors else {k: torch.cat([o[k] for o in dicts]) for k in dicts[0]}
    values = [feats] if isinstance(feats, torch.Tensor) else list(feats.values())
    bad = sum(int((~torch.isfinite(v.flatten(1) if v.ndim > 1 else v[:, None])).any(dim=1).sum()) for v in values)
    if bad:
        raise UserError(
            f"the encoder's features of {bad} of the {len(split)} images of the {split_name!r} split are NaN or "
            f"infinite: its weights make them so (a diverged run), and no evaluation can use them. Evaluate a "
            f"checkpoint written before the divergence, or train again with a lower trainer.lr."
        )
    result = (feats, split_labels(split, ctx.device))
    ctx.cache[(split_name, key)] = result
    return result


def extract_features(ctx: EvalContext, split_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features ``(N, D)`` (float32, on ``ctx.device``) and labels
    ``(N,)`` (``-1`` where unknown) of every item of a split, in order;
    computed once per evaluation."""
    feats, labels = extract(ctx, split_name)
    assert isinstance(feats, torch.Tensor), "the encoder's forward returns one tensor"
    return feats, labels


def labeled_or_error(evaluator: str, train_y: torch.Tensor, test_y: torch.Tensor) -> int:
    """The number of classes; a ``UserError`` naming ``evaluator`` when the
    training split has no labels or the test split has unlabeled items."""
    if not bool((train_y >= 0).any()) or bool((test_y < 0).any()):
        raise UserError(
            f"evaluator {evaluator!r} needs labeled train and test splits, but the dataset has unlabeled items: "
            f"use a labeled dataset (see `sslx describe dataset NAME` for how yours is labeled), or remove the "
            f"evaluator."
        )
    return int(max(train_y.max(), test_y.max())) + 1
