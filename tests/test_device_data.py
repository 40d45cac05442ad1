"""trainer.augment_on_device: the images kept on the training device, each
view made for the whole batch at once by the augmentation's batched path.
(On the CPU here; the same code runs on a GPU.)"""

from __future__ import annotations

import pytest
import torch

from sslx.engine.data import DeviceBatches
from sslx.engine.trainer import build
from sslx.errors import UserError

CPU = torch.device("cpu")


def device_batches(exp, parts, start_step=0, rank=0, world_size=1):
    return DeviceBatches(
        parts.dataset.split("train"),
        parts.sampler,
        parts.augmentation,
        exp.trainer.batch_size,
        exp.seed,
        start_step,
        CPU,
        rank,
        world_size,
    )


@pytest.mark.parametrize("experiment", ["simclr", "swav"])  # one size; multi-crop's two sizes
def test_views_are_reproducible_resumable_and_split_over_processes(experiment, tiny):
    exp = tiny(experiment, "trainer.augment_on_device=true")
    parts = build(exp)
    first = iter(device_batches(exp, parts))
    batches = [next(first) for _ in range(3)]
    again = next(iter(device_batches(exp, parts)))
    resumed = next(iter(device_batches(exp, parts, start_step=2)))
    shares = [next(iter(device_batches(exp, parts, rank=r, world_size=2))) for r in range(2)]
    batch = batches[0]
    assert len(batch.views) == parts.sampler.num_views and all(v.dtype == torch.float32 for v in batch.views)
    assert all(torch.equal(a, b) for a, b in zip(batch.views, again.views)), "the same seed, the same views"
    assert all(torch.equal(a, b) for a, b in zip(batches[2].views, resumed.views)), "a resumed run continues"
    assert torch.equal(torch.cat([s.index for s in shares]), batch.index)
    for v, view in enumerate(batch.views):
        assert torch.equal(torch.cat([s.views[v] for s in shares]), view), "each process makes its rows of the batch"
    assert not torch.equal(batch.views[0], batch.views[1]), "two views of a sample differ"
    assert not torch.equal(batch.views[0][0], batch.views[0][1]), "samples get their own crops"
    labels = torch.as_tensor(parts.dataset.split("train").labels)[batch.index]
    assert torch.equal(batch.label, labels)


def test_a_run_trains_with_views_made_on_the_device(tiny, host):
    from sslx.engine.trainer import MemoryRecorder, train

    recorder = MemoryRecorder()
    train(tiny("simclr", "trainer.augment_on_device=true", "evaluators=[]"), host, recorder)
    losses = [v for _, v in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_a_sampler_or_augmentation_without_a_device_path_is_refused(tiny):
    exp = tiny("jigsaw", "trainer.augment_on_device=true")  # tiles: no batched path
    parts = build(exp)
    with pytest.raises(
        UserError,
        match=r"trainer.augment_on_device needs an augmentation with a batched path .* "
        r"set trainer.augment_on_device to false",
    ):
        device_batches(exp, parts)
