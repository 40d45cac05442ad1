"""Building blocks that several methods share: projection heads, EMA updates
and a FIFO feature queue that stays identical on every process."""

from __future__ import annotations

import math

import torch
from torch import nn

from sslx.distributed import gather_no_grad


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, last_bn: bool = False) -> nn.Sequential:
    """``num_layers`` linear layers with BatchNorm and ReLU between them (the
    SimCLR/MoCo v2 projection head); ``last_bn`` adds an affine-free
    BatchNorm after the last layer (as BYOL/SimSiam/Barlow Twins use)."""
    if num_layers < 1:
        raise ValueError("a projection head needs at least one layer")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online``, parameter by
    parameter (buffers are left alone: a momentum encoder in train mode
    normalises with batch statistics)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def cosine_momentum(start: float, end: float, step: int, total_steps: int) -> float:
    """BYOL's schedule: ``start`` at step 0 rising to ``end`` at the last step."""
    progress = min(1.0, step / max(1, total_steps))
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


class FeatureQueue(nn.Module):
    """A first-in first-out queue of ``size`` feature vectors of dimension
    ``dim``, kept in buffers (so checkpoints hold it).

    ``enqueue`` gathers the new rows from every process first, so every rank
    holds the same queue. Rows are written at ``ptr`` and wrap around; when a
    batch is larger than the queue only its last ``size`` rows stay.
    """

    def __init__(self, size: int, dim: int, normalize_init: bool = True):
        super().__init__()
        init = torch.randn(size, dim)
        if normalize_init:
            init = nn.functional.normalize(init, dim=1)
        self.register_buffer("features", init)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def enqueue(self, rows: torch.Tensor) -> None:
        rows = gather_no_grad(rows.detach()).to(self.features.dtype)
        if rows.shape[0] >= self.size:
            rows = rows[-self.size :]
        n = rows.shape[0]
        start = int(self.ptr)
        idx = (torch.arange(n, device=rows.device) + start) % self.size
        self.features[idx] = rows
        self.ptr.fill_((start + n) % self.size)
