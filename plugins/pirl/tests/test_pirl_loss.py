"""PIRL's loss (``sslx_pirl.loss.pirl_loss``) against an independent float64
reference of Misra & van der Maaten (2020, arXiv:1912.01991) eq. 5 written
with loops over samples and negatives: values and gradients w.r.t. both the
jigsaw and the image embeddings, the weight lambda, and the NCE form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sslx_pirl.loss import pirl_loss


def softmax_term(q: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, t: float) -> torch.Tensor:
    """-log(exp(q.m/t) / (exp(q.m/t) + sum_k exp(q.n_k/t))) for one normalised query."""
    numerator = torch.exp(torch.dot(q, positive) / t)
    denominator = numerator
    for k in range(negatives.shape[0]):
        denominator = denominator + torch.exp(torch.dot(q, negatives[k]) / t)
    return -torch.log(numerator / denominator)


def nce_term(q: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, t: float, log_z: float, n: int):
    """NPID's NCE for one normalised query: h = P / (P + K/n), P = exp(v.q/t) / Z;
    -log h(positive) - sum_k log(1 - h(negative k))."""
    noise, z = negatives.shape[0] / n, math.exp(log_z)
    p = torch.exp(torch.dot(q, positive) / t) / z
    total = -torch.log(p / (p + noise))
    for k in range(negatives.shape[0]):
        p_k = torch.exp(torch.dot(q, negatives[k]) / t) / z
        total = total - torch.log(1 - p_k / (p_k + noise))
    return total


def pirl_reference(g, f, positive, negatives, t, lam, log_z=None, n=None) -> torch.Tensor:
    """Eq. 5, L = lambda * L(m_I, g(v_It)) + (1 - lambda) * L(m_I, f(v_I)),
    averaged over the samples of the batch, one sample at a time."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(g.shape[0]):
        gi, fi = g[i] / g[i].norm(), f[i] / f[i].norm()
        if log_z is None:
            jigsaw, image = softmax_term(gi, positive[i], negatives, t), softmax_term(fi, positive[i], negatives, t)
        else:
            jigsaw = nce_term(gi, positive[i], negatives, t, log_z[0], n)
            image = nce_term(fi, positive[i], negatives, t, log_z[1], n)
        total = total + lam * jigsaw + (1 - lam) * image
    return total / g.shape[0]


def inputs(b: int, d: int, k: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    g = (torch.randn(b, d, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    f = (torch.randn(b, d, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    bank = F.normalize(torch.randn(b + k, d, generator=gen, dtype=torch.float64), dim=1)
    return g, f, bank[:b], bank[b:]


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("b,d,k", [(1, 4, 1), (3, 8, 6), (5, 16, 20)])
def test_softmax_form_value_and_gradients_match_eq5(b, d, k, temperature, lam):
    g, f, positive, negatives = inputs(b, d, k, seed=100 * b + k)
    loss = pirl_loss(g, f, positive, negatives, temperature, lam)
    expected = pirl_reference(g, f, positive, negatives, temperature, lam)
    assert loss.shape == () and loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(loss, (g, f))
    ref_grads = torch.autograd.grad(expected, (g, f))
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref, rtol=1e-8, atol=1e-11)
    assert (grads[0].abs().sum() > 0) == (lam > 0) and (grads[1].abs().sum() > 0) == (lam < 1)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.8])
def test_nce_form_value_and_gradients_match_eq5(lam):
    g, f, positive, negatives = inputs(4, 8, 12, seed=7)
    log_z, n = (2.5, -1.0), 300
    loss = pirl_loss(g, f, positive, negatives, 0.2, lam, log_z=(torch.tensor(2.5), -1.0), dataset_size=n)
    expected = pirl_reference(g, f, positive, negatives, 0.2, lam, log_z, n)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-11)
    for grad, ref in zip(torch.autograd.grad(loss, (g, f)), torch.autograd.grad(expected, (g, f))):
        torch.testing.assert_close(grad, ref, rtol=1e-7, atol=1e-10)


def test_gradcheck_both_embeddings():
    g, f, positive, negatives = inputs(2, 3, 4, seed=1)
    assert torch.autograd.gradcheck(lambda a, b: pirl_loss(a, b, positive, negatives, 0.3, 0.4), (g, f))


def test_bank_rows_get_no_gradient():
    g, f, positive, negatives = inputs(3, 6, 8, seed=2)
    positive.requires_grad_()
    negatives.requires_grad_()
    loss = pirl_loss(g, f, positive, negatives, 0.1, 0.5)
    grad_pos, grad_neg = torch.autograd.grad(loss, (positive, negatives), allow_unused=True)
    assert grad_pos is None and grad_neg is None


@pytest.mark.parametrize("lam", [-0.1, 1.1])
def test_weight_outside_0_1_raises(lam):
    g, f, positive, negatives = inputs(2, 4, 3, seed=0)
    with pytest.raises(ValueError, match="jigsaw_weight must be in"):
        pirl_loss(g, f, positive, negatives, 0.1, lam)


def test_nce_form_needs_the_dataset_size():
    g, f, positive, negatives = inputs(2, 4, 3, seed=0)
    with pytest.raises(ValueError, match="needs dataset_size"):
        pirl_loss(g, f, positive, negatives, 0.1, 0.5, log_z=(0.0, 0.0))
