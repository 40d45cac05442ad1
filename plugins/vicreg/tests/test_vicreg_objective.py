"""The VICReg objective: the loss it computes from the expander's outputs,
its logged terms, the bias-free expander, gradients and the number of views."""

from __future__ import annotations

import pydantic
import pytest
import torch
from sslx_encoders.models import SmallCNN
from sslx_vicreg.loss import vicreg_terms
from sslx_vicreg.objective import VICReg
from torch import nn

import sslx

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)


def make_vicreg(seed: int = 0, num_views: int = 2, **params) -> VICReg:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=6, total_steps=10, dataset_size=60)
    params = {"proj_hidden_dim": 16, "proj_dim": 12, **params}
    return VICReg(VICReg.Params(**params), encoder, info)


def random_batch(b: int = 6, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 8, 8, generator=gen) for _ in range(2)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (2.0, 5.0, 0.5)])
def test_loss_is_the_weighted_sum_of_the_logged_terms_of_the_expansions(weights):
    """forward: z = projector(encoder(both views)); the loss is lambda s + mu v
    + nu c of (z1, z2) with gamma and eps from the params; the three terms
    are logged unweighted; the monitored embeddings are the first view's."""
    sim, var, cov = weights
    obj = make_vicreg(sim_weight=sim, var_weight=var, cov_weight=cov, gamma=1.5, eps=1e-3)
    batch = random_batch()
    out = obj(batch)
    with torch.no_grad():  # train-mode BatchNorm: same batch, same statistics, same outputs
        z1, z2 = obj.projector(obj.encoder(torch.cat(batch.views))).chunk(2)
    inv, v, c = vicreg_terms(z1.double(), z2.double(), gamma=1.5, eps=1e-3)
    assert set(out.metrics) == {"invariance", "variance", "covariance"}
    for name, expected in (("invariance", inv), ("variance", v), ("covariance", c)):
        assert out.metrics[name].item() == pytest.approx(expected.item(), rel=1e-4), name
        assert not out.metrics[name].requires_grad
    assert out.loss.item() == pytest.approx(sim * inv.item() + var * v.item() + cov * c.item(), rel=1e-4)
    torch.testing.assert_close(out.embeddings, z1)
    assert not out.embeddings.requires_grad


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_expander_ends_in_a_bias_free_linear_layer(layers):
    """As in the paper: no bias on the last layer (every term ignores a shift
    shared by both views) and no BatchNorm after it (the variance hinge must
    see the raw scale)."""
    obj = make_vicreg(proj_layers=layers)
    last = obj.projector[-1]
    assert isinstance(last, nn.Linear) and last.bias is None and last.out_features == 12
    assert sum(isinstance(m, nn.Linear) for m in obj.projector) == layers
    assert sum(isinstance(m, nn.BatchNorm1d) for m in obj.projector) == layers - 1


def test_gradient_reaches_the_encoder_and_the_expander():
    obj = make_vicreg()
    obj(random_batch()).loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("views", [1, 3])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError, match="'vicreg' needs 2 views per sample, but the sampler gives"):
        make_vicreg(num_views=views)


@pytest.mark.parametrize(
    "bad",
    [
        {"sim_weight": -1.0},
        {"var_weight": -1.0},
        {"cov_weight": -0.1},
        {"gamma": 0.0},
        {"eps": 0.0},
        {"eps": -1e-4},
        {"proj_dim": 1},
        {"proj_layers": 0},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        VICReg.Params(**bad)
