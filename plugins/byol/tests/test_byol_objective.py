"""The BYOL objective: the loss it computes (online prediction against the
target projection of the other view, both directions), the target network
(frozen copy, EMA with the cosine momentum schedule, no gradient, in the
checkpoint), its parameters and the number of views."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from sslx_byol.objective import BYOL
from sslx_encoders.models import SmallCNN

import sslx
from sslx.config import TrainerParams
from sslx.engine.trainer import make_optimizer
from sslx.testing import train_step

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)


def make_byol(seed: int = 0, num_views: int = 2, total_steps: int = 20, **params) -> BYOL:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=total_steps, dataset_size=40)
    params = {"proj_hidden_dim": 10, "proj_dim": 6, "pred_hidden_dim": 10, **params}
    return BYOL(BYOL.Params(**params), encoder, info)


def random_batch(b: int = 4, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 8, 8, generator=gen) for _ in range(2)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def target_and_online_params(obj: BYOL) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    pairs = list(zip(obj.target_encoder.named_parameters(), obj.encoder.parameters(), strict=True))
    pairs += list(zip(obj.target_projector.named_parameters(), obj.projector.parameters(), strict=True))
    return [(name, target, online) for (name, target), online in pairs]


def cosine_schedule(start: float, end: float, step: int, total: int) -> float:
    """BYOL's tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, generalised to any end value."""
    return end - (end - start) * (math.cos(math.pi * min(step, total) / total) + 1) / 2


# -- the loss -------------------------------------------------------------------


def test_loss_regresses_each_view_on_the_target_projection_of_the_other():
    """loss = sum over both directions of mean_b (2 - 2 cos(q_b, z'_b)) with
    q = predictor(projector(encoder(view))) and z' = target_projector(
    target_encoder(other view)); the monitored embeddings are the online
    projections of the first view."""
    obj = make_byol()
    with torch.no_grad():  # start the target away from the online network so the roles differ
        for p in [*obj.target_encoder.parameters(), *obj.target_projector.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
    batch = random_batch()
    out = obj(batch)
    x = torch.cat(batch.views)
    with torch.no_grad():  # train-mode BatchNorm: same batch, same statistics, same outputs
        z = obj.projector(obj.encoder(x))
        q1, q2 = obj.predictor(z).double().chunk(2)
        t1, t2 = obj.target_projector(obj.target_encoder(x)).double().chunk(2)
    expected = (
        sum(
            2 - 2 * float(q[b] @ t[b]) / (float(q[b].norm()) * float(t[b].norm()))
            for q, t in ((q1, t2), (q2, t1))
            for b in range(4)
        )
        / 4
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0 <= out.loss.item() <= 8
    torch.testing.assert_close(out.embeddings, z.chunk(2)[0])
    assert not out.embeddings.requires_grad


def test_target_network_gets_no_gradient_and_the_online_one_does():
    obj = make_byol()
    obj(random_batch()).loss.backward()
    for name, p in [
        *obj.encoder.named_parameters(),
        *obj.projector.named_parameters(),
        *obj.predictor.named_parameters(),
    ]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for name, p in [*obj.target_encoder.named_parameters(), *obj.target_projector.named_parameters()]:
        assert not p.requires_grad and p.grad is None, name


def test_optimizer_never_sees_the_target_network():
    """The trainer's optimizer takes only trainable parameters, so the target
    moves only by its moving average."""
    obj = make_byol()
    opt = make_optimizer(obj, TrainerParams())
    in_optimizer = {id(p) for group in opt.param_groups for p in group["params"]}
    targets = {id(p) for p in [*obj.target_encoder.parameters(), *obj.target_projector.parameters()]}
    online = {id(p) for p in [*obj.encoder.parameters(), *obj.projector.parameters(), *obj.predictor.parameters()]}
    assert not in_optimizer & targets
    assert in_optimizer == online


# -- the target network -----------------------------------------------------------


def test_target_starts_as_a_frozen_copy_of_the_online_network():
    obj = make_byol()
    for name, target, online in target_and_online_params(obj):
        assert torch.equal(target, online), name
        assert not target.requires_grad and online.requires_grad
        assert target.data_ptr() != online.data_ptr()  # a copy, not shared storage


@pytest.mark.parametrize(
    "params,step,total",
    [
        ({"momentum": 0.9, "momentum_end": 0.99}, 7, 20),
        ({"momentum": 0.5, "momentum_end": 1.0}, 1, 20),
        ({"momentum": 0.6, "momentum_end": 0.6}, 13, 20),
        ({"momentum": 0.7, "momentum_end": 1.0}, 20, 20),
    ],
)
def test_on_step_end_applies_the_ema_with_the_scheduled_momentum(params, step, total):
    """After on_step_end(step): target = m * old_target + (1 - m) * online for
    every target-encoder and target-projector parameter (float64), with m from
    the cosine schedule written out here."""
    obj = make_byol(total_steps=total, **params)
    batch = random_batch()
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.5)
    obj(batch).loss.backward()
    opt.step()
    before = [
        (name, t.detach().double().clone(), o.detach().double().clone()) for name, t, o in target_and_online_params(obj)
    ]
    assert any(not torch.equal(t, o) for _, t, o in before)  # the step moved the online side
    m = cosine_schedule(params["momentum"], params["momentum_end"], step, total)
    assert obj.momentum_at(step) == pytest.approx(m, rel=1e-12)
    obj.on_step_end(step)
    for (name, target, _), (_, old_target, online) in zip(target_and_online_params(obj), before, strict=True):
        expected = m * old_target + (1 - m) * online
        torch.testing.assert_close(target.double(), expected, rtol=1e-6, atol=1e-7, msg=name)


def test_momentum_schedule_rises_along_a_cosine():
    obj = make_byol(momentum=0.9, momentum_end=0.999, total_steps=50)
    assert obj.momentum_at(0) == pytest.approx(0.9)
    assert obj.momentum_at(25) == pytest.approx((0.9 + 0.999) / 2)
    assert obj.momentum_at(50) == pytest.approx(0.999)
    assert obj.momentum_at(80) == pytest.approx(0.999)
    values = [obj.momentum_at(s) for s in range(51)]
    assert values == sorted(values)


def test_with_momentum_one_the_target_stays_put():
    """momentum_end = 1 at the last step: the target no longer moves."""
    obj = make_byol(momentum=0.9, momentum_end=1.0, total_steps=5)
    before = [t.clone() for _, t, _ in target_and_online_params(obj)]
    train_step(obj, random_batch(), step=5)
    for (name, t, _), old in zip(target_and_online_params(obj), before, strict=True):
        assert torch.equal(t, old), name


@pytest.mark.parametrize(
    "bad",
    [
        {"momentum": 0.99, "momentum_end": 0.9},  # the schedule only rises
        {"momentum": 1.5},
        {"momentum_end": -0.1},
        {"proj_dim": 0},
        {"pred_hidden_dim": 0},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        BYOL.Params(**bad)


def test_momentum_end_below_momentum_is_rejected_with_a_reason():
    with pytest.raises(pydantic.ValidationError, match=r"momentum_end \(0.9\) must be >= momentum \(0.99\)"):
        BYOL.Params(momentum=0.99, momentum_end=0.9)


# -- checkpoint state ---------------------------------------------------------------


def test_target_network_round_trips_through_the_state_dict():
    """The target encoder and projector are in the state dict, so a resumed
    run restores them; the restored objective continues exactly like the original."""
    a = make_byol(seed=0)
    for step in (1, 2):
        train_step(a, random_batch(seed=step), step)
    state = a.state_dict()
    assert any(k.startswith("target_encoder.") for k in state)
    assert any(k.startswith("target_projector.") for k in state)
    for name, target, _ in target_and_online_params(a):
        prefix = "target_encoder." if f"target_encoder.{name}" in state else "target_projector."
        assert torch.equal(state[prefix + name], target), name

    b = make_byol(seed=1)
    assert not torch.equal(b.target_projector[0].weight, a.target_projector[0].weight)
    b.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(b.state_dict()[key], value), key
    batch = random_batch(seed=9)
    assert torch.equal(train_step(a, batch, 3).loss, train_step(b, batch, 3).loss)
    for (name, ta, _), (_, tb, _) in zip(target_and_online_params(a), target_and_online_params(b), strict=True):
        assert torch.equal(ta, tb), name


# -- construction -----------------------------------------------------------------


@pytest.mark.parametrize("views", [1, 3])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError, match="'byol' needs 2 views per sample, but the sampler gives"):
        make_byol(num_views=views)
