"""Sinkhorn-Knopp under DDP: two CPU processes (gloo), each holding half of
the batch, get exactly the codes that one process computes on the whole
batch, also when the halves have very different maxima and when SwAV's
queue (the same on every process) joins the Sinkhorn batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sslx_encoders.models import SmallCNN
from sslx_swav.loss import sinkhorn
from sslx_swav.objective import SwAV

import sslx

WORLD = 2
B, K, DIM, QUEUE = 10, 7, 6, 9  # B per process
DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch's scores (rank r holds rows r*B to (r+1)*B - 1; rank
    1's are much lower, so the processes' maxima differ) and unit
    projections for a queue."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(WORLD * B, K, generator=gen) * 2 - 1
    scores[B:] -= 3.0
    queue = F.normalize(torch.randn(QUEUE, DIM, generator=gen), dim=1)
    return scores, queue


def make_swav() -> SwAV:
    torch.manual_seed(0)  # the same prototypes on every process
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=1), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=2, batch_size=WORLD * B, total_steps=10, dataset_size=100)
    return SwAV(SwAV.Params(num_prototypes=K, proj_dim=DIM, queue_length=QUEUE, epsilon=0.1), encoder, info)


def worker(rank: int, store: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        scores, queue = inputs()
        mine = scores[rank * B : (rank + 1) * B]
        codes = sinkhorn(mine.double(), 0.05, 3)
        obj = make_swav()
        obj.queues[0].features.copy_(queue)
        obj.queue_filled.fill_(QUEUE)
        batch_scores = mine[:, :K] * 0.3  # any (B, K) scores: cosine-sized
        queue_codes = obj._codes(batch_scores, obj.queues[0], obj.prototypes.weight.detach())
        torch.save({"codes": codes, "queue_codes": queue_codes}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    scores, queue = inputs()

    expected = sinkhorn(scores.double(), 0.05, 3)
    torch.testing.assert_close(torch.cat([r["codes"] for r in results]), expected, rtol=1e-12, atol=1e-14)
    # a per-process maximum would have changed the codes: the check can tell
    per_process = torch.cat([sinkhorn(scores[:B].double(), 0.05, 3), sinkhorn(scores[B:].double(), 0.05, 3)])
    assert (per_process - expected).abs().max() > 1e-3

    # with the queue: one Sinkhorn over [every queued projection once; the global batch]
    weight = make_swav().prototypes.weight.detach()
    global_scores = torch.cat([queue @ weight.T, scores * 0.3])
    expected_with_queue = sinkhorn(global_scores, 0.1, 3)[QUEUE:]
    got = torch.cat([r["queue_codes"] for r in results])
    torch.testing.assert_close(got, expected_with_queue, rtol=1e-5, atol=1e-6)
