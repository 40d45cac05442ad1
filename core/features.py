"""Feature extraction for evaluators: a frozen encoder over a whole split."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslx.components import Augmentation, EvalContext, ImageSplit


class _EvalViews(torch.utils.data.Dataset):
    def __init__(self, split: ImageSplit, augmentation: Augmentation):
        self.split = split
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.augmentation.eval(self.split.image(i))


@torch.no_grad()
def extract_features(ctx: EvalContext, split_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features ``(N, D)`` (float32, on ``ctx.device``) and labels
    ``(N,)`` (``-1`` where unknown) of every item of a split, in order."""
    split = ctx.dataset.split(split_name)
    loader = DataLoader(
        _EvalViews(split, ctx.augmentation),
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # leaves the global RNG of the run untouched
    )
    encoder = ctx.encoder
    was_training = encoder.training
    encoder.eval()
    feats = []
    try:
        for x in tqdm(loader, desc=f"features ({split_name})", disable=not ctx.progress, leave=False, mininterval=2):
            x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"):
                feats.append(encoder(x).float())
    finally:
        encoder.train(was_training)
    labels = split.labels if split.labels is not None else np.full(len(split), -1)
    return torch.cat(feats), torch.as_tensor(labels, dtype=torch.long, device=ctx.device)
