"""MoCo's InfoNCE (``sslx_moco.loss.moco_infonce``) against an explicit
float64 reference of He et al. (2020), eq. 1: values, the gradient w.r.t. the
queries, and no gradient through the keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sslx_moco.loss import moco_infonce


def moco_infonce_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 1 with loops: q and k are normalised, the queue is used as given;
    -log(exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.queue_j/t))), mean over queries."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        ki = (k[i] / k[i].norm()).detach()
        positive = torch.exp((qi * ki).sum() / temperature)
        negatives = sum(torch.exp((qi * queue[j]).sum() / temperature) for j in range(queue.shape[0]))
        total = total - torch.log(positive / (positive + negatives))
    return total / q.shape[0]


def _inputs(b: int, d: int, k: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(b, d, generator=gen, dtype=torch.float64) * 2.5).requires_grad_()
    keys = torch.randn(b, d, generator=gen, dtype=torch.float64).requires_grad_()
    queue = F.normalize(torch.randn(k, d, generator=gen, dtype=torch.float64), dim=1)
    return q, keys, queue


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("queue_size", [1, 7, 32])
@pytest.mark.parametrize("b,d", [(1, 4), (3, 16), (8, 4)])
def test_value_and_query_gradient_match_reference(b, d, queue_size, temperature):
    q, k, queue = _inputs(b, d, queue_size, seed=b * 1000 + d * 10 + queue_size)
    loss = moco_infonce(q, k, queue, temperature)
    expected = moco_infonce_reference(q, k, queue, temperature)
    assert loss.dtype == torch.float64 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, q)
    (ref_grad,) = torch.autograd.grad(expected, q)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def test_keys_get_no_gradient():
    """The positive keys are treated as constants (they come from the momentum encoder)."""
    q, k, queue = _inputs(4, 8, 16, seed=0)
    queue.requires_grad_()
    loss = moco_infonce(q, k, queue, 0.2)
    grad_q, grad_k = torch.autograd.grad(loss, (q, k), allow_unused=True)
    assert grad_k is None
    assert grad_q is not None and grad_q.abs().sum() > 0


def test_gradcheck_wrt_queries():
    q, k, queue = _inputs(3, 5, 6, seed=1)
    assert torch.autograd.gradcheck(lambda x: moco_infonce(x, k.detach(), queue, 0.3), (q,))


def test_queue_rows_are_used_as_given():
    """The queue is not renormalised: scaling it changes the loss, exactly as
    the reference with the scaled rows says."""
    q, k, queue = _inputs(4, 8, 10, seed=2)
    scaled = queue * 0.5
    loss = moco_infonce(q, k, scaled, 0.2)
    torch.testing.assert_close(loss, moco_infonce_reference(q, k, scaled, 0.2), rtol=1e-10, atol=1e-12)
    assert not torch.isclose(loss, moco_infonce(q, k, queue, 0.2))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_closed_form(temperature):
    """Query equal to its key and orthogonal to all K queue rows:
    loss = log(1 + K exp(-1/t))."""
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    loss = moco_infonce(q, 3 * q, queue, temperature)
    assert loss.item() == pytest.approx(math.log(1 + 3 * math.exp(-1 / temperature)), rel=1e-12)


@pytest.mark.parametrize("temperature", [0.0, -0.2])
def test_non_positive_temperature_raises(temperature):
    q, k, queue = _inputs(2, 4, 3, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce(q, k, queue, temperature)


def test_autocast_bfloat16_computes_in_float32():
    """Under CPU bf16 autocast the loss is float32 and matches float64 on the
    same (bf16) queries."""
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 8)
    x = torch.randn(6, 16, generator=gen)
    k = torch.randn(6, 8, generator=gen)
    queue = F.normalize(torch.randn(20, 8, generator=gen), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = head(x)
        assert q.dtype == torch.bfloat16
        loss = moco_infonce(q, k, queue, 0.2)
    assert loss.dtype == torch.float32
    expected = moco_infonce_reference(q.detach().double(), k.double(), queue.double(), 0.2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
