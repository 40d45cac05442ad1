"""Multinomial logistic regression on fixed features: the solver of the linear
probes, a pure function of tensors (usable by benchmarks as well).

The objective of weights ``W`` ``(C, D)`` and bias ``b`` ``(C,)`` on features
``x`` ``(N, D)`` with labels ``y`` ``(N,)`` is

    L(W, b) = mean_i [ logsumexp_c (x_i W^T + b)_c - (x_i W^T + b)_{y_i} ] + l2 * ||W||^2

(softmax cross-entropy averaged over the samples, an L2 penalty on the
weights only). It is strictly convex in ``W`` for ``l2 > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Optimizer = Literal["lbfgs", "sgd"]


def logistic_objective(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float
) -> torch.Tensor:
    """``L(W, b)``: mean softmax cross-entropy of ``x W^T + b`` plus ``l2 * ||W||^2``."""
    return F.cross_entropy(torch.addmm(bias, x, weight.T), y) + l2 * weight.pow(2).sum()


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    optimizer: Optimizer = "lbfgs",
    max_iter: int = 200,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 0.1,
    seed: int = 0,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise :func:`logistic_objective` over ``(W, b)``, starting from zero
    (or from ``init``), in the dtype and on the device of ``x``.

    ``optimizer="lbfgs"``: full batch, ``torch.optim.LBFGS`` with strong-Wolfe
    line search, at most ``max_iter`` iterations. ``"sgd"``: ``epochs`` passes
    over mini-batches of ``batch_size`` (order drawn from a generator seeded
    with ``seed``), momentum 0.9, learning rate ``lr`` on a per-step cosine
    schedule to zero. Deterministic for fixed inputs; the global RNG is not used.

    Returns:
        ``W`` ``(num_classes, D)`` and ``b`` ``(num_classes,)``, detached.
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"expected x (N, D) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError("cannot fit a classifier on zero samples")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    n, dim = x.shape
    y = y.to(device=x.device, dtype=torch.long)
    if init is None:
        weight = torch.zeros(num_classes, dim, dtype=x.dtype, device=x.device)
        bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    else:
        weight, bias = (t.detach().to(device=x.device, dtype=x.dtype).clone() for t in init)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    with torch.enable_grad():
        if optimizer == "lbfgs":
            # stop early only on a vanishing gradient or no progress at the dtype's precision
            tolerance = min(1e-12, 10 * torch.finfo(x.dtype).eps)
            opt = torch.optim.LBFGS(
                [weight, bias],
                lr=1,
                max_iter=max_iter,
                history_size=20,
                tolerance_grad=1e-9,
                tolerance_change=tolerance,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = logistic_objective(x, y, weight, bias, l2)
                loss.backward()
                return loss

            opt.step(closure)
        elif optimizer == "sgd":
            opt = torch.optim.SGD([weight, bias], lr=lr, momentum=0.9)
            gen = torch.Generator().manual_seed(seed)
            steps_per_epoch = math.ceil(n / batch_size)
            total = epochs * steps_per_epoch
            step = 0
            for _ in range(epochs):
                order = torch.randperm(n, generator=gen).to(x.device)
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    for group in opt.param_groups:
                        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                    opt.zero_grad()
                    logistic_objective(x[idx], y[idx], weight, bias, l2).backward()
                    opt.step()
                    step += 1
        else:
            raise ValueError(f"optimizer must be 'lbfgs' or 'sgd', got {optimizer!r}")
    return weight.detach(), bias.detach()


@torch.no_grad()
def predict(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
    """Predicted classes ``argmax_c (x W^T + b)_c`` ``(N,)``."""
    weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat(
        [torch.addmm(bias, x[s : s + chunk_size], weight.T).argmax(dim=1) for s in range(0, len(x), chunk_size)]
    )


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Centre and scale every feature by the mean and std of ``train``
    (features constant on ``train`` are only centred); applied to ``train``
    and each of ``others``."""
    mean = train.mean(dim=0)
    std = train.std(dim=0) if len(train) > 1 else torch.zeros_like(mean)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [(t - mean) / std for t in (train, *others)]


def holdout_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(fit, val)`` of a seeded random split of ``range(n)``:
    ``round(val_fraction * n)`` held out, at least one on each side."""
    if n < 2:
        raise ValueError(f"cannot hold out a validation part of {n} sample(s)")
    n_val = min(max(round(val_fraction * n), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y.to(pred.device)).float().mean())


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    l2: float | Sequence[float],
    val_fraction: float = 0.1,
    seed: int = 0,
    **solver: object,
) -> tuple[float, float]:
    """The linear-probe protocol: standardise with the training statistics;
    with several ``l2`` values, pick the one of best accuracy on a seeded
    held-out ``val_fraction`` of the training samples (ties: the larger
    ``l2``; with a single training sample, the largest), then refit on all of
    them; report the test accuracy.
    ``solver`` goes to :func:`fit_logistic`.

    Returns:
        ``(test top-1 accuracy, the l2 used)``.
    """
    train_x, test_x = standardize(train_x, test_x)
    grid = [float(l2)] if isinstance(l2, (int, float)) else sorted({float(v) for v in l2}, reverse=True)
    init = None
    chosen = grid[0]
    if len(grid) > 1 and len(train_x) > 1:
        fit_idx, val_idx = holdout_split(len(train_x), val_fraction, seed)
        fit_idx, val_idx = fit_idx.to(train_x.device), val_idx.to(train_x.device)
        best = -1.0
        for value in grid:  # from the strongest penalty down, each fit warm-started from the last
            init = fit_logistic(train_x[fit_idx], train_y[fit_idx], num_classes, value, seed=seed, init=init, **solver)  # type: ignore[arg-type]
            acc = accuracy(predict(train_x[val_idx], *init), train_y[val_idx])
            if acc > best:
                best, chosen, best_init = acc, value, init
        init = best_init
    weight, bias = fit_logistic(train_x, train_y, num_classes, chosen, seed=seed, init=init, **solver)  # type: ignore[arg-type]
    return accuracy(predict(test_x, weight, bias), test_y), chosen
