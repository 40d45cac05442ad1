"""The VICReg loss (``sslx_vicreg.loss``) against an explicit float64
reference of Bardes et al. (2022), eqs. 1-6: values, gradients w.r.t. both
views, the three terms apart, closed forms and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_vicreg.loss import vicreg_loss, vicreg_terms


def invariance_reference(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """s(Z, Z') = (1 / (N D)) sum_{b, j} (z1[b, j] - z2[b, j])^2."""
    n, d = z1.shape
    return sum((z1[b, j] - z2[b, j]) ** 2 for b in range(n) for j in range(d)) / (n * d)


def column_means(z: torch.Tensor) -> list[torch.Tensor]:
    n, d = z.shape
    return [sum(z[b, j] for b in range(n)) / n for j in range(d)]


def variance_reference(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """v(Z) = (1 / D) sum_j max(0, gamma - sqrt(Var(z_j) + eps)), unbiased Var (divisor N - 1)."""
    n, d = z.shape
    means = column_means(z)
    total = torch.zeros((), dtype=torch.float64)
    for j in range(d):
        var = sum((z[b, j] - means[j]) ** 2 for b in range(n)) / (n - 1)
        total = total + torch.clamp(gamma - torch.sqrt(var + eps), min=0)
    return total / d


def covariance_reference(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = (1 / D) sum_{i != j} Cov_ij^2, Cov_ij = sum_b (z_bi - mean_i)(z_bj - mean_j) / (N - 1)."""
    n, d = z.shape
    means = column_means(z)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            if i != j:
                cov = sum((z[b, i] - means[i]) * (z[b, j] - means[j]) for b in range(n)) / (n - 1)
                total = total + cov**2
    return total / d


def terms_reference(z1, z2, gamma=1.0, eps=1e-4):
    return (
        invariance_reference(z1, z2),
        variance_reference(z1, gamma, eps) + variance_reference(z2, gamma, eps),
        covariance_reference(z1) + covariance_reference(z2),
    )


def loss_reference(z1, z2, sim_weight=25.0, var_weight=25.0, cov_weight=1.0, gamma=1.0, eps=1e-4):
    inv, var, cov = terms_reference(z1, z2, gamma, eps)
    return sim_weight * inv + var_weight * var + cov_weight * cov


def _pair(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views whose columns' standard deviations straddle 1, so
    the hinge is active on some dimensions and not on others."""
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.3, 2.0, d, dtype=torch.float64) + 1.5
    z2 = 0.8 * z1 + 0.4 * torch.randn(n, d, generator=gen, dtype=torch.float64) - 0.5
    return z1.requires_grad_(), z2.requires_grad_()


WEIGHTS = [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 3.0)]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("n,d", [(2, 2), (5, 3), (16, 6)])
def test_value_and_gradients_match_reference(n, d, weights):
    """Loss and d loss / d z1, d z2 equal eqs. 1-6 written out, in float64,
    with each term alone and all together."""
    z1, z2 = _pair(n, d, seed=10 * n + d)
    sim, var, cov = weights
    loss = vicreg_loss(z1, z2, sim, var, cov)
    expected = loss_reference(z1, z2, sim, var, cov)
    assert loss.dtype == torch.float64 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)

    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    r1, r2 = torch.autograd.grad(expected, (z1, z2))
    torch.testing.assert_close(g1, r1, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g2, r2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("gamma,eps", [(1.0, 1e-4), (2.5, 0.5), (0.5, 1e-6)])
def test_terms_match_reference(gamma, eps):
    z1, z2 = _pair(9, 5, seed=4)
    terms = vicreg_terms(z1, z2, gamma, eps)
    inv, var, cov = terms_reference(z1, z2, gamma, eps)
    torch.testing.assert_close(terms.invariance, inv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.variance, var, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.covariance, cov, rtol=1e-10, atol=1e-12)
    assert terms.variance.item() > 0  # the test data keeps the hinge active on some dimensions


def test_gradcheck():
    """The analytic gradient agrees with finite differences (float64; the
    data keeps every column away from the hinge's kink)."""
    z1, z2 = _pair(5, 3, seed=6)
    assert torch.autograd.gradcheck(lambda a, b: vicreg_loss(a, b, 2.0, 3.0, 0.5), (z1, z2))


def test_spread_decorrelated_identical_views_give_zero():
    """Equal views with orthogonal zero-mean columns of std > gamma: no
    distance, no hinge, no covariance."""
    h = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    z = 2.0 * h + 3.0  # unbiased variance 4 * 4 / 3 per column
    terms = vicreg_terms(z, z.clone())
    assert terms.invariance.item() == 0.0
    assert terms.variance.item() == 0.0
    assert terms.covariance.item() == pytest.approx(0.0, abs=1e-24)
    assert vicreg_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-24)


def test_collapsed_embeddings_pay_the_full_variance_hinge():
    """Every sample mapped to one vector: the distance and covariance are 0,
    each branch's hinge is gamma - sqrt(eps) per dimension."""
    z = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64).expand(6, 3)
    terms = vicreg_terms(z, z, gamma=1.0, eps=1e-4)
    assert terms.invariance.item() == 0.0 and terms.covariance.item() == 0.0
    assert terms.variance.item() == pytest.approx(2 * (1.0 - math.sqrt(1e-4)), rel=1e-12)


def test_invariance_is_the_mean_squared_distance():
    z1 = torch.zeros(2, 2, dtype=torch.float64)
    z2 = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    assert vicreg_terms(z1, z2).invariance.item() == pytest.approx((1 + 9) / 4)


@pytest.mark.parametrize("name", ["sim_weight", "var_weight", "cov_weight"])
def test_negative_weights_raise(name):
    z1, z2 = _pair(4, 3, seed=0)
    with pytest.raises(ValueError, match=name):
        vicreg_loss(z1, z2, **{name: -1.0})


@pytest.mark.parametrize("gamma", [0.0, -1.0])
def test_non_positive_gamma_raises(gamma):
    z1, z2 = _pair(4, 3, seed=0)
    with pytest.raises(ValueError, match="gamma"):
        vicreg_loss(z1, z2, gamma=gamma)


@pytest.mark.parametrize("eps", [0.0, -1e-4])
def test_non_positive_eps_raises(eps):
    z1, z2 = _pair(4, 3, seed=0)
    with pytest.raises(ValueError, match="eps"):
        vicreg_loss(z1, z2, eps=eps)


def test_a_batch_of_one_raises():
    """The unbiased variance of one sample is undefined."""
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(torch.randn(1, 4), torch.randn(1, 4))


@pytest.mark.parametrize("shapes", [((4, 3), (4, 2)), ((4, 3), (5, 3)), ((4,), (4,))])
def test_shape_mismatch_raises(shapes):
    a, b = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        vicreg_loss(a, b)


def test_autocast_bfloat16_computes_in_float32():
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 8)
    x1, x2 = torch.randn(12, 16, generator=gen), torch.randn(12, 16, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16
        loss = vicreg_loss(z1, z2)
    assert loss.dtype == torch.float32
    expected = loss_reference(z1.detach().double(), z2.detach().double())
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
