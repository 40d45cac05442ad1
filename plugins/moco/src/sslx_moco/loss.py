"""The MoCo contrastive loss: one positive key against a queue of negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of MoCo (He et al., 2020, arXiv:1911.05722, eq. 1).

    Args:
        q: ``(B, D)`` queries (normalised here).
        k: ``(B, D)`` positive keys, one per query (normalised here; no gradient).
        queue: ``(K, D)`` negative keys (used as given, normally unit rows).
        temperature: softmax temperature, > 0.

    Returns:
        The mean over queries of
        ``-log(exp(q.k+ / t) / (exp(q.k+ / t) + sum_j exp(q.queue_j / t)))``.

    Example:
        >>> q, k = torch.randn(4, 8), torch.randn(4, 8)
        >>> queue = F.normalize(torch.randn(32, 8), dim=1)
        >>> loss = moco_infonce(q, k, queue, temperature=0.2)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(q.device.type, enabled=False):
        dtype = torch.promote_types(q.dtype, torch.float32)
        q = F.normalize(q.to(dtype), dim=1)
        k = F.normalize(k.to(dtype), dim=1).detach()
        positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        negative = q @ queue.to(dtype).T  # (B, K)
        logits = torch.cat([positive, negative], dim=1) / temperature
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)
