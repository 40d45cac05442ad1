"""The permutation set of the jigsaw puzzle (Noroozi & Favaro, 2016,
arXiv:1603.09246, section 3.3 and Algorithm 1): a fixed set of tile orders
chosen greedily for large Hamming distance, so that the puzzles it makes are
far apart and none is nearly another."""

from __future__ import annotations

import functools
import itertools

import numpy as np

MAX_TILES = 9  # all 9! = 362,880 permutations are enumerated; 16! would not fit


@functools.lru_cache(maxsize=4)
def all_permutations(num_tiles: int) -> np.ndarray:
    """Every permutation of ``range(num_tiles)`` in lexicographic order, as a
    read-only ``(num_tiles!, num_tiles)`` uint8 array."""
    if not 1 <= num_tiles <= MAX_TILES:
        raise ValueError(f"num_tiles must be in 1..{MAX_TILES} (all permutations are enumerated), got {num_tiles}")
    out = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.uint8).reshape(-1, num_tiles)
    out.setflags(write=False)
    return out


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[i, j]``: the number of positions where permutation ``a[i]``
    differs from ``b[j]`` (``a``: ``(m, n)``, ``b``: ``(k, n)``)."""
    a, b = np.asarray(a), np.asarray(b)
    return (a[:, None, :] != b[None, :, :]).sum(axis=-1)


@functools.lru_cache(maxsize=16)
def max_hamming_permutations(num_tiles: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` permutations of ``range(num_tiles)`` far apart in Hamming
    distance (the number of positions at which two permutations differ).

    Greedy farthest-point selection over all ``num_tiles!`` permutations: the
    first is drawn uniformly; then, repeatedly, the permutation whose
    *minimum* distance to those chosen so far is largest is added, ties
    broken uniformly. Both draws come from ``np.random.default_rng(seed)``, so
    the set is a pure function of the arguments (and cached per arguments).
    The paper's Algorithm 1 adds the permutation with the largest *mean*
    distance instead; maximising the minimum keeps every pair of puzzles
    apart (100 permutations of 9 tiles: minimum distance 6, where 100 random
    ones typically reach 2 to 4).

    Vectorised over the ``(num_tiles!, num_tiles)`` array of all
    permutations: each step is one comparison with the last one added, so 100
    permutations of 9 tiles take about a second on a CPU core (enumerating
    the 9! permutations included), 1000 (the paper's set for ImageNet) about
    six seconds.

    Args:
        num_tiles: tiles per puzzle, 1..9 (``grid * grid``).
        count: permutations to choose, 1..``num_tiles!``.
        seed: seed of the first permutation and the tie breaks.

    Returns:
        A read-only ``(count, num_tiles)`` int64 array, in the order chosen;
        row ``i`` is the permutation of class ``i``.

    Example:
        >>> perms = max_hamming_permutations(9, 100, seed=0)
        >>> perms.shape, int(hamming_distances(perms, perms)[~np.eye(100, dtype=bool)].min())
        ((100, 9), 6)
    """
    every = all_permutations(num_tiles)  # checks num_tiles
    if not 1 <= count <= len(every):
        raise ValueError(f"count must be in 1..{num_tiles}! = {len(every)}, got {count}")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(every)))]
    nearest = np.full(len(every), num_tiles, dtype=np.uint8)  # minimum distance to the chosen set
    for _ in range(count - 1):
        distance = (every != every[chosen[-1]]).sum(axis=1, dtype=np.uint8)
        np.minimum(nearest, distance, out=nearest)  # the chosen ones are at 0 from themselves
        best = np.flatnonzero(nearest == nearest.max())
        chosen.append(int(best[rng.integers(len(best))]))
    out = every[chosen].astype(np.int64)
    out.setflags(write=False)
    return out
