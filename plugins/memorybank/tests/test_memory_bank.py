"""``sslx.modules.MemoryBank``, the per-image bank NPID and PIRL share: unit
rows, the update ``normalize(m * old + (1 - m) * f)`` against float64
arithmetic, repeated indices, argument checks, seeded sampling and the
checkpointed buffer."""

from __future__ import annotations

import itertools

import pytest
import torch

from sslx.modules import MemoryBank


def make_bank(size: int = 12, dim: int = 5, seed: int = 0) -> MemoryBank:
    torch.manual_seed(seed)
    return MemoryBank(size=size, dim=dim)


def expected_rows(old: torch.Tensor, features: torch.Tensor, momentum: float) -> torch.Tensor:
    """normalize(m * old + (1 - m) * f), row by row, in float64."""
    out = []
    for o, f in zip(old.double(), features.double()):
        mixed = [momentum * float(o[j]) + (1 - momentum) * float(f[j]) for j in range(len(o))]
        norm = sum(x * x for x in mixed) ** 0.5
        out.append([x / norm for x in mixed])
    return torch.tensor(out, dtype=torch.float64)


def test_rows_start_as_random_unit_vectors():
    bank = make_bank(size=50, dim=8)
    assert bank.size == 50 and bank.dim == 8 and bank.features.shape == (50, 8)
    assert bank.features.dtype == torch.float32
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(50))
    assert torch.unique(bank.features, dim=0).shape[0] == 50  # distinct rows


@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_update_moves_rows_towards_the_features_and_renormalises(momentum):
    bank = make_bank()
    before = bank.features.clone()
    index = torch.tensor([3, 0, 7, 11])
    features = torch.randn(4, 5) * torch.tensor([[0.1], [1.0], [4.0], [30.0]])  # any scale
    bank.update(index, features, momentum)
    torch.testing.assert_close(
        bank.features[index].double(), expected_rows(before[index], features, momentum), rtol=1e-6, atol=1e-6
    )
    untouched = [i for i in range(12) if i not in index.tolist()]
    assert torch.equal(bank.features[untouched], before[untouched])
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(12))


def test_momentum_zero_replaces_rows_by_the_normalised_features_and_one_keeps_them():
    bank = make_bank()
    before = bank.features.clone()
    index, features = torch.tensor([1, 4]), torch.randn(2, 5) * 3
    bank.update(index, features, momentum=1.0)
    torch.testing.assert_close(bank.features, before)
    bank.update(index, features, momentum=0.0)
    torch.testing.assert_close(bank.features[index], features / features.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.8])
def test_repeated_indices_take_one_step_towards_their_mean(momentum):
    """Row 2 appears three times and row 5 twice: each takes a single momentum
    step towards the mean of its features, whatever the order of the entries."""
    bank = make_bank()
    before = bank.features.clone()
    index = torch.tensor([2, 5, 2, 9, 2, 5])
    features = torch.randn(6, 5)
    bank.update(index, features, momentum)
    for row, entries in [(2, [0, 2, 4]), (5, [1, 5]), (9, [3])]:
        mean = features[entries].double().mean(dim=0, keepdim=True)
        torch.testing.assert_close(
            bank.features[row : row + 1].double(),
            expected_rows(before[row : row + 1], mean, momentum),
            rtol=1e-6,
            atol=1e-6,
        )
    results = []
    for order in itertools.islice(itertools.permutations(range(6)), 1, 720, 37):  # 20 other orders
        other = make_bank()
        other.update(index[list(order)], features[list(order)], momentum)
        results.append(other.features)
    assert all(torch.equal(r, bank.features) for r in results)


def test_one_step_is_not_one_step_per_occurrence():
    """With momentum 0.5 and the same feature twice, the row moves halfway
    once (a step per occurrence would move it three quarters)."""
    bank = make_bank()
    before = bank.features[4].clone()
    f = torch.randn(1, 5)
    bank.update(torch.tensor([4, 4]), f.repeat(2, 1), 0.5)
    torch.testing.assert_close(bank.features[4].double(), expected_rows(before[None], f, 0.5)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "index,features",
    [
        (torch.tensor([[1, 2]]), torch.randn(2, 5)),  # index not 1-D
        (torch.tensor([1, 2]), torch.randn(2, 4)),  # wrong dim
        (torch.tensor([1, 2, 3]), torch.randn(2, 5)),  # B mismatch
        (torch.tensor([1, 2]), torch.randn(2, 5, 1)),  # features not 2-D
    ],
)
def test_update_rejects_bad_shapes(index, features):
    bank = make_bank()
    before = bank.features.clone()
    with pytest.raises(ValueError, match="update needs index"):
        bank.update(index, features, 0.5)
    assert torch.equal(bank.features, before)


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_update_rejects_momentum_outside_0_1(momentum):
    with pytest.raises(ValueError, match="momentum must be in"):
        make_bank().update(torch.tensor([0]), torch.randn(1, 5), momentum)


@pytest.mark.parametrize("size,dim", [(0, 4), (4, 0)])
def test_construction_rejects_empty_banks(size, dim):
    with pytest.raises(ValueError, match="size >= 1 and dim >= 1"):
        MemoryBank(size, dim)


def test_get_returns_a_copy_of_the_rows():
    bank = make_bank()
    rows = bank.get(torch.tensor([[0, 3], [3, 11]]))
    assert rows.shape == (2, 2, 5) and not rows.requires_grad
    assert torch.equal(rows[0, 1], bank.features[3]) and torch.equal(rows[1, 1], bank.features[11])
    rows.zero_()
    assert bank.features.abs().sum() > 0


def test_sample_is_uniform_over_rows_and_reproducible_under_a_seed():
    bank = make_bank(size=7)
    torch.manual_seed(123)
    a = bank.sample(5000)
    torch.manual_seed(123)
    b = bank.sample(5000)
    assert torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (5000,)
    counts = torch.bincount(a, minlength=7)
    assert counts.min() > 600 and counts.max() < 830  # 714 expected per row
    assert not torch.equal(bank.sample(5000), a)  # the generator moved on
    gen1, gen2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(bank.sample(20, generator=gen1), bank.sample(20, generator=gen2))


def test_features_is_a_buffer_that_round_trips_through_the_state_dict():
    a = make_bank(seed=0)
    a.update(torch.tensor([1, 2]), torch.randn(2, 5), 0.5)
    assert list(dict(a.named_buffers())) == ["features"] and list(a.parameters()) == []
    state = a.state_dict()
    assert list(state) == ["features"]
    b = make_bank(seed=1)
    assert not torch.equal(a.features, b.features)
    b.load_state_dict(state)
    assert torch.equal(a.features, b.features)
