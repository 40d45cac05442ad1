"""NT-Xent, SimCLR's normalised temperature-scaled cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslx import distributed


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True) -> torch.Tensor:
    """NT-Xent loss of two batches of projections (Chen et al., 2020,
    arXiv:2002.05709, eq. 1).

    ``z1[i]`` and ``z2[i]`` are the two views of sample ``i``; every other view
    in the batch is a negative. With ``gather`` and several processes, the
    negatives come from every process's batch (gradients flow back to each).

    Args:
        z1, z2: ``(B, D)`` projections (normalised here).
        temperature: softmax temperature, > 0.

    Returns:
        The mean over the ``2B`` local views of
        ``-log(exp(s_pos / t) / sum_{k != self} exp(s_k / t))``, with ``s``
        the cosine similarities.

    Example:
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = nt_xent(z1, z2, temperature=0.5)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    with torch.autocast(z1.device.type, enabled=False):  # the loss is computed in float32 (or float64)
        return _nt_xent(z1, z2, temperature, gather)


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool) -> torch.Tensor:
    dtype = torch.promote_types(z1.dtype, torch.float32)
    z1 = F.normalize(z1.to(dtype), dim=1)
    z2 = F.normalize(z2.to(dtype), dim=1)
    b = z1.shape[0]
    if gather:
        k1, k2 = distributed.gather(z1), distributed.gather(z2)
        offset = distributed.rank() * b
    else:
        k1, k2, offset = z1, z2, 0
    n = k1.shape[0]  # samples across processes
    queries = torch.cat([z1, z2])  # (2B, D)
    keys = torch.cat([k1, k2])  # (2N, D)
    logits = queries @ keys.T / temperature
    rows = torch.arange(b, device=z1.device)
    own = torch.cat([rows + offset, rows + offset + n])  # each query's own column
    positive = torch.cat([rows + offset + n, rows + offset])
    logits[torch.arange(2 * b, device=z1.device), own] = float("-inf")
    return F.cross_entropy(logits, positive)
