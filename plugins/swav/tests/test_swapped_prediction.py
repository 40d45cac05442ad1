"""SwAV's swapped-prediction loss (``sslx_swav.loss.swapped_prediction``)
against an explicit float64 reference of Caron et al. (2020), eq. 1-2 as
averaged in the paper's code: values, gradients w.r.t. the scores,
gradcheck, codes as constants, and autocast."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_swav.loss import sinkhorn, swapped_prediction


def swapped_prediction_reference(scores, codes, code_views, temperature):
    """Loops over code views i, other views j and samples b:
    1/|C| sum_i 1/(V-1) sum_{j != i} 1/B sum_b -sum_k q_i[b,k] log softmax(s_j[b] / t)_k,
    with each log-softmax written out as logits - log(sum(exp(logits)))."""
    num_views, batch = len(scores), scores[0].shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for q, i in zip(codes, code_views):
        per_code_view = torch.zeros((), dtype=torch.float64)
        for j in range(num_views):
            if j == i:
                continue
            for b in range(batch):
                logits = scores[j][b] / temperature
                log_p = logits - torch.log(torch.exp(logits).sum())
                per_code_view = per_code_view - (q[b].detach() * log_p).sum() / batch
        total = total + per_code_view / (num_views - 1)
    return total / len(code_views)


def make_inputs(num_views: int, code_views: list[int], b: int, k: int, seed: int):
    """Scores in [-1, 1] (as cosine similarities are) and Sinkhorn codes of the code views."""
    gen = torch.Generator().manual_seed(seed)
    scores = [(torch.rand(b, k, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_() for _ in range(num_views)]
    codes = [sinkhorn(scores[i], 0.05, 3) for i in code_views]
    return scores, codes


CASES = [(2, [0, 1], 4, 3), (6, [0, 1], 5, 7), (3, [0], 1, 2), (4, [0, 1, 2, 3], 3, 5), (5, [1, 3], 6, 4)]


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("num_views,code_views,b,k", CASES)
def test_value_and_gradients_match_the_reference(num_views, code_views, b, k, temperature):
    scores, codes = make_inputs(num_views, code_views, b, k, seed=num_views * 100 + b * 10 + k)
    loss = swapped_prediction(scores, codes, code_views, temperature)
    expected = swapped_prediction_reference(scores, codes, code_views, temperature)
    assert loss.dtype == torch.float64 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    # a view that is the only code view predicts nothing: no gradient (zeros when materialised)
    grads = torch.autograd.grad(loss, scores, allow_unused=True, materialize_grads=True)
    ref_grads = torch.autograd.grad(expected, scores, allow_unused=True, materialize_grads=True)
    for v, (g, r) in enumerate(zip(grads, ref_grads)):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-12, msg=f"view {v}")


def test_gradcheck():
    scores, codes = make_inputs(3, [0, 1], b=2, k=3, seed=11)
    assert torch.autograd.gradcheck(lambda *s: swapped_prediction(list(s), codes, [0, 1], 0.3), tuple(scores))


def test_a_code_view_does_not_predict_its_own_codes():
    """With 2 views, view 0's scores only enter through predicting view 1's
    codes: changing view 0's codes leaves view 0's gradient unchanged, and
    the gradient of view j's scores is (softmax(s_j / t) - q_i) / (t B) summed
    over the code views i != j, divided by (V - 1) |C|."""
    scores, codes = make_inputs(2, [0, 1], b=4, k=5, seed=3)
    t = 0.2
    grad0, grad1 = torch.autograd.grad(swapped_prediction(scores, codes, [0, 1], t), scores)
    other = [torch.softmax(torch.randn(4, 5, dtype=torch.float64), dim=1), codes[1]]
    grad0_b, _ = torch.autograd.grad(swapped_prediction(scores, other, [0, 1], t), scores)
    torch.testing.assert_close(grad0, grad0_b, rtol=0, atol=0)
    for j, (grad, q) in enumerate([(grad0, codes[1]), (grad1, codes[0])]):
        p = torch.softmax(scores[j].detach() / t, dim=1)
        torch.testing.assert_close(grad, (p - q) / (t * 4) / (1 * 2), rtol=1e-10, atol=1e-14, msg=f"view {j}")


def test_codes_are_constants():
    scores, codes = make_inputs(3, [0, 1], b=3, k=4, seed=5)
    codes = [c.clone().requires_grad_() for c in codes]
    loss = swapped_prediction(scores, codes, [0, 1], 0.1)
    grads = torch.autograd.grad(loss, [*scores, *codes], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:3])
    assert grads[3] is None and grads[4] is None


def test_closed_form_with_uniform_codes_and_equal_scores():
    """Equal scores and uniform codes: every cross-entropy is log K."""
    scores = [torch.zeros(4, 6, dtype=torch.float64) for _ in range(4)]
    codes = [torch.full((4, 6), 1 / 6, dtype=torch.float64)] * 2
    assert swapped_prediction(scores, codes, [0, 1], 0.1).item() == pytest.approx(math.log(6), rel=1e-12)


def test_autocast_bfloat16_computes_in_float32():
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 5)
    x = [torch.randn(6, 8, generator=gen) for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = [head(v) for v in x]
        assert scores[0].dtype == torch.bfloat16
        codes = [sinkhorn(scores[i], 0.05, 3) for i in (0, 1)]
        loss = swapped_prediction(scores, codes, [0, 1], 0.1)
    assert loss.dtype == torch.float32
    expected = swapped_prediction_reference(
        [s.detach().double() for s in scores], [c.double() for c in codes], [0, 1], 0.1
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "code_views,codes,temperature,match",
    [
        ([0, 1], 2, 0.0, "temperature"),
        ([0, 1], 1, 0.1, "one code per code view"),
        ([0, 0], 2, 0.1, "distinct"),
        ([0, 3], 2, 0.1, "distinct"),
    ],
)
def test_invalid_arguments_raise(code_views, codes, temperature, match):
    scores, all_codes = make_inputs(3, [0, 1], b=2, k=3, seed=0)
    with pytest.raises(ValueError, match=match):
        swapped_prediction(scores, all_codes[:codes], code_views, temperature)
    with pytest.raises(ValueError, match="at least 2 views"):
        swapped_prediction(scores[:1], all_codes[:1], [0], 0.1)
