"""``sslx_linear.logistic``: the logistic-regression solver of the linear
probes against float64 references (the objective and gradient by their
explicit formula, the minimiser by damped Newton steps on the explicit
Hessian), and the pieces of the probe protocol."""

from __future__ import annotations

import pytest
import torch
from sslx_linear.logistic import fit_logistic, holdout_split, linear_probe, logistic_objective, predict, standardize


def reference_objective(x, y, weight, bias, l2):
    """mean_i [logsumexp_c z_ic - z_iy_i] + l2 ||W||^2, z = x W^T + b, with a
    python loop over samples, float64; and its gradient (P - Y) x / N + 2 l2 W,
    sum_i (P - Y) / N."""
    x, weight, bias = x.double(), weight.double(), bias.double()
    n, num_classes = len(x), len(bias)
    total = 0.0
    grad_w = torch.zeros_like(weight)
    grad_b = torch.zeros_like(bias)
    for i in range(n):
        z = [float(x[i] @ weight[c]) + float(bias[c]) for c in range(num_classes)]
        top = max(z)
        lse = top + torch.tensor([zc - top for zc in z], dtype=torch.float64).exp().sum().log().item()
        total += lse - z[int(y[i])]
        p = torch.tensor([zc - lse for zc in z], dtype=torch.float64).exp()
        p[int(y[i])] -= 1.0
        grad_w += p[:, None] * x[i][None, :] / n
        grad_b += p / n
    loss = total / n + l2 * float((weight**2).sum())
    return loss, grad_w + 2 * l2 * weight, grad_b


def newton_reference(x, y, num_classes, l2, iters=40):
    """The minimiser by damped Newton steps on the explicit Hessian
    sum_i kron(diag(p_i) - p_i p_i^T, [x_i,1][x_i,1]^T) / N + 2 l2 (on W),
    float64. The bias is fixed only up to a common shift (the softmax ignores
    it): the pseudo-inverse keeps it at zero sum, as from a zero start."""
    x = x.double()
    n, d = x.shape
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    theta = torch.zeros(num_classes, d + 1, dtype=torch.float64)
    penalty = torch.zeros(num_classes, d + 1, dtype=torch.float64)
    penalty[:, :d] = 2 * l2

    def objective(t):
        return reference_objective(x, y, t[:, :d], t[:, d], l2)

    for _ in range(iters):
        loss, gw, gb = objective(theta)
        g = torch.cat([gw, gb[:, None]], dim=1).reshape(-1)
        if g.abs().max() < 1e-13:
            break
        p = torch.softmax(xt @ theta.T, dim=1)
        hess = torch.zeros(g.numel(), g.numel(), dtype=torch.float64)
        for i in range(n):
            hess += torch.kron(torch.diag(p[i]) - torch.outer(p[i], p[i]), torch.outer(xt[i], xt[i])) / n
        hess += torch.diag(penalty.reshape(-1))
        step = (torch.linalg.pinv(hess, hermitian=True) @ g).reshape(theta.shape)
        t = 1.0
        while objective(theta - t * step)[0] > loss - 1e-4 * t * float(g @ step.reshape(-1)) and t > 1e-8:
            t /= 2
        theta = theta - t * step
    return theta[:, :d], theta[:, d]


def problem(n, d, num_classes, seed, dtype=torch.float64, separable=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if separable:
        y = (x @ torch.randn(d, num_classes, generator=gen, dtype=torch.float64)).argmax(dim=1)
    else:
        centers = 1.5 * torch.randn(num_classes, d, generator=gen, dtype=torch.float64)
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = x + centers[y]
    return x.to(dtype), y


def test_objective_and_its_gradient_match_the_explicit_formula():
    x, y = problem(25, 4, 3, seed=0)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = logistic_objective(x, y, weight, bias, 0.03)
    loss.backward()
    ref_loss, ref_gw, ref_gb = reference_objective(x, y, weight.detach(), bias.detach(), 0.03)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-12)
    torch.testing.assert_close(weight.grad, ref_gw, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bias.grad, ref_gb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("l2", [1e-3, 0.1])
def test_lbfgs_finds_the_stationary_point_of_the_newton_reference(l2):
    x, y = problem(40, 5, 3, seed=2)
    weight, bias = fit_logistic(x, y, 3, l2, optimizer="lbfgs", max_iter=500)
    assert weight.shape == (3, 5) and bias.shape == (3,) and weight.dtype == torch.float64
    _, gw0, gb0 = reference_objective(x, y, torch.zeros(3, 5), torch.zeros(3), l2)
    _, gw, gb = reference_objective(x, y, weight, bias, l2)
    scale = float(torch.cat([gw0.flatten(), gb0]).abs().max())
    assert float(torch.cat([gw.flatten(), gb]).abs().max()) < 1e-7 * scale  # stationary
    ref_w, ref_b = newton_reference(x, y, 3, l2)
    torch.testing.assert_close(weight, ref_w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(bias - bias.mean(), ref_b - ref_b.mean(), rtol=1e-6, atol=1e-7)


def test_float32_solution_is_stationary_to_float32_precision():
    x, y = problem(200, 8, 4, seed=3, dtype=torch.float32)
    weight, bias = fit_logistic(x, y, 4, 1e-2, max_iter=300)
    assert weight.dtype == torch.float32
    _, gw0, gb0 = reference_objective(x, y, torch.zeros(4, 8), torch.zeros(4), 1e-2)
    _, gw, gb = reference_objective(x, y, weight, bias, 1e-2)
    scale = float(torch.cat([gw0.flatten(), gb0]).abs().max())
    assert float(torch.cat([gw.flatten(), gb]).abs().max()) < 1e-4 * scale
    ref_w, _ = newton_reference(x, y, 4, 1e-2, iters=30)
    torch.testing.assert_close(weight.double(), ref_w, rtol=1e-3, atol=1e-4)


def test_sgd_reaches_nearly_the_optimal_objective():
    x, y = problem(300, 6, 4, seed=4)
    l2 = 1e-2
    w_opt, b_opt = fit_logistic(x, y, 4, l2, optimizer="lbfgs", max_iter=300)
    best, _, _ = reference_objective(x, y, w_opt, b_opt, l2)
    at_zero, _, _ = reference_objective(x, y, torch.zeros(4, 6), torch.zeros(4), l2)
    w, b = fit_logistic(x.float(), y, 4, l2, optimizer="sgd", epochs=60, batch_size=32, lr=0.1, seed=0)
    reached, _, _ = reference_objective(x, y, w, b, l2)
    assert best - 1e-9 <= reached < best + 1e-3 * (at_zero - best)


def test_sgd_is_seeded_and_leaves_the_global_rng_alone():
    x, y = problem(120, 5, 3, seed=5, dtype=torch.float32)
    state = torch.get_rng_state()
    runs = [fit_logistic(x, y, 3, 1e-3, optimizer="sgd", epochs=3, batch_size=16, seed=s) for s in (7, 7, 8)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])  # the seed decides the batch order


def test_warm_start_reaches_the_same_solution():
    x, y = problem(60, 4, 3, seed=6)
    cold = fit_logistic(x, y, 3, 0.01, max_iter=500)
    start = fit_logistic(x, y, 3, 1.0, max_iter=500)
    assert (start[0] - cold[0]).abs().max() > 0.1  # a start far from the solution
    warm = fit_logistic(x, y, 3, 0.01, max_iter=500, init=start)
    torch.testing.assert_close(warm[0], cold[0], rtol=1e-5, atol=1e-5)


def test_predict_is_the_argmax_of_the_scores():
    x, y = problem(50, 3, 4, seed=7)
    gen = torch.Generator().manual_seed(0)
    weight, bias = (
        torch.randn(4, 3, generator=gen, dtype=torch.float64),
        torch.randn(4, generator=gen, dtype=torch.float64),
    )
    expected = [max(range(4), key=lambda c: float(row @ weight[c] + bias[c])) for row in x]
    assert predict(x, weight, bias, chunk_size=7).tolist() == expected
    assert predict(x[:0], weight, bias).shape == (0,)


def test_standardize_uses_the_training_statistics():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(100, 4, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 0.0]) + 3
    test = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    train_s, test_s = standardize(train, test)
    torch.testing.assert_close(train_s.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(train_s[:, :3].std(0), torch.ones(3, dtype=torch.float64))
    assert torch.equal(train_s[:, 3], torch.zeros(100, dtype=torch.float64))  # a constant feature is only centred
    mean, std = train.mean(0), train.std(0)
    torch.testing.assert_close(test_s[:, :3], (test[:, :3] - mean[:3]) / std[:3])
    torch.testing.assert_close(test_s[:, 3], test[:, 3] - 3)


def test_holdout_split_is_a_seeded_partition():
    fit, val = holdout_split(50, 0.1, seed=3)
    assert len(val) == 5 and len(fit) == 45
    assert sorted(torch.cat([fit, val]).tolist()) == list(range(50))
    again = holdout_split(50, 0.1, seed=3)
    assert torch.equal(again[1], val) and not torch.equal(holdout_split(50, 0.1, seed=4)[1], val)
    assert [len(p) for p in holdout_split(3, 0.01, seed=0)] == [2, 1]  # at least one on each side
    assert [len(p) for p in holdout_split(3, 0.99, seed=0)] == [1, 2]


@pytest.mark.parametrize("optimizer", ["lbfgs", "sgd"])
def test_probe_recovers_a_linear_labelling_of_gaussian_features(optimizer):
    """Labels = argmax of a random linear map of random Gaussian features:
    the probe classifies held-out features almost perfectly."""
    x, y = problem(3500, 16, 5, seed=8, dtype=torch.float32, separable=True)
    top1, l2 = linear_probe(
        x[:3000],
        y[:3000],
        x[3000:],
        y[3000:],
        5,
        [1e-5, 1e-4, 1e-3],
        optimizer=optimizer,
        max_iter=100,
        epochs=20,
        batch_size=128,
        lr=0.1,
    )
    assert top1 > 0.95 and l2 in (1e-5, 1e-4, 1e-3)


def test_probe_chooses_l2_by_held_out_accuracy_then_refits_on_all():
    """The protocol recomputed step by step: fits on the seeded fit part,
    accuracy on the validation part, refit with the best value on everything,
    test accuracy. A penalty far too strong is not chosen."""
    x, y = problem(600, 10, 3, seed=9, dtype=torch.float32)
    x[:, 0] *= 50  # scales do not matter: the probe standardises
    y[:300] = torch.where(y[:300] == 2, 0, y[:300])  # uneven classes: a heavily penalised probe predicts class 0
    train_x, train_y, test_x, test_y = x[:500], y[:500], x[500:], y[500:]
    grid = [3.0, 1e-4]
    top1, chosen = linear_probe(train_x, train_y, test_x, test_y, 3, grid, val_fraction=0.2, seed=5, max_iter=50)

    mean, std = train_x.mean(0), train_x.std(0)
    sx, tx = (train_x - mean) / std, (test_x - mean) / std
    fit, val = holdout_split(500, 0.2, seed=5)
    val_acc = {}
    for value in grid:
        w, b = fit_logistic(sx[fit], train_y[fit], 3, value, max_iter=50)
        val_acc[value] = float((predict(sx[val], w, b) == train_y[val]).float().mean())
    assert val_acc[1e-4] > val_acc[3.0] + 0.1  # the comparison is meaningful
    assert chosen == 1e-4
    w, b = fit_logistic(sx, train_y, 3, chosen, max_iter=50)
    assert top1 == pytest.approx(float((predict(tx, w, b) == test_y).float().mean()), abs=1 / 100)
    # a single value: no validation split, that value is used
    assert linear_probe(train_x, train_y, test_x, test_y, 3, 3.0, max_iter=50)[1] == 3.0
