"""The PIRL objective: both branches share the encoder (tiles included), the
jigsaw embedding depends on the shuffled order of the tiles, the loss is eq. 5
over the bank as it was before the batch, the bank receives f(v_I) after the
optimizer step, the state dict holds the bank, and user mistakes (views,
tile count) are explained."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
import torch.nn.functional as F
from sslx_encoders.models import SmallCNN
from sslx_pirl.objective import PIRL

import sslx
from sslx.testing import train_step

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)
N, K, D = 40, 16, 6  # bank rows (dataset size), negatives, embedding size


def make_pirl(seed: int = 0, num_views: int = 2, **params) -> PIRL:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=20, dataset_size=N)
    return PIRL(PIRL.Params(**{"num_negatives": K, "embedding_dim": D, "grid": 2, **params}), encoder, info)


def random_batch(tiles: int = 4, index=(3, 17, 0, 39), seed: int = 1, tile: int = 4) -> sslx.Batch:
    """View 0: (B, 1, 8, 8) images; view 1: (B, tiles, 1, tile, tile) jigsaw tiles."""
    gen = torch.Generator().manual_seed(seed)
    b = len(index)
    views = [torch.randn(b, 1, 8, 8, generator=gen), torch.randn(b, tiles, 1, tile, tile, generator=gen)]
    return sslx.Batch(views=views, index=torch.tensor(index), label=torch.full((b,), -1))


def embeddings_by_hand(obj: PIRL, batch: sslx.Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """g and f built step by step: every tile of every sample through the
    shared encoder (one batch of B*T tiles, as train-mode BatchNorm sees it),
    the per-tile projection, the T projections of a sample concatenated in
    the given order, the jigsaw head; the image through the encoder and f's head."""
    image, jigsaw = batch.views
    b, t = jigsaw.shape[:2]
    with torch.no_grad():
        f = F.normalize(obj.image_head(obj.encoder(image)), dim=1)
        projected = obj.tile_projection(obj.encoder(jigsaw.reshape(b * t, *jigsaw.shape[2:])))
        rows = []
        for i in range(b):
            concatenated = torch.cat([projected[i * t + k] for k in range(t)])
            rows.append(obj.jigsaw_head(concatenated))
        g = F.normalize(torch.stack(rows), dim=1)
    return g, f


def eq5_softmax_reference(g, f, positive, negatives, t, lam) -> float:
    """Eq. 5 with the softmax form, loops over samples and negatives in float64."""

    def term(q, i):
        q = q.double() / q.double().norm()
        logits = [float(q @ positive[i].double()) / t] + [
            float(q @ negatives[k].double()) / t for k in range(len(negatives))
        ]
        return -(logits[0] - math.log(sum(math.exp(x) for x in logits)))

    return sum(lam * term(g[i], i) + (1 - lam) * term(f[i], i) for i in range(len(g))) / len(g)


# -- the loss and its inputs ----------------------------------------------------------


@pytest.mark.parametrize("grid,tile", [(2, 4), (3, 3)])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
def test_loss_is_eq5_over_the_bank_as_it_was_before_the_batch(grid, tile, lam):
    obj = make_pirl(grid=grid, jigsaw_weight=lam, temperature=0.2)
    batch = random_batch(tiles=grid * grid, tile=tile)
    bank_before = obj.bank.features.clone()
    torch.manual_seed(5)
    out = obj(batch)
    assert torch.equal(obj.bank.features, bank_before)  # forward only reads the bank

    torch.manual_seed(5)  # the same negatives: the first draw from torch's RNG after the seed
    negatives = bank_before[obj.bank.sample(K)]
    g, f = embeddings_by_hand(obj, batch)
    expected = eq5_softmax_reference(g, f, bank_before[batch.index], negatives, 0.2, lam)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out.embeddings, f)
    positive = bank_before[batch.index]
    torch.testing.assert_close(out.metrics["jigsaw_similarity"], (g * positive).sum(dim=1).mean())
    torch.testing.assert_close(out.metrics["image_similarity"], (f * positive).sum(dim=1).mean())


def test_jigsaw_embedding_depends_on_the_order_of_the_tiles():
    """g concatenates the tile features in the order given (the shuffled
    order), so swapping two tiles of one sample changes that sample's g only."""
    obj = make_pirl()
    batch = random_batch()
    swapped = random_batch()
    swapped.views[1][0, [0, 2]] = swapped.views[1][0, [2, 0]]
    g, _ = embeddings_by_hand(obj, batch)
    g_swapped, _ = embeddings_by_hand(obj, swapped)
    assert not torch.allclose(g[0], g_swapped[0], atol=1e-4)
    torch.testing.assert_close(g[1:], g_swapped[1:])  # the same set of tiles: same BatchNorm statistics


def test_the_jigsaw_branch_alone_trains_the_shared_encoder():
    """jigsaw_weight = 1: the encoder still gets gradients (the tiles go
    through it); the image head gets none. jigsaw_weight = 0: the tile
    projection and jigsaw head get none, the encoder does."""
    obj = make_pirl(jigsaw_weight=1.0)
    obj(random_batch()).loss.backward()
    for name, p in [
        *obj.encoder.named_parameters(),
        *obj.tile_projection.named_parameters(),
        *obj.jigsaw_head.named_parameters(),
    ]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert all(p.grad is None or not p.grad.any() for p in obj.image_head.parameters())

    obj = make_pirl(jigsaw_weight=0.0)
    obj(random_batch()).loss.backward()
    for name, p in [*obj.encoder.named_parameters(), *obj.image_head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(
        p.grad is None or not p.grad.any() for p in [*obj.tile_projection.parameters(), *obj.jigsaw_head.parameters()]
    )


def test_there_is_one_encoder():
    obj = make_pirl()
    encoders = [m for m in obj.modules() if isinstance(m, SmallCNN)]
    assert len(encoders) == 1 and encoders[0] is obj.encoder
    assert not obj.bank.features.requires_grad


# -- the bank -------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.8])
def test_bank_receives_the_image_embedding_only_in_on_step_end(momentum):
    obj = make_pirl(bank_momentum=momentum)
    batch = random_batch()
    bank_before = obj.bank.features.clone()
    g, f = embeddings_by_hand(obj, batch)  # before the step, as forward computes them
    out = obj(batch)
    out.loss.backward()
    torch.optim.SGD(obj.parameters(), lr=0.5).step()
    assert torch.equal(obj.bank.features, bank_before)
    obj.on_step_end(1)
    expected = F.normalize(momentum * bank_before[batch.index] + (1 - momentum) * f, dim=1)
    torch.testing.assert_close(obj.bank.features[batch.index], expected, rtol=1e-5, atol=1e-6)
    with_g = F.normalize(momentum * bank_before[batch.index] + (1 - momentum) * g, dim=1)
    assert not torch.allclose(obj.bank.features[batch.index], with_g, atol=1e-3)  # f, not g
    others = [i for i in range(N) if i not in batch.index.tolist()]
    assert torch.equal(obj.bank.features[others], bank_before[others])


def test_state_dict_holds_the_bank_and_a_restored_objective_continues_identically():
    a = make_pirl(seed=0, loss="nce")
    for step in (1, 2):
        train_step(a, random_batch(seed=step, index=(step, step + 10, step + 20, 0)), step)
    state = a.state_dict()
    assert {"bank.features", "nce_log_z"} <= set(state) and torch.isfinite(state["nce_log_z"]).all()
    b = make_pirl(seed=1, loss="nce")
    assert not torch.equal(b.bank.features, a.bank.features)
    b.load_state_dict(state)
    batch = random_batch(seed=9)
    torch.manual_seed(3)
    loss_a = train_step(a, batch, 3).loss
    torch.manual_seed(3)
    loss_b = train_step(b, batch, 3).loss
    assert torch.equal(loss_a, loss_b) and torch.equal(a.bank.features, b.bank.features)


def test_nce_log_z_of_each_branch_is_estimated_on_the_first_batch_then_fixed():
    obj = make_pirl(loss="nce", temperature=0.1)
    assert torch.isnan(obj.nce_log_z).all()
    batch = random_batch()
    bank_before = obj.bank.features.clone()
    torch.manual_seed(4)
    train_step(obj, batch, 1)
    torch.manual_seed(4)
    negatives = bank_before[obj.bank.sample(K)].double()
    log_z = obj.nce_log_z.clone()
    g, f = embeddings_by_hand(make_pirl(loss="nce", temperature=0.1), batch)  # the weights before the step
    for branch, q in enumerate((g, f)):
        terms = [math.exp(float(q[i].double() @ negatives[k]) / 0.1) for i in range(len(q)) for k in range(K)]
        assert log_z[branch].item() == pytest.approx(math.log(N * sum(terms) / len(terms)), rel=1e-5)
    train_step(obj, random_batch(seed=2), 2)
    assert torch.equal(obj.nce_log_z, log_z)


def test_softmax_is_the_default_and_has_no_z():
    obj = make_pirl()
    assert obj.params.loss == "softmax"
    train_step(obj, random_batch(), 1)
    assert not hasattr(obj, "nce_log_z") and set(obj.state_dict()) >= {"bank.features"}
    assert not any("log_z" in key for key in obj.state_dict())


# -- user errors ----------------------------------------------------------------------


@pytest.mark.parametrize("views", [1, 3])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError) as err:
        make_pirl(num_views=views)
    assert str(err.value) == (
        f"objective 'pirl' needs 2 views per sample (the image and its jigsaw tiles), but the sampler gives {views}: "
        f"set sampler.views to 2 and use augmentation 'pirl'."
    )


def test_a_tile_count_that_does_not_match_the_grid_is_a_user_error():
    obj = make_pirl(grid=2)
    with pytest.raises(sslx.UserError) as err:
        obj(random_batch(tiles=9, tile=3))
    assert str(err.value) == (
        "objective 'pirl' has grid 2 and so expects 4 tiles per jigsaw view, but the augmentation gives 9: "
        "set objective.grid equal to augmentation.grid."
    )


@pytest.mark.parametrize(
    "shapes", [[(4, 1, 8, 8), (4, 1, 8, 8)], [(4, 4, 1, 4, 4), (4, 4, 1, 4, 4)], [(4, 1, 8, 8), (4, 16)]]
)
def test_views_that_are_not_an_image_and_its_tiles_are_a_user_error(shapes):
    obj = make_pirl()
    batch = sslx.Batch(views=[torch.randn(*s) for s in shapes], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(sslx.UserError) as err:
        obj(batch)
    message = str(err.value)
    assert message.startswith("objective 'pirl' needs view 0 to be images (B, C, H, W) and view 1 jigsaw tiles")
    assert f"but got shapes {shapes[0]} and {shapes[1]}: use augmentation 'pirl'" in message


@pytest.mark.parametrize(
    "bad",
    [
        {"loss": "infonce"},
        {"temperature": 0.0},
        {"num_negatives": 0},
        {"jigsaw_weight": 1.5},
        {"bank_momentum": 1.0},
        {"grid": 1},
        {"embedding_dim": 0},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        PIRL.Params(**bad)


def test_published_defaults_and_descriptions():
    p = PIRL.Params()
    assert (p.loss, p.embedding_dim, p.temperature, p.jigsaw_weight, p.bank_momentum, p.grid) == (
        "softmax",
        128,
        0.07,
        0.5,
        0.5,
        3,
    )
    for name, field in PIRL.Params.model_fields.items():
        assert field.description, name
