"""The Barlow Twins loss: the cross-correlation of two views' standardised
embeddings pushed towards the identity matrix."""

from __future__ import annotations

from typing import NamedTuple

import torch

from sslx import distributed


class BarlowTwinsTerms(NamedTuple):
    """The two sums of the loss, before weighting."""

    on_diagonal: torch.Tensor  # sum_i (1 - c_ii)^2, the invariance term
    off_diagonal: torch.Tensor  # sum_{i != j} c_ij^2, the redundancy-reduction term


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    off_diagonal_weight: float = 5e-3,
    eps: float = 1e-5,
    gather: bool = True,
) -> torch.Tensor:
    """Barlow Twins loss of two batches of embeddings (Zbontar et al., 2021,
    arXiv:2103.03230, eqs. 1 and 2).

    ``z1[b]`` and ``z2[b]`` are the two views of sample ``b``. Each embedding
    dimension is standardised over the batch, as an affine-free BatchNorm does
    in training mode: ``zn = (z - mean) / sqrt(var + eps)`` with the biased
    variance (divisor ``N``). With ``gather`` and several processes the
    batch is the global one (every process's embeddings, gathered with their
    gradient path), so the statistics and the cross-correlation are those of
    the global batch; in one process ``gather`` changes nothing.

    Args:
        z1, z2: ``(B, D)`` embeddings of the two views (any floating dtype;
            computed in float32, or float64 for float64 inputs, even under
            autocast).
        off_diagonal_weight: ``lambda``, >= 0; the paper uses 0.0051 with
            ``D = 8192``.
        eps: added to the variance before the square root, > 0 (BatchNorm's
            1e-5).

    Returns:
        The scalar ``sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2`` with
        ``c = zn1.T @ zn2 / N`` the ``(D, D)`` cross-correlation matrix over
        the ``N`` samples of the (global) batch. It is 0 exactly when ``c`` is
        the identity.

    Example:
        >>> z1, z2 = torch.randn(32, 64), torch.randn(32, 64)
        >>> loss = barlow_twins_loss(z1, z2, off_diagonal_weight=5e-3)
    """
    if off_diagonal_weight < 0:
        raise ValueError(f"off_diagonal_weight must be >= 0, got {off_diagonal_weight}")
    terms = barlow_twins_terms(z1, z2, eps, gather)
    return terms.on_diagonal + off_diagonal_weight * terms.off_diagonal


def barlow_twins_terms(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5, gather: bool = True) -> BarlowTwinsTerms:
    """The unweighted on- and off-diagonal sums of :func:`barlow_twins_loss`
    (same arguments), for logging them apart."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    with torch.autocast(z1.device.type, enabled=False):  # the loss is computed in float32 (or float64)
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        if gather:
            z1, z2 = distributed.gather(z1), distributed.gather(z2)
        n, d = z1.shape
        if n < 2:
            raise ValueError(f"Barlow Twins standardises over the batch and needs at least 2 samples, got {n}")
        c = _standardise(z1, eps).T @ _standardise(z2, eps) / n  # (D, D)
        on = (1 - c.diagonal()).pow(2).sum()
        off = _off_diagonal(c).pow(2).sum()
        return BarlowTwinsTerms(on, off)


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit (biased) variance per column: BatchNorm1d(affine=False) in training mode."""
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0) + eps)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The ``D * (D - 1)`` off-diagonal entries of a square matrix, flattened."""
    d = m.shape[0]
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()
