"""``sslx_knn.evaluator.knn_predict``: the similarity-weighted kNN vote (Wu et al.,
2018) against an explicit python-loop float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from sslx_knn.evaluator import knn_predict


def knn_reference(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, num_classes: int, k: int, t: float):
    """Loops in float64: cosine similarity to every training sample, the k
    most similar vote for their class with weight exp(sim / t), argmax of the
    summed weights. Also returns, per test sample, whether the answer is
    robust to float32 rounding (no near-tie at the k-th neighbour, nor
    between the two best classes)."""
    train, test = train.double(), test.double()
    k = min(k, len(train))
    preds, robust = [], []
    for x in test:
        sims = [float(x @ y) / (float(x.norm()) * float(y.norm())) for y in train]
        order = sorted(range(len(train)), key=lambda j: -sims[j])
        votes = [0.0] * num_classes
        for j in order[:k]:
            votes[int(labels[j])] += math.exp(sims[j] / t)
        best = max(range(num_classes), key=lambda c: votes[c])
        preds.append(best)
        ranked = sorted(votes, reverse=True)
        gap_k = sims[order[k - 1]] - sims[order[k]] if k < len(train) else 1.0
        margin = (ranked[0] - ranked[1]) / ranked[0] if num_classes > 1 else 1.0
        robust.append(gap_k > 1e-5 and margin > 1e-5)
    return torch.tensor(preds), torch.tensor(robust)


def random_problem(n_train: int, n_test: int, dim: int, num_classes: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    train = torch.randn(n_train, dim, generator=gen) * torch.rand(n_train, 1, generator=gen).add(0.1)
    labels = torch.randint(0, num_classes, (n_train,), generator=gen)
    test = torch.randn(n_test, dim, generator=gen)
    return train, labels, test


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_matches_reference(k, temperature, chunk_size):
    train, labels, test = random_problem(n_train=40, n_test=25, dim=6, num_classes=4, seed=k)
    pred = knn_predict(train, labels, test, num_classes=4, k=k, temperature=temperature, chunk_size=chunk_size)
    expected, robust = knn_reference(train, labels, test, 4, k, temperature)
    assert pred.shape == (25,) and pred.dtype == torch.long
    assert robust.float().mean() >= 0.9  # the comparison below covers nearly every sample
    assert torch.equal(pred[robust], expected[robust])


def test_temperature_changes_the_vote():
    """The weights matter: on the same data, a low and a high temperature
    give different predictions somewhere, each matching the reference."""
    train, labels, test = random_problem(n_train=60, n_test=60, dim=4, num_classes=3, seed=3)
    cold = knn_predict(train, labels, test, 3, k=30, temperature=0.02)
    hot = knn_predict(train, labels, test, 3, k=30, temperature=10.0)
    assert not torch.equal(cold, hot)
    for pred, t in ((cold, 0.02), (hot, 10.0)):
        expected, robust = knn_reference(train, labels, test, 3, 30, t)
        assert torch.equal(pred[robust], expected[robust])


@pytest.mark.parametrize("k", [50, 1000])
def test_k_larger_than_the_training_set_is_clamped(k):
    train, labels, test = random_problem(n_train=12, n_test=10, dim=5, num_classes=3, seed=0)
    pred = knn_predict(train, labels, test, num_classes=3, k=k, temperature=0.1)
    assert torch.equal(pred, knn_predict(train, labels, test, num_classes=3, k=12, temperature=0.1))
    expected, robust = knn_reference(train, labels, test, 3, 12, 0.1)
    assert torch.equal(pred[robust], expected[robust])


@pytest.mark.parametrize("k", [1, 5, 20, 60])
def test_clustered_toy_data_is_classified_perfectly(k):
    """Three tight clusters around orthogonal directions: every test point
    gets its cluster's class (accuracy 1), whatever k."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.eye(3, 8) * 5
    train = torch.cat([c + 0.3 * torch.randn(20, 8, generator=gen) for c in centers])
    labels = torch.arange(3).repeat_interleave(20)
    test = torch.cat([c + 0.3 * torch.randn(10, 8, generator=gen) for c in centers])
    truth = torch.arange(3).repeat_interleave(10)
    pred = knn_predict(train, labels, test, num_classes=3, k=k, temperature=0.1)
    assert (pred == truth).float().mean().item() == 1.0


def test_only_directions_matter():
    """Features are L2-normalised: rescaling samples by positive factors does
    not change any prediction."""
    train, labels, test = random_problem(n_train=30, n_test=20, dim=5, num_classes=3, seed=4)
    gen = torch.Generator().manual_seed(5)
    base = knn_predict(train, labels, test, 3, k=7, temperature=0.1)
    scaled = knn_predict(
        train * torch.rand(30, 1, generator=gen).add(0.1) * 10,
        labels,
        test * torch.rand(20, 1, generator=gen).add(0.1),
        3,
        k=7,
        temperature=0.1,
    )
    assert torch.equal(base, scaled)
