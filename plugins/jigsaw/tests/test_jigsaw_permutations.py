"""The permutation set: valid and distinct permutations, seeded and cached,
a minimum Hamming distance at least that of every run of the greedy
max-min algorithm computed by brute force on 4 tiles, and far above random
sets on 9 tiles; fast enough for grid 3."""

from __future__ import annotations

import itertools
import math
import time
from functools import cache

import numpy as np
import pytest
from sslx_jigsaw.permutations import all_permutations, hamming_distances, max_hamming_permutations


def min_pairwise(perms: np.ndarray) -> int:
    d = hamming_distances(perms, perms)
    return int(d[~np.eye(len(perms), dtype=bool)].min())


def hamming(p, q) -> int:
    return sum(a != b for a, b in zip(p, q))


@cache
def greedy_outcomes(num_tiles: int, count: int) -> set[int]:
    """Brute force: the minimum pairwise distance of every set the greedy
    max-min algorithm can return, over every first permutation and every
    way of breaking ties, by plain loops over tuples."""
    perms = list(itertools.permutations(range(num_tiles)))

    @cache
    def finish(chosen: frozenset) -> frozenset:
        if len(chosen) == count:
            return frozenset({min(hamming(p, q) for p, q in itertools.combinations(chosen, 2))})
        nearest = {p: min(hamming(p, q) for q in chosen) for p in perms if p not in chosen}
        best = max(nearest.values())
        return frozenset().union(*(finish(chosen | {p}) for p, d in nearest.items() if d == best))

    return set().union(*(finish(frozenset({p})) for p in perms))


def test_all_permutations_enumerates_every_order_once():
    for n in (1, 3, 4, 6):
        every = all_permutations(n)
        assert every.shape == (math.factorial(n), n) and not every.flags.writeable
        assert len({tuple(p) for p in every}) == len(every)
        assert all(sorted(p) == list(range(n)) for p in every)
    with pytest.raises(ValueError, match="num_tiles must be in 1..9"):
        all_permutations(16)


def test_hamming_distances_count_differing_positions():
    a = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])
    b = np.array([[0, 1, 2, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    assert hamming_distances(a, b).tolist() == [[0, 2, 4], [4, 2, 4]]


@pytest.mark.parametrize("num_tiles,count", [(9, 100), (9, 30), (4, 24), (4, 6), (3, 6)])
def test_the_set_holds_distinct_permutations(num_tiles, count):
    perms = max_hamming_permutations(num_tiles, count, seed=0)
    assert perms.shape == (count, num_tiles) and perms.dtype == np.int64 and not perms.flags.writeable
    assert all(sorted(p) == list(range(num_tiles)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == count


@pytest.mark.parametrize("count", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_distance_is_at_least_the_brute_force_greedys_on_4_tiles(count, seed):
    """On 4 tiles (all 24 permutations) the set's minimum pairwise distance
    is one that a greedy max-min run can reach, and at least the worst any
    run reaches (brute force over every start and tie break). Up to 4
    permutations that is 4, every pair of tile orders disagreeing
    everywhere (a Latin square)."""
    perms = max_hamming_permutations(4, count, seed)
    outcomes = greedy_outcomes(4, count)
    assert min_pairwise(perms) >= min(outcomes)
    assert min_pairwise(perms) in outcomes
    if count <= 4:
        assert min_pairwise(perms) == 4


def test_min_distance_on_9_tiles_beats_random_sets():
    perms = max_hamming_permutations(9, 100, seed=0)
    ours = min_pairwise(perms)
    every = all_permutations(9)
    random_best = max(
        min_pairwise(every[np.random.default_rng(s).choice(len(every), 100, replace=False)]) for s in range(20)
    )
    assert ours >= 6 and ours > random_best
    # each permutation's nearest neighbour in the set: greedy spreads them, random sets bunch some together
    d = hamming_distances(perms, perms)
    np.fill_diagonal(d, 99)
    assert d.min(axis=1).mean() >= 6


def test_the_first_step_of_the_greedy_picks_a_derangement_of_the_first():
    perms = max_hamming_permutations(9, 2, seed=5)
    assert hamming(perms[0], perms[1]) == 9
    assert np.array_equal(max_hamming_permutations(9, 100, seed=5)[:2], perms)  # sets grow by appending


def test_seeded_and_cached():
    a = max_hamming_permutations(9, 50, seed=3)
    assert max_hamming_permutations(9, 50, seed=3) is a  # cached per arguments
    max_hamming_permutations.cache_clear()
    b = max_hamming_permutations(9, 50, seed=3)
    assert b is not a and np.array_equal(a, b)  # a pure function of the arguments
    c = max_hamming_permutations(9, 50, seed=4)
    assert not np.array_equal(a, c)


def test_fast_enough_for_grid_3():
    all_permutations.cache_clear()
    max_hamming_permutations.cache_clear()
    start = time.perf_counter()
    max_hamming_permutations(9, 100, seed=11)
    assert time.perf_counter() - start < 20  # about a second on one core; generous for a busy machine


@pytest.mark.parametrize("num_tiles,count", [(4, 25), (4, 0), (3, 7)])
def test_impossible_counts_raise(num_tiles, count):
    with pytest.raises(ValueError, match=rf"count must be in 1..{num_tiles}! = {math.factorial(num_tiles)}"):
        max_hamming_permutations(num_tiles, count, 0)
