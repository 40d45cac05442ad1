"""Building blocks that several methods share: projection heads, EMA updates,
a FIFO feature queue and a per-image memory bank, both identical on every
process."""

from __future__ import annotations

import math

import torch
from torch import nn

from sslx.distributed import gather_no_grad

__all__ = ["FeatureQueue", "MemoryBank", "cosine_momentum", "ema_update", "projection_mlp"]


def projection_mlp(
    in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, last_bias: bool = True
) -> nn.Sequential:
    """``num_layers`` linear layers with BatchNorm and ReLU between them (the
    SimCLR/MoCo v2 projection head). ``last_bias=False`` drops the last
    layer's bias, as Barlow Twins and VICReg do: their losses are blind to a
    shift shared by both views, so that bias would get no gradient."""
    if num_layers < 1:
        raise ValueError("a projection head needs at least one layer")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=last_bias))
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

    features: torch.Tensor
    ptr: torch.Tensor

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


class MemoryBank(nn.Module):
    """One L2-normalised feature vector per training image: ``size`` rows of
    dimension ``dim`` in the buffer ``features`` (so checkpoints hold it),
    initialised to random unit vectors. The bank of instance discrimination
    (NPID, Wu et al., 2018) and PIRL (Misra & van der Maaten, 2020).

    ``update`` gathers the indices and features of every process first, so
    every rank holds the same bank. It sets, for each index ``i`` of the
    update, ``bank[i] = normalize(momentum * bank[i] + (1 - momentum) * f_i)``.
    When an index appears several times in one update (over all processes),
    ``f_i`` is the mean of its features, so the row takes one momentum step
    towards that mean (not one step per occurrence; the mean is summed in
    float64, deterministically, so the order of the duplicates does not
    matter at float32 precision).

    ``sample(n)`` draws ``n`` row indices uniformly with replacement, on the
    bank's device, from torch's random number generator (the global one, or
    ``generator``): seeded runs draw the same rows, and a resumed run (whose
    checkpoint restores torch's RNG state) continues with the same draws.

    Example:
        >>> bank = MemoryBank(size=1000, dim=128)
        >>> positives = bank.get(torch.tensor([3, 14]))  # (2, 128)
        >>> negatives = bank.get(bank.sample(256))  # (256, 128)
        >>> bank.update(torch.tensor([3, 14]), torch.randn(2, 128), momentum=0.5)
    """

    features: torch.Tensor

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"a memory bank needs size >= 1 and dim >= 1, got size={size}, dim={dim}")
        self.register_buffer("features", nn.functional.normalize(torch.randn(size, dim), dim=1))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def get(self, index: torch.Tensor) -> torch.Tensor:
        """The rows at ``index`` (a copy, without gradient): ``(*index.shape, dim)``."""
        return self.features[index.to(self.features.device)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` row indices (int64, on the bank's device) drawn uniformly with replacement."""
        return torch.randint(self.size, (n,), device=self.features.device, generator=generator)

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
        """Move the rows at ``index`` (``(B,)``) towards ``features`` (``(B, dim)``,
        any scale) and renormalise them; see the class docstring for the formula
        and repeated indices. ``momentum`` 0 replaces the rows by the normalised
        features, 1 leaves them as they are."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if index.ndim != 1 or features.ndim != 2 or features.shape != (index.shape[0], self.dim):
            raise ValueError(
                f"update needs index (B,) and features (B, {self.dim}), got {tuple(index.shape)} and {tuple(features.shape)}"
            )
        index = gather_no_grad(index.to(self.features.device))
        features = gather_no_grad(features.detach().to(self.features.device))
        rows, inverse = torch.unique(index, return_inverse=True)  # rows sorted, inverse maps each entry to its row
        if rows.shape[0] == index.shape[0]:  # no repeats: one feature per row
            new = torch.empty_like(features, dtype=self.features.dtype).index_copy_(
                0, inverse, features.to(self.features.dtype)
            )
        else:  # the mean of each row's features, as a product with a (rows, B) averaging matrix
            onehot = (inverse[None, :] == torch.arange(rows.shape[0], device=index.device)[:, None]).double()
            new = ((onehot / onehot.sum(dim=1, keepdim=True)) @ features.double()).to(self.features.dtype)
        mixed = self.features[rows] * momentum + new * (1.0 - momentum)
        self.features[rows] = nn.functional.normalize(mixed, dim=1)
