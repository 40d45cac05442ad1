"""Collective helpers that every objective uses, no-ops in a single process.

Objectives never call ``torch.distributed`` directly: they call these, so the
same code is right in one process and under DDP (where negatives, queues and
banks must see every process's samples).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, keeping the
    gradient path to this process's slice (for negatives such as SimCLR's)."""
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, without gradient
    (for queue and memory-bank updates)."""
    if not is_distributed():
        return tensor
    out = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def mean_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over processes (for logged metrics)."""
    if not is_distributed():
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out / world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over processes, differentiable (for statistics over
    the global batch: Sinkhorn marginals, cross-correlations, variances)."""
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)
