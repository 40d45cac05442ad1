"""Trainer building blocks: schedule, data determinism, collapse metric,
optimizer groups, atomic checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from sslx.config import TrainerParams
from sslx.engine import checkpoint as ckpt
from sslx.engine.data import SeededBatchSampler, ViewDataset, train_loader
from sslx.engine.trainer import MemoryRecorder, build, embedding_std, lr_at, make_optimizer, total_steps, train
from sslx.errors import UserError
from sslx.modules import cosine_momentum


def test_lr_schedule_warmup_then_cosine():
    t = TrainerParams(lr=1.0, warmup_steps=4, final_lr_ratio=0.1)
    total = 14
    lrs = [lr_at(t, s, total) for s in range(total)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    for s in range(4, total):
        progress = (s - 4) / 10
        assert lrs[s] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lr_at(TrainerParams(lr=0.3, schedule="constant"), 7, 10) == 0.3


def test_total_steps_and_a_batch_larger_than_the_data():
    assert total_steps(TrainerParams(batch_size=10, epochs=3), 105) == 30
    assert total_steps(TrainerParams(batch_size=10, epochs=3, max_steps=7), 105) == 7
    with pytest.raises(UserError, match=r"batch_size \(256\) is larger than the training split \(100 items\)"):
        total_steps(TrainerParams(batch_size=256), 100)


def test_batch_order_is_seeded_covers_each_epoch_and_resumes_mid_stream():
    sampler = SeededBatchSampler(size=50, batch_size=8, seed=3)
    stream = iter(sampler)
    batches = [next(stream) for _ in range(13)]  # 6 per epoch: two epochs and one more batch
    epoch0 = [i for b in batches[:6] for i, _ in b]
    assert len(set(epoch0)) == 48 and all(0 <= i < 50 for i in epoch0)
    assert [i for b in batches[6:12] for i, _ in b] != epoch0, "each epoch has its own order"
    assert len({seed for b in batches for _, seed in b}) == 13 * 8, "one augmentation seed per sample"
    resumed = iter(SeededBatchSampler(size=50, batch_size=8, seed=3, start_step=5))
    assert [next(resumed) for _ in range(8)] == batches[5:13]
    other = iter(SeededBatchSampler(size=50, batch_size=8, seed=4))
    assert next(other) != batches[0]


def test_each_process_gets_its_share_of_the_same_global_batches():
    """Under DDP, rank r of W gets positions r*n/W to (r+1)*n/W of every
    global batch: the same items with the same seeds as in one process."""
    whole = iter(SeededBatchSampler(size=50, batch_size=8, seed=3, start_step=2))
    shares = [
        iter(SeededBatchSampler(size=50, batch_size=8, seed=3, start_step=2, rank=r, world_size=4)) for r in range(4)
    ]
    for _ in range(7):  # across an epoch boundary
        assert next(whole) == [key for share in shares for key in next(share)]
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        SeededBatchSampler(size=50, batch_size=8, seed=3, world_size=3)


def test_views_of_an_item_do_not_depend_on_its_batch(tiny):
    """An item's views are a function of its key (index, seed), not of the
    other items fetched with it: a process holding half of a global batch
    makes exactly the views one process makes for that half."""
    parts = build(tiny("simclr"))
    dataset = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation)
    keys = next(iter(SeededBatchSampler(size=len(dataset), batch_size=8, seed=5)))
    whole, half = dataset.__getitems__(keys), dataset.__getitems__(keys[4:])
    for v in range(2):
        assert torch.equal(whole.views[v][4:], half.views[v])


def test_views_do_not_depend_on_the_number_of_workers(tiny):
    """A seeded run sees the same batches with 0 or 2 loader workers."""
    exp = tiny("simclr")
    parts = build(exp)
    dataset = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation)

    def first_batches(workers):
        it = iter(train_loader(dataset, 32, seed=0, start_step=0, num_workers=workers, pin_memory=False))
        return [next(it) for _ in range(3)]

    for a, b in zip(first_batches(0), first_batches(2)):
        assert torch.equal(a.index, b.index) and torch.equal(a.label, b.label)
        for va, vb in zip(a.views, b.views):
            assert torch.equal(va, vb)
    batch = first_batches(0)[0]
    assert not torch.equal(batch.views[0], batch.views[1]), "two views of a sample differ"
    assert batch.views[0].shape == (32, 1, 28, 28) and batch.views[0].dtype == torch.float32


def test_seeded_runs_are_reproducible(tiny, host):
    exp = tiny("moco", "trainer.max_steps=3")
    a, b = MemoryRecorder(), MemoryRecorder()
    ra, rb = train(exp, host, a), train(exp, host, b)
    assert a.metrics["train.loss"] == b.metrics["train.loss"] and ra == rb
    c = MemoryRecorder()
    train(tiny("moco", "trainer.max_steps=3", "seed=1"), host, c)
    assert c.metrics["train.loss"] != a.metrics["train.loss"]


def test_embedding_std_against_formula():
    z = torch.randn(64, 16, dtype=torch.float64)
    zn = z / z.norm(dim=1, keepdim=True)
    mean = zn.mean(0)
    std = ((zn - mean) ** 2).sum(0).div(63).sqrt().mean()
    assert embedding_std(z) == pytest.approx(float(std), rel=1e-5)
    collapsed = torch.ones(32, 8) + 1e-9 * torch.randn(32, 8)
    assert embedding_std(collapsed) < 1e-6


def test_optimizer_exempts_biases_and_norms_from_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = make_optimizer(model, TrainerParams(weight_decay=0.1))
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and {p.ndim for p in decayed["params"]} == {2}
    assert free["weight_decay"] == 0.0 and len(free["params"]) == 4  # 2 biases + BN weight and bias


def test_cosine_momentum_schedule():
    assert cosine_momentum(0.99, 1.0, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 1.0, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0, 100, 100) == pytest.approx(1.0)


def test_checkpoints_are_written_atomically(tmp_path):
    path = tmp_path / "ck.pt"
    ckpt.save_atomic({"step": 1, "w": torch.ones(3)}, path)
    ckpt.save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    assert ckpt.load(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"], "no temporary file left behind"
    path.write_bytes(b"torn")
    with pytest.raises(UserError, match="cannot read the checkpoint"):
        ckpt.load(path)
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        ckpt.find_checkpoint(tmp_path / "nothing")


def test_creating_loaders_leaves_the_global_rng_alone(tiny):
    """Objectives draw from torch's global RNG (sampled negatives) and
    checkpoints restore it, so the data pipeline must not consume it."""
    parts = build(tiny("simclr"))
    dataset = ViewDataset(parts.dataset.split("train"), parts.sampler, parts.augmentation)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for workers in (0, 1):
        next(iter(train_loader(dataset, 32, seed=0, start_step=0, num_workers=workers, pin_memory=False)))
    assert torch.equal(torch.rand(3), expected)


def test_eval_at_start_logs_the_untrained_scores_at_step_0(tiny, host):
    exp = tiny("simclr", "trainer.eval_at_start=true", "trainer.max_steps=2")
    rec = MemoryRecorder()
    train(exp, host, rec)
    (s0, untrained), (s2, trained) = rec.metrics["eval.knn_top1"]
    assert (s0, s2) == (0, 2) and 0 <= untrained <= 1 and 0 <= trained <= 1
    assert [s for s, _ in rec.metrics["train.loss"]] == [2], "evaluating first does not shift the steps"


@pytest.mark.slow
def test_compiled_step_and_fused_optimizer_train_like_the_plain_ones(tiny, host):
    """trainer.compile (torch.compile of the objective) and
    trainer.fused_optimizer give the plain run's losses up to float rounding."""
    from sslx.engine.trainer import MemoryRecorder, train

    losses = {}
    for sets in ((), ("trainer.compile=true", "trainer.fused_optimizer=true")):
        recorder = MemoryRecorder()
        train(
            tiny("simclr", "evaluators=[]", "trainer.max_steps=4", "trainer.log_every=1", "trainer.lr=0.01", *sets),
            host,
            recorder,
        )  # at rate 0.06 this tiny model is chaotic (see test_distributed)
        losses[sets] = [v for _, v in recorder.metrics["train.loss"]]
    plain, fast = losses.values()
    assert len(fast) == 4 and fast == pytest.approx(plain, rel=1e-3)
