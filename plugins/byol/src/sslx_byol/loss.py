"""BYOL's regression loss: the online prediction of one view against the
target projection of the other."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised mean squared error (Grill et al., 2020,
    arXiv:2006.07733, eq. 2) for one direction.

    ``p[b]`` is the online network's prediction for one view of sample ``b``
    and ``z[b]`` the target network's projection of its other view. The loss
    does not detach ``z``: the objective computes it without gradient (the
    target network is updated only by its moving average).

    Args:
        p: ``(B, D)`` online predictions (normalised here).
        z: ``(B, D)`` target projections (normalised here).
        Any floating dtype; computed in float32, or float64 for float64
        inputs, even under autocast.

    Returns:
        The mean over the batch of
        ``||p_b / ||p_b|| - z_b / ||z_b|| ||^2 = 2 - 2 cos(p_b, z_b)``,
        in ``[0, 4]``. BYOL's full loss adds the symmetric direction
        (``byol_loss(p1, z2) + byol_loss(p2, z1)``).

    Example:
        >>> p, z = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = byol_loss(p, z)
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"p and z must both be (B, D), got {tuple(p.shape)} and {tuple(z.shape)}")
    with torch.autocast(p.device.type, enabled=False):  # the loss is computed in float32 (or float64)
        dtype = torch.promote_types(p.dtype, torch.float32)
        p = F.normalize(p.to(dtype), dim=1)
        z = F.normalize(z.to(dtype), dim=1)
        return (2 - 2 * (p * z).sum(dim=1)).mean()
