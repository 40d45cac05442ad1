"""The SimCLR objective: encoder + projection head + NT-Xent on a batch of
two views, its gradients, and its requirement of exactly two views."""

from __future__ import annotations

import pydantic
import pytest
import torch
from sslx_encoders.models import SmallCNN
from sslx_simclr.objective import SimCLR

import sslx

DATA = sslx.DataInfo(channels=1, image_size=(16, 16), mean=(0.5,), std=(0.25,), num_classes=None)


def make_simclr(num_views: int = 2, batch_size: int = 6, **params) -> SimCLR:
    torch.manual_seed(0)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=batch_size, total_steps=10, dataset_size=60)
    return SimCLR(SimCLR.Params(proj_dim=8, **params), encoder, info)


def random_batch(b: int, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 16, 16, generator=gen) for _ in range(2)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def reference_loss(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """NT-Xent (eq. 1) with loops in float64."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    n, b = len(z), len(z) // 2
    total = 0.0
    for i in range(n):
        logits = [(z[i] @ z[k]).item() / t for k in range(n)]
        pos = (i + b) % n
        total -= logits[pos] - torch.logsumexp(torch.tensor([logits[k] for k in range(n) if k != i]), 0).item()
    return total / n


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("b", [2, 6])
def test_forward_loss_is_nt_xent_of_the_projected_views(b, temperature):
    """The loss is a finite scalar equal to NT-Xent of projector(encoder(view))
    with view 1 of sample i paired with view 2 of sample i; the monitored
    embeddings are the detached view-1 projections."""
    obj = make_simclr(batch_size=b, temperature=temperature)
    batch = random_batch(b)
    out = obj(batch)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.embeddings.shape == (b, 8) and not out.embeddings.requires_grad

    with torch.no_grad():  # train-mode BatchNorm: same batch -> same batch statistics
        z = obj.projector(obj.encoder(torch.cat(batch.views)))
    z1, z2 = z[:b], z[b:]
    assert out.loss.item() == pytest.approx(reference_loss(z1, z2, temperature), rel=1e-4, abs=1e-5)
    torch.testing.assert_close(out.embeddings, z1)


def test_gradients_reach_every_encoder_and_projector_parameter():
    obj = make_simclr()
    obj(random_batch(6)).loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_a_training_step_lowers_the_loss_on_the_same_batch():
    """A few SGD steps on a fixed batch reduce its loss: the gradient is a
    descent direction of the value the objective reports."""
    obj = make_simclr()
    batch = random_batch(6)
    opt = torch.optim.SGD(obj.parameters(), lr=0.05)
    first = obj(batch).loss
    for _ in range(5):
        opt.zero_grad()
        loss = obj(batch).loss
        loss.backward()
        opt.step()
    assert obj(batch).loss.item() < first.item()


def test_projection_head_sizes():
    """Hidden width defaults to the encoder's out_dim; proj_layers linear layers."""
    obj = make_simclr(proj_layers=3)
    linears = [m for m in obj.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 8), (8, 8), (8, 8)]
    obj = make_simclr(proj_hidden_dim=20)
    linears = [m for m in obj.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 20), (20, 8)]


@pytest.mark.parametrize("views", [1, 3, 4])
def test_needs_exactly_two_views(views):
    with pytest.raises(sslx.UserError, match="2 views"):
        make_simclr(num_views=views)


@pytest.mark.parametrize(
    "bad", [{"temperature": 0}, {"temperature": -1.0}, {"proj_dim": 0}, {"proj_layers": 5}, {"tau": 0.5}]
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        SimCLR.Params(**bad)
