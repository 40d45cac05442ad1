"""The VICReg loss: invariance between two views' embeddings, plus variance
and covariance regularisers that keep each branch's embeddings spread out."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from sslx import distributed


class VICRegTerms(NamedTuple):
    """The three terms of the loss, before weighting."""

    invariance: torch.Tensor  # s(Z, Z'): mean squared distance between the views
    variance: torch.Tensor  # v(Z) + v(Z'): hinge on each dimension's standard deviation
    covariance: torch.Tensor  # c(Z) + c(Z'): squared off-diagonal covariances / D


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather: bool = True,
) -> torch.Tensor:
    """VICReg loss of two batches of embeddings (Bardes et al., 2022,
    arXiv:2105.04906, eqs. 1-6).

    ``z1[b]`` and ``z2[b]`` are the two views of sample ``b``. The variance
    and covariance are statistics over the batch; with ``gather`` and several
    processes they are over the global batch (every process's embeddings,
    gathered with their gradient path). The invariance term is a mean over
    this process's samples (DDP's gradient averaging makes it the global
    mean). In one process ``gather`` changes nothing.

    Args:
        z1, z2: ``(B, D)`` embeddings of the two views (any floating dtype;
            computed in float32, or float64 for float64 inputs, even under
            autocast).
        sim_weight, var_weight, cov_weight: ``lambda``, ``mu``, ``nu`` >= 0
            (25, 25, 1 in the paper). A weight of 0 removes its term (an
            ablation: without the variance term the embeddings collapse).
        gamma: target standard deviation of each dimension, > 0 (1 in the paper).
        eps: added to the variance under the square root, > 0 (1e-4).

    Returns:
        The scalar ``lambda * s(Z1, Z2) + mu * (v(Z1) + v(Z2)) + nu * (c(Z1) + c(Z2))``
        where, over the ``N`` samples of the (global) batch,

        - ``s(Z1, Z2) = mean_{b, j} (z1[b, j] - z2[b, j])^2`` (``F.mse_loss``),
        - ``v(Z) = mean_j relu(gamma - sqrt(Var(Z[:, j]) + eps))`` with the
          unbiased variance (divisor ``N - 1``),
        - ``c(Z) = sum_{i != j} Cov(Z)_ij^2 / D`` with
          ``Cov(Z) = (Z - mean)^T (Z - mean) / (N - 1)``.

        The paper's eq. 6 adds the two branches' ``v`` and ``c``, as here; the
        authors' code halves the variance term (the same as ``var_weight``
        12.5 here).

    Example:
        >>> z1, z2 = torch.randn(32, 64), torch.randn(32, 64)
        >>> loss = vicreg_loss(z1, z2, sim_weight=25, var_weight=25, cov_weight=1)
    """
    for name, weight in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
        if weight < 0:
            raise ValueError(f"{name} must be >= 0, got {weight}")
    terms = vicreg_terms(z1, z2, gamma, eps, gather)
    return sim_weight * terms.invariance + var_weight * terms.variance + cov_weight * terms.covariance


def vicreg_terms(
    z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4, gather: bool = True
) -> VICRegTerms:
    """The unweighted terms of :func:`vicreg_loss` (same arguments), for
    logging them apart."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    with torch.autocast(z1.device.type, enabled=False):  # the loss is computed in float32 (or float64)
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        invariance = F.mse_loss(z1, z2)
        if gather:
            z1, z2 = distributed.gather(z1), distributed.gather(z2)
        n = z1.shape[0]
        if n < 2:
            raise ValueError(f"VICReg's variance and covariance need at least 2 samples in the batch, got {n}")
        c1, c2 = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
        variance = _variance_hinge(c1, gamma, eps) + _variance_hinge(c2, gamma, eps)
        covariance = _covariance_penalty(c1) + _covariance_penalty(c2)
        return VICRegTerms(invariance, variance, covariance)


def _variance_hinge(centred: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    std = torch.sqrt(centred.pow(2).sum(dim=0) / (centred.shape[0] - 1) + eps)
    return F.relu(gamma - std).mean()


def _covariance_penalty(centred: torch.Tensor) -> torch.Tensor:
    n, d = centred.shape
    cov = centred.T @ centred / (n - 1)  # (D, D)
    off = cov.flatten()[:-1].view(d - 1, d + 1)[:, 1:]  # the off-diagonal entries
    return off.pow(2).sum() / d
