"""The shared building blocks MoCo stands on: ``sslx.modules.FeatureQueue``
(a FIFO ring of keys) and ``sslx.modules.ema_update``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslx.modules import FeatureQueue, cosine_momentum, ema_update


def numbered_rows(start: int, n: int, dim: int) -> torch.Tensor:
    """Rows whose every entry is their serial number: easy to follow through the ring."""
    return torch.arange(start, start + n, dtype=torch.float32)[:, None].expand(n, dim).clone()


def oldest_first(queue: FeatureQueue) -> torch.Tensor:
    """The queue's rows from the oldest (at ptr, next to be overwritten) to the newest."""
    return torch.roll(queue.features, -int(queue.ptr), dims=0)


def test_initial_rows_are_unit_vectors_and_ptr_is_zero():
    torch.manual_seed(0)
    queue = FeatureQueue(size=10, dim=6)
    assert queue.size == 10 and queue.features.shape == (10, 6)
    torch.testing.assert_close(queue.features.norm(dim=1), torch.ones(10))
    assert int(queue.ptr) == 0 and queue.ptr.dtype == torch.long
    raw = FeatureQueue(size=10, dim=6, normalize_init=False)
    assert not torch.allclose(raw.features.norm(dim=1), torch.ones(10))


def test_rows_are_written_at_ptr_and_wrap_around():
    queue = FeatureQueue(size=5, dim=3)
    initial = queue.features.clone()
    queue.enqueue(numbered_rows(100, 3, 3))
    assert int(queue.ptr) == 3
    torch.testing.assert_close(queue.features[:3], numbered_rows(100, 3, 3))
    torch.testing.assert_close(queue.features[3:], initial[3:])  # untouched
    queue.enqueue(numbered_rows(200, 3, 3))  # rows 3, 4, then wraps to 0
    assert int(queue.ptr) == 1
    assert queue.features[:, 0].tolist() == [202, 101, 102, 200, 201]


@pytest.mark.parametrize("batches", [[2, 2, 2, 2], [3, 3, 3], [1, 4, 2, 5], [5], [7], [12, 1], [2, 9, 3]])
def test_fifo_against_a_list_model(batches):
    """After any sequence of enqueues (batches smaller, equal to or larger
    than the queue), the ring read from ptr holds the last `size` rows ever
    written, oldest first (the initial rows count as the oldest), and ptr
    stays in [0, size)."""
    size, dim = 5, 2
    queue = FeatureQueue(size=size, dim=dim)
    history = list(queue.features.clone())  # the initial rows, oldest first
    serial = 1000
    for n in batches:
        rows = numbered_rows(serial, n, dim)
        serial += n
        queue.enqueue(rows)
        history.extend(rows)
        assert 0 <= int(queue.ptr) < size
        torch.testing.assert_close(oldest_first(queue), torch.stack(history[-size:]))


def test_batch_larger_than_queue_keeps_its_last_rows():
    queue = FeatureQueue(size=4, dim=2)
    queue.enqueue(numbered_rows(0, 1, 2))  # ptr = 1
    queue.enqueue(numbered_rows(10, 7, 2))
    assert sorted(queue.features[:, 0].tolist()) == [13, 14, 15, 16]


def test_enqueue_detaches_and_casts_to_the_queue_dtype():
    queue = FeatureQueue(size=4, dim=3)
    rows = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    queue.enqueue(rows)
    assert queue.features.dtype == torch.float32 and not queue.features.requires_grad
    torch.testing.assert_close(queue.features[:2], rows.detach().float())


def test_queue_state_is_in_the_state_dict():
    a = FeatureQueue(size=6, dim=3)
    a.enqueue(torch.randn(4, 3))
    b = FeatureQueue(size=6, dim=3)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"features", "ptr"}
    assert torch.equal(b.features, a.features) and int(b.ptr) == 4


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)).double()


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.996, 1.0])
def test_ema_update_matches_the_formula_and_leaves_buffers(momentum):
    target, online = _net(0), _net(1)
    online(torch.randn(8, 4, dtype=torch.float64))  # give the online BN new running stats
    old = {k: v.clone() for k, v in target.state_dict().items()}
    online_params = {k: v.clone() for k, v in online.named_parameters()}
    ema_update(target, online, momentum)
    for name, p in target.named_parameters():
        expected = momentum * old[name] + (1 - momentum) * online_params[name]
        torch.testing.assert_close(p, expected, rtol=1e-12, atol=1e-12)
    for name, buf in target.named_buffers():
        assert torch.equal(buf, old[name]), name  # running stats are not averaged
    for name, p in online.named_parameters():
        assert torch.equal(p, online_params[name])  # the online network is untouched


def test_ema_update_needs_matching_architectures():
    with pytest.raises(ValueError):
        ema_update(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)), 0.9)


@pytest.mark.parametrize("total", [1, 10, 1000])
def test_cosine_momentum_schedule(total):
    """start at step 0, end at the last step (and after), the mean halfway,
    non-decreasing in between, and the explicit cosine formula everywhere."""
    start, end = 0.9, 1.0
    assert cosine_momentum(start, end, 0, total) == pytest.approx(start)
    assert cosine_momentum(start, end, total, total) == pytest.approx(end)
    assert cosine_momentum(start, end, 2 * total, total) == pytest.approx(end)
    values = [cosine_momentum(start, end, s, total) for s in range(total + 1)]
    assert all(a <= b + 1e-15 for a, b in zip(values, values[1:]))
    if total % 2 == 0:
        assert values[total // 2] == pytest.approx((start + end) / 2)
    for s in range(0, total + 1, max(1, total // 7)):
        assert values[s] == pytest.approx(end - (end - start) * (math.cos(math.pi * s / total) + 1) / 2)
