"""Fine-tuning evaluation: the whole network trained with (a fraction of) the
labels, on a copy of the encoder."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import sslx
from sslx.features import EvalViews, labeled_or_error, split_labels

__all__ = ["Classifier", "Finetune", "class_balanced_subset", "flip_and_translate", "load_views"]


def class_balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of the labeled items
    (``labels >= 0``): ``max(1, round(fraction * n_c))`` of the ``n_c``
    items of each class ``c`` present."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        take = max(1, int(math.floor(fraction * len(members) + 0.5)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def flip_and_translate(x: torch.Tensor, gen: torch.Generator, flip: bool, pad: int) -> torch.Tensor:
    """Per-sample random horizontal flip (probability 1/2) and random
    translation by up to ``pad`` pixels each way (edge-replicate padding,
    then a crop of the original size) of a batch ``(B, C, H, W)``; the random
    numbers come from the CPU generator ``gen``."""
    b, _, h, w = x.shape
    if flip:
        mask = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    if pad > 0:
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    return x


def load_views(ctx: sslx.EvalContext, split: sslx.ImageSplit, indices: np.ndarray, desc: str) -> torch.Tensor:
    """The evaluation views of ``split[indices]`` stacked in memory (CPU) in one pass."""
    loader = DataLoader(
        EvalViews(split, ctx.augmentation, indices),
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    return torch.cat([x for x in tqdm(loader, desc=desc, disable=not ctx.progress, leave=False, mininterval=2)])


class Classifier(nn.Module):
    """An encoder followed by a linear head."""

    def __init__(self, encoder: sslx.Encoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class Finetune(sslx.Evaluator):
    """Fine-tuning top-1 accuracy (the semi-supervised protocol of Chen et al.,
    2020, with label_fraction < 1): a copy of the encoder plus a linear head,
    all trained with labels on a class-balanced subset of the training split,
    tested on the test split. Needs labels; reports ``finetune_top1`` in
    [0, 1], ``finetune_label_fraction`` and ``finetune_train_size``.

    The run's encoder is not changed. Training: SGD with Nesterov momentum
    0.9, cosine learning-rate decay, random flips and translations of the
    evaluation views, BatchNorm in training mode; seeded by the run's seed.
    """

    name = "finetune"
    needs_labels = True

    class Params(sslx.Params):
        label_fraction: float = Field(
            0.1,
            gt=0,
            le=1,
            description="Fraction of each class's labeled training "
            "images used (at least one per class), e.g. 0.01, 0.1 or 1.",
        )
        epochs: int = Field(
            20,
            ge=1,
            description="Passes over the labeled subset (20: about a minute for 10% of "
            "Fashion-MNIST with small_cnn width 16 on 2 CPU cores).",
        )
        batch_size: int = Field(128, ge=1, description="Mini-batch size (at most the subset's size).")
        lr: float = Field(0.02, ge=0, description="Peak learning rate of the encoder (cosine decay to zero).")
        head_lr: float = Field(0.1, ge=0, description="Peak learning rate of the linear head.")
        weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay (encoder and head).")
        flip: bool = Field(True, description="Random horizontal flips of the training images.")
        pad: int = Field(
            2, ge=0, description="Random translations by up to pad pixels (padding and cropping); 0: none."
        )

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        p = self.params
        train_split, test_split = ctx.dataset.split("train"), ctx.dataset.split("test")
        train_y, test_y = split_labels(train_split), split_labels(test_split)
        num_classes = labeled_or_error(self.name, train_y, test_y)
        indices = class_balanced_subset(train_y.numpy(), p.label_fraction, ctx.seed)
        cuda = ctx.device.type == "cuda"
        with torch.random.fork_rng(devices=[ctx.device] if cuda else []):
            torch.default_generator.manual_seed(ctx.seed)  # the head's initialisation (on the CPU)
            if cuda:
                with torch.cuda.device(ctx.device):
                    torch.cuda.manual_seed(ctx.seed)  # random layers of the encoder, if any
            model = Classifier(copy.deepcopy(ctx.encoder), num_classes).to(ctx.device, memory_format=ctx.memory_format)
            images = load_views(ctx, train_split, indices, "finetune views")
            labels = train_y[indices]
            self.fit(model, images, labels, ctx)
            top1 = self.accuracy(model, ctx, test_split, test_y)
        return {
            "finetune_top1": top1,
            "finetune_label_fraction": p.label_fraction,
            "finetune_train_size": float(len(indices)),
        }

    def fit(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor, ctx: sslx.EvalContext) -> None:
        """Train ``model`` in place on the in-memory ``images`` and ``labels``."""
        p = self.params
        n = len(images)
        batch_size = min(p.batch_size, n)
        steps_per_epoch = n // batch_size  # the last, partial batch of each (shuffled) epoch is dropped
        total = p.epochs * steps_per_epoch
        optimizer = torch.optim.SGD(
            [{"params": model.encoder.parameters(), "lr": p.lr}, {"params": model.head.parameters(), "lr": p.head_lr}],
            momentum=0.9,
            nesterov=True,
            weight_decay=p.weight_decay,
        )
        peak = [group["lr"] for group in optimizer.param_groups]
        gen = torch.Generator().manual_seed(ctx.seed)
        cuda = ctx.device.type == "cuda"
        model.train()
        step = 0
        bar = tqdm(total=total, desc="finetune", disable=not ctx.progress, leave=False, mininterval=2)
        with torch.enable_grad():
            for _ in range(p.epochs):
                order = torch.randperm(n, generator=gen)
                for i in range(steps_per_epoch):
                    idx = order[i * batch_size : (i + 1) * batch_size]
                    x = images[idx].to(ctx.device, non_blocking=True)
                    x = flip_and_translate(x, gen, p.flip, p.pad).contiguous(memory_format=ctx.memory_format)
                    y = labels[idx].to(ctx.device, non_blocking=True)
                    scale = 0.5 * (1 + math.cos(math.pi * step / total))
                    for group, lr in zip(optimizer.param_groups, peak):
                        group["lr"] = lr * scale
                    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cuda):
                        loss = F.cross_entropy(model(x).float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    bar.update()
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()

    @torch.no_grad()
    def accuracy(self, model: Classifier, ctx: sslx.EvalContext, split: sslx.ImageSplit, labels: torch.Tensor) -> float:
        """Top-1 accuracy of ``model`` in eval mode on the evaluation views of ``split``."""
        model.eval()
        loader = DataLoader(
            EvalViews(split, ctx.augmentation),
            batch_size=ctx.batch_size,
            num_workers=ctx.num_workers,
            pin_memory=ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(0),
        )
        preds = []
        for x in tqdm(loader, desc="finetune test", disable=not ctx.progress, leave=False, mininterval=2):
            x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"):
                preds.append(model(x).argmax(dim=1).cpu())
        return float((torch.cat(preds) == labels).float().mean())
