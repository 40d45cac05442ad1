"""The MoCo objective: the momentum (EMA) key encoder and its schedule, the
key queue (what the loss reads, what is enqueued and where), checkpoint state,
and the symmetric variant."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
import torch.nn.functional as F
from sslx_encoders.models import SmallCNN
from sslx_moco.objective import MoCo

import sslx
from sslx.testing import train_step

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)
PROJ_DIM = 6


def make_moco(seed: int = 0, num_views: int = 2, total_steps: int = 20, **params) -> MoCo:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=total_steps, dataset_size=40)
    params = {"queue_size": 10, "proj_dim": PROJ_DIM, **params}
    return MoCo(MoCo.Params(**params), encoder, info)


def random_batch(b: int = 4, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 8, 8, generator=gen) for _ in range(2)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def infonce_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> float:
    """MoCo eq. 1 with loops in float64."""
    q, k, queue = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1), queue.double()
    total = 0.0
    for i in range(len(q)):
        logits = [float(q[i] @ k[i]) / t] + [float(q[i] @ queue[j]) / t for j in range(len(queue))]
        total -= logits[0] - math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


def key_and_query_params(obj: MoCo) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    pairs = list(zip(obj.key_encoder.named_parameters(), obj.encoder.parameters(), strict=True))
    pairs += list(zip(obj.key_projector.named_parameters(), obj.projector.parameters(), strict=True))
    return [(name, key, query) for (name, key), query in pairs]


# -- momentum encoder ---------------------------------------------------------


def test_key_networks_start_as_frozen_copies():
    obj = make_moco()
    for name, key, query in key_and_query_params(obj):
        assert torch.equal(key, query), name
        assert not key.requires_grad and query.requires_grad
        assert key.data_ptr() != query.data_ptr()  # a copy, not shared storage


@pytest.mark.parametrize(
    "params,step",
    [
        ({"momentum": 0.9, "momentum_end": 0.99}, 7),
        ({"momentum": 0.5, "momentum_end": 1.0}, 1),
        ({"momentum": 0.8, "momentum_schedule": "constant"}, 13),
        ({"momentum": 0.0, "momentum_schedule": "constant"}, 3),
    ],
)
def test_on_step_end_applies_the_ema_with_the_scheduled_momentum(params, step):
    """After on_step_end(step): key = m * old_key + (1 - m) * query for every
    key-encoder and key-projector parameter (float64 reference), with
    m = momentum_at(step); key parameters get no gradient."""
    obj = make_moco(**params)
    batch = random_batch()
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.5)
    obj(batch).loss.backward()
    opt.step()
    before = [
        (name, key.detach().double().clone(), query.detach().double().clone())
        for name, key, query in key_and_query_params(obj)
    ]
    assert any(not torch.equal(k, q) for _, k, q in before)  # the step moved the query side
    m = obj.momentum_at(step)
    obj.on_step_end(step)
    for (name, key, _), (_, old_key, query) in zip(key_and_query_params(obj), before, strict=True):
        assert key.grad is None, name
        expected = m * old_key + (1 - m) * query
        torch.testing.assert_close(key.double(), expected, rtol=1e-6, atol=1e-7, msg=name)


def test_momentum_schedule_cosine():
    """Cosine: `momentum` at step 0, `momentum_end` at total_steps (and
    after), the explicit cosine formula in between."""
    obj = make_moco(momentum=0.9, momentum_end=0.999, total_steps=50)
    assert obj.momentum_at(0) == pytest.approx(0.9)
    assert obj.momentum_at(50) == pytest.approx(0.999)
    assert obj.momentum_at(80) == pytest.approx(0.999)
    assert obj.momentum_at(25) == pytest.approx((0.9 + 0.999) / 2)
    for s in (1, 10, 33, 49):
        expected = 0.999 - (0.999 - 0.9) * (math.cos(math.pi * s / 50) + 1) / 2
        assert obj.momentum_at(s) == pytest.approx(expected)
    values = [obj.momentum_at(s) for s in range(51)]
    assert values == sorted(values)


def test_momentum_schedule_constant():
    obj = make_moco(momentum=0.97, momentum_end=0.5, momentum_schedule="constant", total_steps=50)
    assert {obj.momentum_at(s) for s in (0, 1, 25, 50, 100)} == {0.97}


@pytest.mark.parametrize(
    "bad",
    [
        {"momentum": 0.99, "momentum_end": 0.9},  # cosine must not decrease
        {"momentum": 1.5},
        {"queue_size": 0},
        {"temperature": 0.0},
        {"momentum_schedule": "linear"},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        MoCo.Params(**bad)


# -- queue --------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
@pytest.mark.parametrize("start_ptr,b", [(0, 4), (8, 4), (9, 3)])
def test_loss_reads_the_old_queue_and_keys_are_enqueued_after_the_step(start_ptr, b, temperature):
    """forward's loss is InfoNCE of q = projector(encoder(view 1)) against
    k = normalise(key_projector(key_encoder(view 2))) and the queue as it was
    before the batch; the queue does not change during forward; on_step_end
    writes k at ptr (wrapping around) and advances ptr by B mod size."""
    obj = make_moco(temperature=temperature)
    obj.queue.ptr.fill_(start_ptr)
    queue_before = obj.queue.features.clone()
    batch = random_batch(b)
    out = obj(batch)
    assert torch.equal(obj.queue.features, queue_before) and int(obj.queue.ptr) == start_ptr

    with torch.no_grad():  # train-mode BatchNorm: same batch, same statistics, same outputs
        q = obj.projector(obj.encoder(batch.views[0]))
        k = F.normalize(obj.key_projector(obj.key_encoder(batch.views[1])), dim=1)
    assert out.loss.item() == pytest.approx(infonce_reference(q, k, queue_before, temperature), rel=1e-5)
    torch.testing.assert_close(out.embeddings, q)

    out.loss.backward()
    obj.on_step_end(1)
    slots = [(start_ptr + i) % 10 for i in range(b)]
    torch.testing.assert_close(obj.queue.features[slots], k, rtol=1e-5, atol=1e-6)
    others = [i for i in range(10) if i not in slots]
    assert torch.equal(obj.queue.features[others], queue_before[others])
    assert int(obj.queue.ptr) == (start_ptr + b) % 10
    # the check above can tell the two queues apart: with the new queue the loss differs
    assert abs(infonce_reference(q, k, obj.queue.features, temperature) - out.loss.item()) > 1e-3


def test_queue_is_fifo_over_steps():
    """Over several steps the newest keys overwrite the oldest first: read
    from ptr, the queue is the last `queue_size` keys in the order they came
    (the initial random rows counting as the oldest)."""
    obj = make_moco(queue_size=10)
    history = list(obj.queue.features.clone())
    for step in range(1, 4):  # 3 steps of 4 keys into 10 slots
        batch = random_batch(4, seed=step)
        with torch.no_grad():
            history += list(F.normalize(obj.key_projector(obj.key_encoder(batch.views[1])), dim=1))
        train_step(obj, batch, step)
    assert int(obj.queue.ptr) == 2
    oldest_first = torch.roll(obj.queue.features, -2, dims=0)
    torch.testing.assert_close(oldest_first, torch.stack(history[-10:]), rtol=1e-5, atol=1e-6)


def test_only_query_networks_get_gradients():
    obj = make_moco()
    obj(random_batch()).loss.backward()
    for name, p in [*obj.encoder.named_parameters(), *obj.projector.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for name, p in [*obj.key_encoder.named_parameters(), *obj.key_projector.named_parameters()]:
        assert p.grad is None, name
    assert obj.queue.features.grad is None


# -- checkpoint state ---------------------------------------------------------


def test_queue_key_networks_and_ptr_round_trip_through_the_state_dict():
    a = make_moco(seed=0)
    for step in (1, 2):
        train_step(a, random_batch(4, seed=step), step)
    state = a.state_dict()
    assert {"queue.features", "queue.ptr"} <= set(state)
    assert any(k.startswith("key_encoder.") for k in state) and any(k.startswith("key_projector.") for k in state)
    assert int(state["queue.ptr"]) == 8

    b = make_moco(seed=1)
    assert not torch.equal(b.queue.features, a.queue.features)
    b.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(b.state_dict()[key], value), key
    # and the restored objective continues exactly like the original
    batch = random_batch(4, seed=9)
    loss_a, loss_b = train_step(a, batch, 3).loss, train_step(b, batch, 3).loss
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(a.queue.features, b.queue.features) and int(a.queue.ptr) == int(b.queue.ptr) == 2
    for (name, ka, _), (_, kb, _) in zip(key_and_query_params(a), key_and_query_params(b)):
        assert torch.equal(ka, kb), name


# -- symmetric variant --------------------------------------------------------


def test_symmetric_loss_averages_both_directions_and_enqueues_2b_keys():
    obj = make_moco(symmetric=True, temperature=0.2)
    obj.queue.ptr.fill_(7)
    queue_before = obj.queue.features.clone()
    batch = random_batch(4)
    x1, x2 = batch.views
    out = obj(batch)
    assert out.loss.shape == () and torch.isfinite(out.loss)

    with torch.no_grad():
        q1, q2 = obj.projector(obj.encoder(torch.cat([x1, x2]))).chunk(2)
        k = F.normalize(obj.key_projector(obj.key_encoder(torch.cat([x2, x1]))), dim=1)
    k_of_view2, k_of_view1 = k.chunk(2)
    expected = 0.5 * (
        infonce_reference(q1, k_of_view2, queue_before, 0.2) + infonce_reference(q2, k_of_view1, queue_before, 0.2)
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)

    out.loss.backward()
    obj.on_step_end(1)
    assert int(obj.queue.ptr) == (7 + 8) % 10
    slots = [(7 + i) % 10 for i in range(8)]
    torch.testing.assert_close(obj.queue.features[slots], k, rtol=1e-5, atol=1e-6)


# -- construction -------------------------------------------------------------


@pytest.mark.parametrize("views", [1, 3])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError, match="2 views"):
        make_moco(num_views=views)
