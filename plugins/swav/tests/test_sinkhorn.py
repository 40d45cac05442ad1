"""SwAV's Sinkhorn-Knopp (``sslx_swav.loss.sinkhorn``) against an explicit
float64 reference of Caron et al. (2020), appendix A.1: values, marginals,
stability of the exponential, dtypes, and no gradient through the codes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sslx_swav.loss import sinkhorn


def sinkhorn_reference(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """The paper's algorithm with Python loops over plain floats (no max
    subtraction): Q[k][b] = exp(s[b][k] / eps); Q /= sum(Q); then per
    iteration every row k is divided by its sum and by K, every column b by
    its sum and by B; the codes are (B * Q).T."""
    s = scores.double().tolist()
    b_count, k_count = len(s), len(s[0])
    q = [[math.exp(s[b][k] / epsilon) for b in range(b_count)] for k in range(k_count)]
    total = sum(sum(row) for row in q)
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        for k in range(k_count):
            row_sum = sum(q[k])
            q[k] = [x / row_sum / k_count for x in q[k]]
        for b in range(b_count):
            col_sum = sum(q[k][b] for k in range(k_count))
            for k in range(k_count):
                q[k][b] = q[k][b] / col_sum / b_count
    return torch.tensor([[q[k][b] * b_count for k in range(k_count)] for b in range(b_count)], dtype=torch.float64)


def cosine_scores(b: int, k: int, dim: int = 16, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Scores as SwAV makes them: unit projections times unit prototypes, in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(b, dim, generator=gen, dtype=torch.float64), dim=1)
    c = F.normalize(torch.randn(k, dim, generator=gen, dtype=torch.float64), dim=1)
    return (z @ c.T).to(dtype)


@pytest.mark.parametrize("b,k", [(1, 3), (5, 2), (8, 10), (16, 7), (33, 64)])
@pytest.mark.parametrize("epsilon,iterations", [(0.05, 3), (0.03, 1), (0.1, 5), (1.0, 2)])
def test_matches_the_float64_reference(b, k, epsilon, iterations):
    scores = cosine_scores(b, k, seed=b * 100 + k)
    codes = sinkhorn(scores, epsilon, iterations)
    assert codes.dtype == torch.float64 and codes.shape == (b, k)
    torch.testing.assert_close(codes, sinkhorn_reference(scores, epsilon, iterations), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b,k", [(8, 10), (64, 30)])
def test_float32_input_is_computed_in_float32_and_matches_the_reference(b, k):
    scores = cosine_scores(b, k, seed=3)
    codes = sinkhorn(scores.float(), 0.05, 3)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(
        codes.double(), sinkhorn_reference(scores.float().double(), 0.05, 3), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("b,k", [(12, 4), (20, 20), (40, 8), (64, 30)])
def test_marginals_at_convergence(b, k):
    """After many iterations every sample's code sums to 1 and every
    prototype receives B/K of the batch (the equipartition constraint)."""
    codes = sinkhorn(cosine_scores(b, k, seed=k), 0.05, 200)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(codes.sum(dim=0), torch.full((k,), b / k, dtype=torch.float64), rtol=0, atol=1e-6)
    assert (codes >= 0).all()


def test_three_iterations_give_exact_rows_and_nearly_equal_prototype_mass():
    """The paper's 3 iterations: each code sums to 1 exactly (the last step
    normalises columns), and the prototypes' masses are already near B/K
    although the scores favour prototype 0 strongly; more iterations get
    closer still."""
    b, k = 256, 30
    scores = cosine_scores(b, k, seed=5)
    scores[:, 0] += 0.3  # prototype 0 is everyone's favourite
    raw = torch.softmax(scores / 0.05, dim=1).sum(dim=0)  # the masses without Sinkhorn
    assert raw[0] > 5 * b / k
    codes = sinkhorn(scores, 0.05, 3)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-12)
    mass = codes.sum(dim=0)
    assert mass[0] == pytest.approx(b / k, rel=0.05)
    deviation = [float((sinkhorn(scores, 0.05, n).sum(dim=0) - b / k).abs().max()) for n in (1, 3, 10)]
    assert deviation[1] < 0.5 * b / k and deviation[1] < 0.1 * float((raw - b / k).abs().max())
    assert deviation[0] > deviation[1] > deviation[2]


@pytest.mark.parametrize("b,k", [(4, 3), (7, 30), (128, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_scores_give_uniform_codes(b, k, dtype):
    """Equal scores: every code is uniform, 1/K up to float rounding (a few ulps)."""
    codes = sinkhorn(torch.full((b, k), 0.37, dtype=dtype), 0.05, 3)
    torch.testing.assert_close(codes, torch.full((b, k), 1 / k, dtype=dtype), rtol=4 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("shift", [-500.0, 3.0, 1000.0])
def test_a_constant_shift_of_the_scores_changes_nothing_and_large_scores_do_not_overflow(shift):
    """exp(1000 / 0.05) overflows float64, yet the codes are finite and
    equal to the reference on the unshifted scores: the global maximum is
    subtracted first, a constant factor the first normalisation removes.
    (In float32 the shifted scores themselves are rounded, so the reference
    gets the same rounded scores, shifted back in float64.)"""
    scores = cosine_scores(10, 6, seed=7)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        shifted = (scores + shift).to(dtype)
        codes = sinkhorn(shifted, 0.05, 3)
        assert torch.isfinite(codes).all()
        expected = sinkhorn_reference(shifted.double() - shift, 0.05, 3)
        torch.testing.assert_close(codes.double(), expected, rtol=tol, atol=tol * 1e-2)


def test_codes_carry_no_gradient_and_leave_the_scores_alone():
    scores = cosine_scores(6, 4, seed=1).requires_grad_()
    before = scores.detach().clone()
    codes = sinkhorn(scores, 0.05, 3)
    assert not codes.requires_grad and codes.grad_fn is None
    assert torch.equal(scores.detach(), before)


def test_autocast_bfloat16_computes_in_float32():
    scores = cosine_scores(16, 8, seed=2, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = sinkhorn(scores.bfloat16(), 0.05, 3)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(
        codes.double(), sinkhorn_reference(scores.bfloat16().double(), 0.05, 3), rtol=1e-4, atol=1e-6
    )


def test_smaller_epsilon_gives_sharper_codes():
    scores = cosine_scores(32, 8, seed=4)
    entropy = [
        float(-torch.special.xlogy(c, c).sum(dim=1).mean()) for c in (sinkhorn(scores, e, 3) for e in (10.0, 0.1, 0.03))
    ]
    assert entropy[0] > entropy[1] > entropy[2]
    assert entropy[0] == pytest.approx(math.log(8), rel=0.01)  # a large epsilon gives nearly uniform codes


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"iterations": 0}, "iterations"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = {"epsilon": 0.05, "iterations": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        sinkhorn(torch.zeros(3, 2), **args)
    with pytest.raises(ValueError, match="B, K"):
        sinkhorn(torch.zeros(3), 0.05, 3)
