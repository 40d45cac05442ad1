"""The SwAV objective: what it computes from a batch (code views, one
encoder pass per view size, the loss against the loss function on the same
scores), unit prototypes, the prototype freeze, the queue (when it is read
and when it is filled), checkpoint state, and the errors a user can meet."""

from __future__ import annotations

import pydantic
import pytest
import torch
import torch.nn.functional as F
from sslx_encoders.models import SmallCNN
from sslx_swav.loss import sinkhorn, swapped_prediction
from sslx_swav.objective import SwAV

import sslx
from sslx.testing import train_step

DATA = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,), num_classes=None)
K = 12


def make_swav(seed: int = 0, num_views: int = 6, **params) -> SwAV:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=20, dataset_size=40)
    params = {"num_prototypes": K, "proj_dim": 6, "freeze_prototypes_steps": 0, **params}
    return SwAV(SwAV.Params(**params), encoder, info)


def multicrop_batch(b: int = 4, n_large: int = 2, n_small: int = 4, seed: int = 1) -> sslx.Batch:
    """What sampler crops with augmentation multicrop gives: large 28 px views first, then small 16 px ones."""
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 28, 28, generator=gen) for _ in range(n_large)]
    views += [torch.randn(b, 1, 16, 16, generator=gen) for _ in range(n_small)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def projections(obj: SwAV, batch: sslx.Batch) -> list[torch.Tensor]:
    """Each view's unit projection, computed independently of forward: one
    encoder pass for the large views and one for the small ones (train-mode
    BatchNorm: the same groups give the same statistics)."""
    with torch.no_grad():
        large = obj.encoder(torch.cat(batch.views[:2]))
        small = obj.encoder(torch.cat(batch.views[2:]))
        z = F.normalize(obj.projector(torch.cat([large, small])), dim=1)
    return list(z.chunk(len(batch.views)))


# -- what forward computes ------------------------------------------------------


@pytest.mark.parametrize("temperature,epsilon", [(0.1, 0.05), (0.5, 0.1)])
def test_multicrop_loss_is_swapped_prediction_of_the_large_views_codes(temperature, epsilon):
    """2 large + 4 small views: codes are Sinkhorn on the 2 large views'
    scores, every view predicts them; the loss is finite, matches the loss
    function on independently computed scores, and reaches the encoder,
    the projector and the prototypes."""
    obj = make_swav(temperature=temperature, epsilon=epsilon)
    batch = multicrop_batch()
    out = obj(batch)
    assert out.loss.shape == () and torch.isfinite(out.loss)

    z = projections(obj, batch)
    scores = [zv.double() @ obj.prototypes.weight.detach().double().T for zv in z]
    codes = [sinkhorn(scores[i], epsilon, 3) for i in (0, 1)]
    expected = swapped_prediction(scores, codes, [0, 1], temperature)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-4)
    torch.testing.assert_close(out.embeddings, z[0], rtol=1e-5, atol=1e-6)
    assert not out.embeddings.requires_grad
    entropy = -torch.special.xlogy(torch.cat(codes), torch.cat(codes)).sum(dim=1).mean()
    assert out.metrics["code_entropy"].item() == pytest.approx(entropy.item(), rel=1e-3)
    assert not out.metrics["code_entropy"].requires_grad

    out.loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_encoder_runs_once_per_view_size():
    obj = make_swav()
    calls = []
    obj.encoder.register_forward_hook(lambda module, args, output: calls.append(tuple(args[0].shape)))
    obj(multicrop_batch(b=3))
    assert calls == [(6, 1, 28, 28), (12, 1, 16, 16)]


def test_views_of_one_size_are_all_code_views():
    """With the plain crops sampler every view has the same size: each is a
    code view and predicts the codes of all the others."""
    obj = make_swav(num_views=3)
    batch = multicrop_batch(n_large=3, n_small=0)
    out = obj(batch)
    with torch.no_grad():
        z = F.normalize(obj.projector(obj.encoder(torch.cat(batch.views))), dim=1).chunk(3)
    scores = [zv.double() @ obj.prototypes.weight.detach().double().T for zv in z]
    expected = swapped_prediction(scores, [sinkhorn(s, 0.05, 3) for s in scores], [0, 1, 2], 0.1)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_prototypes_are_unit_rows_after_a_forward():
    obj = make_swav()
    with torch.no_grad():
        obj.prototypes.weight.mul_(torch.linspace(0.1, 5.0, K)[:, None])
    direction = F.normalize(obj.prototypes.weight.detach().clone(), dim=1)
    train_step(obj, multicrop_batch(), 1)  # the step moves them off the sphere again
    assert not torch.allclose(obj.prototypes.weight.norm(dim=1), torch.ones(K), atol=1e-4)
    obj(multicrop_batch(seed=2))
    torch.testing.assert_close(obj.prototypes.weight.norm(dim=1), torch.ones(K))
    # and the normalisation only rescales each row: with lr 0, directions are kept
    obj2 = make_swav()
    with torch.no_grad():
        obj2.prototypes.weight.mul_(torch.linspace(0.1, 5.0, K)[:, None])
    obj2(multicrop_batch())
    torch.testing.assert_close(obj2.prototypes.weight, direction)


def test_prototypes_get_no_gradient_while_frozen():
    """freeze_prototypes_steps=2: optimizer steps 1 and 2 leave the
    prototypes without gradient (and unchanged), the encoder still learns;
    from step 3 on the prototypes get a gradient."""
    obj = make_swav(freeze_prototypes_steps=2)
    for step in (1, 2):
        assert obj.prototypes_frozen
        before = obj.prototypes.weight.detach().clone()
        opt = torch.optim.SGD(obj.parameters(), lr=0.5)
        out = obj(multicrop_batch(seed=step))
        out.loss.backward()
        assert obj.prototypes.weight.grad is None
        assert obj.encoder.blocks[0][0].weight.grad.abs().sum() > 0
        opt.step()
        obj.on_step_end(step)
        torch.testing.assert_close(obj.prototypes.weight, before)  # unit rows already, not moved
        assert int(obj.steps_done) == step
    assert not obj.prototypes_frozen
    obj(multicrop_batch(seed=3)).loss.backward()
    assert obj.prototypes.weight.grad is not None and obj.prototypes.weight.grad.abs().sum() > 0


# -- queue ------------------------------------------------------------------------


def test_queue_is_filled_after_each_step_and_read_from_queue_start_step():
    """queue_length 6, queue_start_step 2, batches of 4: the large views'
    projections are enqueued in on_step_end (not in forward); before step 2
    the codes use the batch alone, from step 2 Sinkhorn runs over [the
    filled queue rows; the batch] and only the batch's codes are used."""
    obj = make_swav(queue_length=6, queue_start_step=2)
    assert len(obj.queues) == 6 and int(obj.queue_filled) == 0
    initial = [q.features.clone() for q in obj.queues]

    batch1 = multicrop_batch(seed=1)
    out = obj(batch1)
    assert not obj.queue_active
    assert all(torch.equal(q.features, f) for q, f in zip(obj.queues, initial))  # forward does not enqueue
    z1 = projections(obj, batch1)
    out.loss.backward()
    obj.on_step_end(1)
    assert int(obj.queue_filled) == 4
    for v in (0, 1):  # the code views' queues hold their projections in rows 0-3
        torch.testing.assert_close(obj.queues[v].features[:4], z1[v], rtol=1e-5, atol=1e-6)
        assert int(obj.queues[v].ptr) == 4
    for v in range(2, 6):  # the small views' queues are never written
        assert torch.equal(obj.queues[v].features, initial[v])

    train_step(obj, multicrop_batch(seed=2), 2)  # steps_done was 1: the queue is not read yet, but filled
    assert int(obj.queue_filled) == 6 and int(obj.steps_done) == 2  # 8 rows went into 6 slots
    assert obj.queue_active

    batch3 = multicrop_batch(seed=3)
    queues = [obj.queues[v].features.clone() for v in (0, 1)]
    out = obj(batch3)
    z = projections(obj, batch3)
    weight = obj.prototypes.weight.detach().double()
    scores = [zv.double() @ weight.T for zv in z]
    codes = [sinkhorn(torch.cat([queues[i].double() @ weight.T, scores[i]]), 0.05, 3)[-4:] for i in (0, 1)]
    expected = swapped_prediction(scores, codes, [0, 1], 0.1)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-4)
    without_queue = swapped_prediction(scores, [sinkhorn(scores[i], 0.05, 3) for i in (0, 1)], [0, 1], 0.1)
    assert abs(without_queue.item() - expected.item()) > 1e-3  # the check above can tell the two apart


def test_a_partly_filled_queue_contributes_only_its_filled_rows():
    obj = make_swav(queue_length=10, queue_start_step=0)
    train_step(obj, multicrop_batch(seed=1), 1)
    assert int(obj.queue_filled) == 4
    batch = multicrop_batch(seed=2)
    filled = [obj.queues[v].features[:4].clone() for v in (0, 1)]
    out = obj(batch)
    z = projections(obj, batch)
    weight = obj.prototypes.weight.detach().double()
    scores = [zv.double() @ weight.T for zv in z]
    codes = [sinkhorn(torch.cat([filled[i].double() @ weight.T, scores[i]]), 0.05, 3)[-4:] for i in (0, 1)]
    assert out.loss.item() == pytest.approx(swapped_prediction(scores, codes, [0, 1], 0.1).item(), rel=1e-4)


def test_no_queue_by_default():
    obj = make_swav()
    assert len(obj.queues) == 0 and not obj.queue_active
    train_step(obj, multicrop_batch(), 1)
    assert int(obj.queue_filled) == 0


# -- checkpoint state -------------------------------------------------------------


def test_prototypes_queues_and_step_counter_round_trip_through_the_state_dict():
    a = make_swav(seed=0, queue_length=6, queue_start_step=1, freeze_prototypes_steps=3)
    for step in (1, 2):
        train_step(a, multicrop_batch(seed=step), step)
    state = a.state_dict()
    assert {
        "prototypes.weight",
        "steps_done",
        "queue_filled",
        "queues.0.features",
        "queues.0.ptr",
        "queues.1.features",
    } <= set(state)
    assert int(state["steps_done"]) == 2 and int(state["queue_filled"]) == 6

    b = make_swav(seed=1, queue_length=6, queue_start_step=1, freeze_prototypes_steps=3)
    assert not torch.equal(b.prototypes.weight, a.prototypes.weight)
    b.load_state_dict(state)
    assert b.prototypes_frozen and int(b.steps_done) == 2
    # the restored objective continues exactly like the original, through the end of the freeze
    for step in (3, 4):
        batch = multicrop_batch(seed=10 + step)
        assert torch.equal(train_step(a, batch, step).loss, train_step(b, batch, step).loss)
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


# -- construction and errors --------------------------------------------------------


def test_fewer_than_two_code_views_is_a_user_error():
    """One large view and four small ones: there is nothing to swap."""
    obj = make_swav(num_views=5)
    with pytest.raises(sslx.UserError, match="objective 'swav'") as err:
        obj(multicrop_batch(n_large=1, n_small=4))
    message = str(err.value)
    assert "at least 2" in message and "n_large" in message and "16x16" in message


def test_a_single_view_sampler_is_refused_at_construction():
    with pytest.raises(sslx.UserError, match="sampler.views"):
        make_swav(num_views=1)


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 0.0},
        {"epsilon": 0.0},
        {"epsilon": 0.001},
        {"sinkhorn_iterations": 0},
        {"num_prototypes": 1},
        {"queue_length": -1},
        {"freeze_prototypes_steps": -1},
        {"proj_dim": 0},
        {"prototypes": 10},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        SwAV.Params(**bad)


def test_paper_defaults_and_described_params():
    p = SwAV.Params()
    assert (p.temperature, p.epsilon, p.sinkhorn_iterations, p.proj_dim, p.queue_length) == (0.1, 0.05, 3, 128, 0)
    assert all(field.description for field in SwAV.Params.model_fields.values())
