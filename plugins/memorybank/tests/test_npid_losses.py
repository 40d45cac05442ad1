"""The memory-bank losses of ``sslx_memorybank.loss`` against independent
float64 references written with loops from Wu et al. (2018,
arXiv:1805.01978): the non-parametric softmax (eq. 2) over the positive and
sampled rows, NCE's Monte Carlo estimate of Z (eq. 6) and the NCE loss
(eqs. 4-5: P(i|f) = exp(v_i.f/tau)/Z, h(i) = P(i|f)/(P(i|f) + K/n), loss
-log h(i) - sum_k log(1 - h(k))). Values, gradients w.r.t. the queries,
gradcheck, and no gradient into the bank rows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sslx_memorybank.loss import bank_softmax, nce_log_z, npid_nce


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def softmax_reference(query, positive, negatives, temperature) -> torch.Tensor:
    """Eq. 2 with the sum over the bank replaced by the positive and the K
    sampled rows: mean_i -log(exp(v_i.f_i/tau) / (exp(v_i.f_i/tau) + sum_k exp(v_k.f_i/tau)))."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(query.shape[0]):
        f = unit(query[i])
        numerator = torch.exp(torch.dot(f, positive[i].detach()) / temperature)
        denominator = numerator
        for k in range(negatives.shape[0]):
            denominator = denominator + torch.exp(torch.dot(f, negatives[k].detach()) / temperature)
        total = total - torch.log(numerator / denominator)
    return total / query.shape[0]


def log_z_reference(query, negatives, temperature, n) -> float:
    """Eq. 6: Z = n * mean over queries b and sampled rows k of exp(v_k.f_b/tau)."""
    query, negatives = query.detach(), negatives.detach()
    terms = [
        math.exp(float(torch.dot(unit(query[b]), negatives[k])) / temperature)
        for b in range(query.shape[0])
        for k in range(negatives.shape[0])
    ]
    return math.log(n * sum(terms) / len(terms))


def nce_reference(query, positive, negatives, temperature, log_z, n) -> torch.Tensor:
    """Eqs. 4-5 with uniform noise P_n = 1/n and m = K noise samples:
    P(j|f) = exp(v_j.f/tau) / Z, h(j) = P(j|f) / (P(j|f) + K/n),
    loss of query i = -log h(i) - sum_k log(1 - h(k)); mean over queries."""
    z = math.exp(float(log_z))
    noise = negatives.shape[0] / n  # m * P_n
    total = torch.zeros((), dtype=torch.float64)
    for i in range(query.shape[0]):
        f = unit(query[i])
        p = torch.exp(torch.dot(f, positive[i].detach()) / temperature) / z
        total = total - torch.log(p / (p + noise))
        for k in range(negatives.shape[0]):
            p_k = torch.exp(torch.dot(f, negatives[k].detach()) / temperature) / z
            total = total - torch.log(1 - p_k / (p_k + noise))
    return total / query.shape[0]


def inputs(b: int, d: int, k: int, seed: int):
    """Queries of arbitrary scale; unit positive and negative rows, all float64 with gradients enabled."""
    gen = torch.Generator().manual_seed(seed)
    query = (torch.randn(b, d, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    positive = F.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    negatives = F.normalize(torch.randn(k, d, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    return query, positive, negatives


SIZES = [(1, 4, 1), (3, 8, 5), (6, 16, 24)]
TEMPERATURES = [0.07, 0.2, 1.0]


# -- sampled softmax (eq. 2) ----------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("b,d,k", SIZES)
def test_bank_softmax_value_and_query_gradient_match_reference(b, d, k, temperature):
    query, positive, negatives = inputs(b, d, k, seed=b * 100 + k)
    loss = bank_softmax(query, positive, negatives, temperature)
    expected = softmax_reference(query, positive, negatives, temperature)
    assert loss.shape == () and loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, query)
    (ref_grad,) = torch.autograd.grad(expected, query)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-11)
    assert grad.abs().sum() > 0


def test_bank_softmax_gradcheck():
    query, positive, negatives = inputs(2, 3, 4, seed=7)
    assert torch.autograd.gradcheck(lambda q: bank_softmax(q, positive.detach(), negatives.detach(), 0.3), (query,))


def test_bank_softmax_is_log_k_plus_1_when_all_rows_look_alike():
    """Every logit equal (positive and negatives all the same row): -log(1/(K+1))."""
    row = F.normalize(torch.randn(1, 8, dtype=torch.float64), dim=1)
    loss = bank_softmax(row.repeat(3, 1) * 2, row.repeat(3, 1), row.repeat(9, 1), 0.07)
    assert loss.item() == pytest.approx(math.log(10), rel=1e-12)


# -- NCE (eqs. 4-6) -------------------------------------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("b,d,k", SIZES)
@pytest.mark.parametrize("n", [50, 10000])
def test_nce_log_z_matches_the_monte_carlo_estimate(b, d, k, temperature, n):
    query, _, negatives = inputs(b, d, k, seed=b + k)
    log_z = nce_log_z(query, negatives, temperature, n)
    assert log_z.shape == () and not log_z.requires_grad
    assert log_z.item() == pytest.approx(log_z_reference(query, negatives, temperature, n), rel=1e-12)


def test_nce_log_z_is_finite_where_z_overflows_float32():
    """At tau = 0.01 exp(1/tau) overflows float32; the log-space estimate does not."""
    row = F.normalize(torch.randn(1, 8), dim=1)
    log_z = nce_log_z(row.repeat(4, 1), row.repeat(16, 1), 0.01, dataset_size=1000)
    assert torch.isinf(torch.exp(torch.tensor(100.0)))  # exp(v.f/tau) itself overflows float32
    assert log_z.item() == pytest.approx(math.log(1000) + 100.0, rel=1e-5)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("b,d,k", SIZES)
@pytest.mark.parametrize("n", [40, 5000])
def test_npid_nce_value_and_query_gradient_match_reference(b, d, k, temperature, n):
    query, positive, negatives = inputs(b, d, k, seed=b * 10 + k + n)
    log_z = nce_log_z(query, negatives, temperature, n)
    loss = npid_nce(query, positive, negatives, temperature, log_z, n)
    expected = nce_reference(query, positive, negatives, temperature, log_z, n)
    assert loss.shape == () and loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-11)
    (grad,) = torch.autograd.grad(loss, query)
    (ref_grad,) = torch.autograd.grad(expected, query)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-7, atol=1e-10)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("log_z", [0.0, 3.5, torch.tensor(-2.0, dtype=torch.float64)])
def test_npid_nce_takes_log_z_as_a_float_or_a_tensor(log_z):
    query, positive, negatives = inputs(4, 6, 8, seed=3)
    loss = npid_nce(query, positive, negatives, 0.5, log_z, 100)
    torch.testing.assert_close(loss, nce_reference(query, positive, negatives, 0.5, log_z, 100), rtol=1e-10, atol=1e-12)


def test_npid_nce_gradcheck():
    query, positive, negatives = inputs(2, 3, 4, seed=11)
    assert torch.autograd.gradcheck(
        lambda q: npid_nce(q, positive.detach(), negatives.detach(), 0.3, 1.7, 20), (query,)
    )


def test_npid_nce_is_stable_at_a_small_temperature():
    """tau = 0.02 on aligned rows: exp(v.f/tau)/Z is huge or tiny; the loss
    and its gradient stay finite (the naive formula would give inf or nan)."""
    query, positive, negatives = inputs(4, 8, 16, seed=5)
    with torch.no_grad():
        negatives[0] = F.normalize(query[0], dim=0)
    loss = npid_nce(query.float(), positive.float(), negatives.float(), 0.02, -50.0, 100)
    (grad,) = torch.autograd.grad(loss, query)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


# -- shared behaviour -----------------------------------------------------------


@pytest.mark.parametrize("loss_fn", ["softmax", "nce"])
def test_bank_rows_get_no_gradient(loss_fn):
    query, positive, negatives = inputs(4, 8, 16, seed=0)
    if loss_fn == "softmax":
        loss = bank_softmax(query, positive, negatives, 0.2)
    else:
        loss = npid_nce(query, positive, negatives, 0.2, nce_log_z(query, negatives, 0.2, 100), 100)
    grad_q, grad_pos, grad_neg = torch.autograd.grad(loss, (query, positive, negatives), allow_unused=True)
    assert grad_pos is None and grad_neg is None
    assert grad_q is not None and grad_q.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", ["softmax", "nce"])
def test_loss_is_invariant_to_the_scale_of_the_query(loss_fn):
    """Queries are L2-normalised inside the losses."""
    query, positive, negatives = inputs(3, 8, 10, seed=2)
    compute = {
        "softmax": lambda q: bank_softmax(q, positive, negatives, 0.1),
        "nce": lambda q: npid_nce(q, positive, negatives, 0.1, 2.0, 500),
    }[loss_fn]
    torch.testing.assert_close(compute(query), compute(query * 17.0))


def test_low_precision_queries_give_a_float32_loss():
    query, positive, negatives = inputs(4, 8, 16, seed=4)
    q = query.detach().bfloat16()
    assert bank_softmax(q, positive.float(), negatives.float(), 0.1).dtype == torch.float32
    assert npid_nce(q, positive.float(), negatives.float(), 0.1, 1.0, 100).dtype == torch.float32
    assert nce_log_z(q, negatives.float(), 0.1, 100).dtype == torch.float32


@pytest.mark.parametrize("fn", [bank_softmax, lambda q, p, n, t: npid_nce(q, p, n, t, 0.0, 100)])
def test_bad_shapes_and_temperature_raise(fn):
    query, positive, negatives = inputs(4, 8, 16, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        fn(query, positive, negatives, 0.0)
    with pytest.raises(ValueError, match="need query"):
        fn(query, positive[:3], negatives, 0.1)
    with pytest.raises(ValueError, match="need query"):
        fn(query, positive, negatives[:, :5], 0.1)
    with pytest.raises(ValueError, match="need query"):
        fn(query[0], positive[0], negatives, 0.1)
