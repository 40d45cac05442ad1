"""Several processes, one run: torch.distributed set-up and the collective
helpers that objectives use.

A run is distributed when it is started by ``torchrun`` (or ``sslx run
--nproc N``, which calls torchrun's own launcher): every process then finds
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment, and
:func:`process_group` joins them (NCCL on GPUs, gloo on the CPU). Objectives
never call ``torch.distributed`` directly: they call the helpers below, which
are no-ops in a single process, so the same code is right in one process and
under DDP (where negatives, queues, banks and batch statistics must see every
process's samples).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from sslx.errors import UserError

__all__ = [
    "GlobalBatchNorm",
    "all_reduce_sum",
    "barrier",
    "gather",
    "gather_no_grad",
    "is_distributed",
    "is_main_process",
    "local_part",
    "mean_across_processes",
    "own_rows",
    "rank",
    "world_size",
]

# How long a process waits in a collective for the others, e.g. while rank 0
# runs the evaluators mid-training (SSLX_DIST_TIMEOUT, in seconds).
DEFAULT_TIMEOUT_S = 3600


def is_distributed() -> bool:
    """Whether this process belongs to a process group (a run under DDP)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes of the run (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank, ``0 .. world_size() - 1`` (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Whether this is rank 0, the process that records the run."""
    return rank() == 0


def backend() -> str | None:
    """The process group's backend (``"nccl"``, ``"gloo"``), or None."""
    return str(dist.get_backend()) if is_distributed() else None


# ----------------------------------------------------------------------------
# the launch: what torchrun told this process


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 outside a launch); known
    before the process group exists, so rank 0 alone can open the records."""
    return int(os.environ.get("RANK", "0"))


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _timeout() -> timedelta:
    raw = os.environ.get("SSLX_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        return timedelta(seconds=float(raw))
    except ValueError:
        raise UserError(f"SSLX_DIST_TIMEOUT is {raw!r}: expected a number of seconds, e.g. 3600.") from None


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join the launch's process group for the duration of a run and yield
    this process's device (``cuda:LOCAL_RANK`` on GPUs). Outside a launch, or
    when the group already exists (tests that start it themselves), it only
    yields ``device``."""
    if launched_world_size() <= 1 or is_distributed():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        timeout=_timeout(),
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield device
        dist.barrier()  # no process tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


def lost_contact(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another process of
    the group went away (gloo's connection reset, an NCCL error, a timeout)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer", "timed out")
    )


def barrier() -> None:
    """Wait until every process has arrived here (a no-op in one process)."""
    if is_distributed():
        dist.barrier()


# ----------------------------------------------------------------------------
# collectives for objectives


def _world() -> dist.ProcessGroup:
    group = dist.group.WORLD
    assert group is not None, "called only when the process group exists"
    return group


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, keeping the
    gradient path to this process's slice (for negatives such as SimCLR's)."""
    if not is_distributed():
        return tensor
    from torch.distributed import _functional_collectives as fc  # differentiable: backward reduce-scatters

    return fc.wait_tensor(fc.all_gather_single(tensor.contiguous(), 0, _world()))


def own_rows(local_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The indices of this process's rows in a tensor made by :func:`gather`
    (or :func:`gather_no_grad`) from ``local_size`` rows per process:
    ``rank() * local_size + arange(local_size)``. A contrastive loss masks
    each query's own column and finds its positive with them::

        keys = gather(z)                        # (world_size * B, D), every process's rows
        logits = z @ keys.T                     # (B, world_size * B)
        mine = own_rows(len(z), z.device)       # where this process's rows sit among the keys
        logits[torch.arange(len(z)), mine] = float("-inf")

    In one process it is ``arange(local_size)``."""
    return torch.arange(local_size, device=device) + rank() * local_size


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
    from torch.distributed import _functional_collectives as fc  # differentiable: backward all-reduces

    return fc.wait_tensor(fc.all_reduce(tensor, "sum", _world()))


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's rows of a tensor that every process computed the same
    way for the whole global batch (rank r holds rows ``r*n/W`` to
    ``(r+1)*n/W``, the rows of its samples).

    For per-sample random draws inside an objective: draw for the global
    batch from the shared generator (seeded alike on every process) and keep
    the local part, so the draws do not depend on the number of processes::

        labels = local_part(torch.randint(4, (len(batch) * world_size(),)))
    """
    if not is_distributed():
        return tensor
    n, w = tensor.shape[0], world_size()
    if n % w:
        raise ValueError(f"local_part needs a first dimension divisible by the {w} processes, got {n}")
    return tensor[rank() * (n // w) : (rank() + 1) * (n // w)]


# ----------------------------------------------------------------------------
# batch normalisation over the global batch


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics are those of the global
    batch (every process's samples), for any input rank and on any device:
    the mean and the biased variance come from differentiable all-reduces, so
    gradients flow to every process's inputs. In one process, or in eval
    mode, it is exactly ``nn.BatchNorm``. Its state dict has BatchNorm's keys,
    so checkpoints load into plain models.

    ``torch.nn.SyncBatchNorm`` does this with fused kernels but accepts only
    GPU tensors; :func:`convert_sync_batchnorm` uses it on GPUs and this
    class elsewhere.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed() and world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input if input.dtype == torch.float64 else input.float()  # statistics in float32 at least
        count = all_reduce_sum(torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device).detach())
        mean = all_reduce_sum(x.sum(dims)) / count.to(x.dtype)
        centered = x - mean.view(shape)
        var = all_reduce_sum(centered.square().sum(dims)) / count.to(x.dtype)  # biased, as BatchNorm normalises
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(count))
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by one with global-batch
    statistics (``torch.nn.SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm`
    elsewhere), keeping parameters, buffers and train/eval mode."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        with torch.no_grad():
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module
