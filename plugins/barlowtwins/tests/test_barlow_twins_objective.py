"""The Barlow Twins objective: the loss it computes from the projector's
outputs, its logged terms, the bias-free projector, gradients and the
number of views."""

from __future__ import annotations

import pydantic
import pytest
import torch
from sslx_barlowtwins.loss import barlow_twins_terms
from sslx_barlowtwins.objective import BarlowTwins
from sslx_encoders.models import SmallCNN
from torch import nn

import sslx

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)


def make_barlow_twins(seed: int = 0, num_views: int = 2, **params) -> BarlowTwins:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=6, total_steps=10, dataset_size=60)
    params = {"proj_hidden_dim": 16, "proj_dim": 12, **params}
    return BarlowTwins(BarlowTwins.Params(**params), encoder, info)


def random_batch(b: int = 6, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 8, 8, generator=gen) for _ in range(2)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


@pytest.mark.parametrize("weight", [0.0, 5e-3, 0.1])
def test_loss_is_the_weighted_sum_of_the_logged_terms_of_the_projections(weight):
    """forward: z = projector(encoder(both views)); the loss is on_diagonal +
    lambda * off_diagonal of (z1, z2), both logged unweighted; the monitored
    embeddings are the first view's projections."""
    obj = make_barlow_twins(off_diagonal_weight=weight)
    batch = random_batch()
    out = obj(batch)
    with torch.no_grad():  # train-mode BatchNorm: same batch, same statistics, same outputs
        z1, z2 = obj.projector(obj.encoder(torch.cat(batch.views))).chunk(2)
    on, off = barlow_twins_terms(z1.double(), z2.double())
    assert set(out.metrics) == {"on_diagonal", "off_diagonal"}
    assert out.metrics["on_diagonal"].item() == pytest.approx(on.item(), rel=1e-4)
    assert out.metrics["off_diagonal"].item() == pytest.approx(off.item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(on.item() + weight * off.item(), rel=1e-4)
    assert not any(m.requires_grad for m in out.metrics.values())
    torch.testing.assert_close(out.embeddings, z1)
    assert not out.embeddings.requires_grad


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_projector_ends_in_a_bias_free_linear_layer(layers):
    """As in the paper: the loss standardises every dimension, so the last
    layer has no bias (it would get no gradient) and no BatchNorm after it."""
    obj = make_barlow_twins(proj_layers=layers)
    last = obj.projector[-1]
    assert isinstance(last, nn.Linear) and last.bias is None and last.out_features == 12
    assert sum(isinstance(m, nn.Linear) for m in obj.projector) == layers
    assert sum(isinstance(m, nn.BatchNorm1d) for m in obj.projector) == layers - 1


def test_gradient_reaches_the_encoder_and_the_projector():
    obj = make_barlow_twins()
    obj(random_batch()).loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_training_steps_lower_the_loss():
    """A few SGD steps on one batch lower the loss (the gradient points downhill)."""
    obj = make_barlow_twins()
    batch = random_batch(8)
    opt = torch.optim.SGD(obj.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = obj(batch).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("views", [1, 3])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError, match="'barlow_twins' needs 2 views per sample, but the sampler gives"):
        make_barlow_twins(num_views=views)


@pytest.mark.parametrize(
    "bad", [{"off_diagonal_weight": -1e-3}, {"proj_dim": 1}, {"proj_layers": 0}, {"proj_layers": 5}]
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        BarlowTwins.Params(**bad)
