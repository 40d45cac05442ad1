"""NT-Xent (``sslx_simclr.loss.nt_xent``) against an explicit float64
reference of Chen et al. (2020), eq. 1: values, gradients, edge cases and
its precision under autocast."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_simclr.loss import nt_xent


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 1 written out with loops: the 2B views are z1[0..B-1] then
    z2[0..B-1]; the positive of view i is the other view of its sample; the
    denominator sums over every view k != i; the loss is the mean over 2B."""
    views = list(z1) + list(z2)
    n = len(views)
    b = n // 2

    def sim(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).sum() / (u.norm() * v.norm())

    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        pos = i + b if i < b else i - b
        numerator = torch.exp(sim(views[i], views[pos]) / temperature)
        denominator = sum(torch.exp(sim(views[i], views[k]) / temperature) for k in range(n) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / n


def _pair(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # rows of different norms: the loss must only see directions
    z1 = (
        torch.randn(b, d, generator=gen, dtype=torch.float64)
        * torch.rand(b, 1, generator=gen, dtype=torch.float64).add(0.5)
        * 3
    )
    z2 = torch.randn(b, d, generator=gen, dtype=torch.float64)
    return z1.requires_grad_(), z2.requires_grad_()


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("b", [1, 2, 5, 8])
def test_value_and_gradients_match_reference(b, d, temperature):
    """Loss value and d loss / d z1, d z2 equal the explicit eq. 1 in float64."""
    z1, z2 = _pair(b, d, seed=100 * b + d)
    loss = nt_xent(z1, z2, temperature)
    expected = nt_xent_reference(z1, z2, temperature)
    assert loss.dtype == torch.float64
    assert loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)

    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    r1, r2 = torch.autograd.grad(expected, (z1, z2))
    torch.testing.assert_close(g1, r1, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(g2, r2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("b,d", [(2, 3), (4, 5)])
def test_gradcheck(b, d, temperature):
    """The analytic gradient agrees with finite differences (float64)."""
    z1, z2 = _pair(b, d, seed=7)
    assert torch.autograd.gradcheck(lambda a, c: nt_xent(a, c, temperature), (z1, z2))


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_closed_form_on_orthogonal_samples(temperature):
    """Identical views of B orthogonal samples: each view has one positive at
    similarity 1 and 2B-2 negatives at similarity 0, so the loss is
    log(1 + (2B - 2) exp(-1/t))."""
    b = 4
    z = torch.eye(b, dtype=torch.float64)
    loss = nt_xent(z, z.clone(), temperature)
    assert loss.item() == pytest.approx(math.log(1 + (2 * b - 2) * math.exp(-1 / temperature)), rel=1e-12)


def test_single_sample_has_no_negatives_and_zero_loss():
    """With B = 1 the only other view is the positive: loss 0, gradients 0."""
    z1, z2 = _pair(1, 4, seed=3)
    loss = nt_xent(z1, z2, 0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    assert g1.abs().max() < 1e-12 and g2.abs().max() < 1e-12


def test_loss_decreases_when_positives_align():
    """Moving z2 towards z1 (same direction per sample) lowers the loss."""
    z1, z2 = _pair(6, 8, seed=11)
    with torch.no_grad():
        far = nt_xent(z1, z2, 0.5)
        near = nt_xent(z1, z1 + 0.1 * z2, 0.5)
    assert near < far


def test_gather_flag_is_a_no_op_in_one_process():
    """Without torch.distributed, gather=True and gather=False agree exactly."""
    z1, z2 = _pair(5, 16, seed=5)
    assert torch.equal(nt_xent(z1, z2, 0.2, gather=True), nt_xent(z1, z2, 0.2, gather=False))


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_non_positive_temperature_raises(temperature):
    z1, z2 = _pair(2, 3, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, temperature)


@pytest.mark.parametrize("shapes", [((4, 8), (3, 8)), ((4, 8), (4, 7)), ((4,), (4,)), ((2, 3, 4), (2, 3, 4))])
def test_mismatched_or_non_2d_inputs_raise(shapes):
    a, c = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        nt_xent(a, c, 0.5)


def test_autocast_bfloat16_computes_in_float32():
    """Under CPU bf16 autocast, projections arrive in bfloat16 but the loss is
    float32 and computed in float32 (no bf16 matmul inside)."""
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(32, 16)
    x1, x2 = torch.randn(8, 32, generator=gen), torch.randn(8, 32, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16  # autocast is really on
        loss = nt_xent(z1, z2, 0.1)
        # float32 inputs stay float32 inside: same value as without autocast
        f1, f2 = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
        inside = nt_xent(f1, f2, 0.1)
    assert loss.dtype == torch.float32
    assert inside.dtype == torch.float32
    reference = nt_xent_reference(z1.detach().double(), z2.detach().double(), 0.1)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(inside, nt_xent(f1, f2, 0.1), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
