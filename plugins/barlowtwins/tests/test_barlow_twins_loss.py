"""The Barlow Twins loss (``sslx_barlowtwins.loss``) against an explicit
float64 reference of Zbontar et al. (2021), eqs. 1 and 2: values, gradients
w.r.t. both views, the two terms apart, closed forms and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_barlowtwins.loss import barlow_twins_loss, barlow_twins_terms


def standardise_reference(z: torch.Tensor, eps: float) -> list[list[torch.Tensor]]:
    """Column by column: subtract the mean over the batch, divide by
    sqrt(biased variance + eps). Returns zn[b][i] as a nested list."""
    n, d = z.shape
    columns = []
    for i in range(d):
        mean = sum(z[b, i] for b in range(n)) / n
        var = sum((z[b, i] - mean) ** 2 for b in range(n)) / n  # biased: divisor N, as BatchNorm
        columns.append([(z[b, i] - mean) / torch.sqrt(var + eps) for b in range(n)])
    return [[columns[i][b] for i in range(d)] for b in range(n)]


def terms_reference(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """c_ij = sum_b zn1[b, i] zn2[b, j] / N; returns (sum_i (1 - c_ii)^2, sum_{i != j} c_ij^2)."""
    n, d = z1.shape
    zn1, zn2 = standardise_reference(z1, eps), standardise_reference(z2, eps)
    on = torch.zeros((), dtype=torch.float64)
    off = torch.zeros((), dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            c_ij = sum(zn1[b][i] * zn2[b][j] for b in range(n)) / n
            if i == j:
                on = on + (1 - c_ij) ** 2
            else:
                off = off + c_ij**2
    return on, off


def loss_reference(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float, eps: float = 1e-5) -> torch.Tensor:
    on, off = terms_reference(z1, z2, eps)
    return on + off_diagonal_weight * off


def _pair(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views with columns of different means and scales."""
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 3.0, d, dtype=torch.float64) + 2.0
    z2 = 0.7 * z1 + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64) - 1.0
    return z1.requires_grad_(), z2.requires_grad_()


def _hadamard_columns(d: int) -> torch.Tensor:
    """(8, d) columns of a Sylvester Hadamard matrix (the constant column
    skipped): entries +-1, zero mean, biased variance 1, mutually orthogonal."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < 8:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:, 1 : d + 1]


@pytest.mark.parametrize("off_diagonal_weight", [0.0, 5e-3, 0.5])
@pytest.mark.parametrize("n,d", [(2, 2), (5, 3), (16, 6)])
def test_value_and_gradients_match_reference(n, d, off_diagonal_weight):
    """Loss and d loss / d z1, d z2 equal the explicit eq. 1 in float64."""
    z1, z2 = _pair(n, d, seed=10 * n + d)
    loss = barlow_twins_loss(z1, z2, off_diagonal_weight)
    expected = loss_reference(z1, z2, off_diagonal_weight)
    assert loss.dtype == torch.float64 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)

    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    r1, r2 = torch.autograd.grad(expected, (z1, z2))
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0
    torch.testing.assert_close(g1, r1, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g2, r2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_terms_match_reference(eps):
    """The two unweighted sums apart (eps included in the standardisation)."""
    z1, z2 = _pair(7, 4, seed=3)
    terms = barlow_twins_terms(z1, z2, eps=eps)
    on, off = terms_reference(z1, z2, eps)
    torch.testing.assert_close(terms.on_diagonal, on, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.off_diagonal, off, rtol=1e-10, atol=1e-12)
    loss = barlow_twins_loss(z1, z2, 0.25, eps=eps)
    torch.testing.assert_close(loss, terms.on_diagonal + 0.25 * terms.off_diagonal, rtol=1e-12, atol=0)


def test_gradcheck():
    """The analytic gradient agrees with finite differences (float64)."""
    z1, z2 = _pair(4, 3, seed=5)
    assert torch.autograd.gradcheck(lambda a, b: barlow_twins_loss(a, b, 0.1), (z1, z2))


def test_identity_cross_correlation_gives_zero():
    """Both views with the same orthogonal standardised columns, up to a
    per-view shift and positive scale: c is the identity (up to eps) and the
    loss is 0; the standardisation removes the shift and scale."""
    h = _hadamard_columns(5)  # (8, 5)
    z1, z2 = 3.0 * h + 5.0, 0.5 * h - 2.0
    eps = 1e-12
    terms = barlow_twins_terms(z1, z2, eps=eps)
    assert terms.on_diagonal.item() == pytest.approx(0.0, abs=1e-20)
    assert terms.off_diagonal.item() == pytest.approx(0.0, abs=1e-24)
    assert barlow_twins_loss(z1, z2, 0.5, eps=eps).item() == pytest.approx(0.0, abs=1e-20)
    # with the default eps = 1e-5 each view is divided by sqrt(var + eps) rather than its std
    # (variances 9 and 0.25), so c_ii = 1 / sqrt((1 + eps / 9) (1 + eps / 0.25)) and the loss is D (1 - c_ii)^2
    c_ii = 1 / math.sqrt((1 + 1e-5 / 9) * (1 + 1e-5 / 0.25))
    assert barlow_twins_loss(z1, z2).item() == pytest.approx(5 * (1 - c_ii) ** 2, rel=1e-6)


def test_anti_correlated_views_give_four_per_dimension():
    """z2 = -z1 with orthogonal columns: c = -I, so the on-diagonal sum is
    4 D and the off-diagonal sum 0."""
    h = _hadamard_columns(6)
    terms = barlow_twins_terms(h, -h, eps=1e-12)
    assert terms.on_diagonal.item() == pytest.approx(4 * 6, rel=1e-10)
    assert terms.off_diagonal.item() == pytest.approx(0.0, abs=1e-20)


def test_redundant_dimensions_are_penalised_off_the_diagonal():
    """Two copies of one column: c has 1 on the diagonal and c_01 = c_10 = 1,
    so the off-diagonal sum is 2 (and lambda weighs it)."""
    x = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64)[:, None]
    z = torch.cat([x, x], dim=1)
    terms = barlow_twins_terms(z, z, eps=1e-12)
    assert terms.on_diagonal.item() == pytest.approx(0.0, abs=1e-18)
    assert terms.off_diagonal.item() == pytest.approx(2.0, rel=1e-10)
    assert barlow_twins_loss(z, z, 0.25, eps=1e-12).item() == pytest.approx(0.5, rel=1e-10)


def test_negative_off_diagonal_weight_raises():
    z1, z2 = _pair(4, 3, seed=0)
    with pytest.raises(ValueError, match="off_diagonal_weight"):
        barlow_twins_loss(z1, z2, -1e-3)


@pytest.mark.parametrize("shapes", [((4, 3), (4, 2)), ((4, 3), (5, 3)), ((4,), (4,)), ((2, 4, 3), (2, 4, 3))])
def test_shape_mismatch_raises(shapes):
    a, b = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        barlow_twins_loss(a, b)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        barlow_twins_terms(a, b)


def test_a_batch_of_one_raises():
    """The statistics of one sample are meaningless (its variance is 0)."""
    with pytest.raises(ValueError, match="at least 2 samples"):
        barlow_twins_loss(torch.randn(1, 4), torch.randn(1, 4))


@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_non_positive_eps_raises(eps):
    with pytest.raises(ValueError, match="eps"):
        barlow_twins_terms(torch.randn(4, 3), torch.randn(4, 3), eps=eps)


def test_autocast_bfloat16_computes_in_float32():
    """Under CPU bf16 autocast the loss is float32 and matches float64 on the
    same (bf16) embeddings."""
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 8)
    x1, x2 = torch.randn(12, 16, generator=gen), torch.randn(12, 16, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16
        loss = barlow_twins_loss(z1, z2, 5e-3)
    assert loss.dtype == torch.float32
    expected = loss_reference(z1.detach().double(), z2.detach().double(), 5e-3)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
