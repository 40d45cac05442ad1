"""BYOL's regression loss (``sslx_byol.loss.byol_loss``) against the explicit
float64 formula of Grill et al. (2020), eq. 2: values, gradients w.r.t. both
arguments, its range and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_byol.loss import byol_loss


def byol_loss_reference(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 2 - 2 cos(p_b, z_b), with the cosine written out."""
    total = torch.zeros((), dtype=torch.float64)
    for b in range(p.shape[0]):
        dot = sum(p[b, j] * z[b, j] for j in range(p.shape[1]))
        norm_p = torch.sqrt(sum(p[b, j] ** 2 for j in range(p.shape[1])))
        norm_z = torch.sqrt(sum(z[b, j] ** 2 for j in range(z.shape[1])))
        total = total + 2 - 2 * dot / (norm_p * norm_z)
    return total / p.shape[0]


def _pair(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # rows of different norms: the loss must only see directions
    p = (
        torch.randn(b, d, generator=gen, dtype=torch.float64)
        * torch.rand(b, 1, generator=gen, dtype=torch.float64).add(0.5)
        * 3
    )
    z = torch.randn(b, d, generator=gen, dtype=torch.float64) + 0.5 * p.detach()
    return p.requires_grad_(), z.requires_grad_()


@pytest.mark.parametrize("b,d", [(1, 2), (3, 5), (8, 16)])
def test_value_and_gradients_match_reference(b, d):
    """Loss and d loss / d p, d z equal the explicit formula in float64 (the
    loss itself does not detach z: the objective computes z without gradient)."""
    p, z = _pair(b, d, seed=10 * b + d)
    loss = byol_loss(p, z)
    expected = byol_loss_reference(p, z)
    assert loss.dtype == torch.float64 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    gp, gz = torch.autograd.grad(loss, (p, z))
    rp, rz = torch.autograd.grad(expected, (p, z))
    assert gp.abs().sum() > 0 and gz.abs().sum() > 0
    torch.testing.assert_close(gp, rp, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gz, rz, rtol=1e-8, atol=1e-10)


def test_gradcheck():
    p, z = _pair(3, 4, seed=2)
    assert torch.autograd.gradcheck(byol_loss, (p, z))


def test_range_is_zero_to_four():
    """0 for aligned vectors (whatever their norms), 2 for orthogonal ones,
    4 for opposite ones; random pairs in between."""
    p = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-12)
    assert byol_loss(p, -0.2 * p).item() == pytest.approx(4.0, rel=1e-12)
    e = torch.eye(2, dtype=torch.float64)
    assert byol_loss(e, e.flip(0)).item() == pytest.approx(2.0, rel=1e-12)
    for seed in range(5):
        a, b = _pair(16, 8, seed=seed)
        assert 0.0 < byol_loss(a, b).item() < 4.0


def test_mean_over_the_batch():
    """One aligned and one opposite pair: (0 + 4) / 2."""
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    assert byol_loss(p, z).item() == pytest.approx(2.0)


@pytest.mark.parametrize("shapes", [((4, 3), (4, 2)), ((4, 3), (5, 3)), ((4,), (4,))])
def test_shape_mismatch_raises(shapes):
    a, b = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        byol_loss(a, b)


def test_autocast_bfloat16_computes_in_float32():
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 8)
    x, z = torch.randn(6, 16, generator=gen), torch.randn(6, 8, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = head(x)
        assert p.dtype == torch.bfloat16
        loss = byol_loss(p, z)
    assert loss.dtype == torch.float32
    expected = byol_loss_reference(p.detach().double(), z.double())
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
