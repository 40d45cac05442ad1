"""The crop geometry shared by the sampler and the evaluator, against hand
computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sslx_tracks.patches import crop_box, cut, frame_pairs


def test_crop_box_without_jitter_is_the_enlarged_box_centred_on_the_object():
    rng = np.random.default_rng(0)
    # box 28 wide, 20 high, centre (24, 30); side 1.5 * 28 = 42
    assert crop_box(np.array([10, 20, 38, 40]), 1.5, 0.0, rng).tolist() == [3, 9, 45, 51]
    assert crop_box(np.array([0, 0, 10, 10]), 1.0, 0.0, rng).tolist() == [0, 0, 10, 10]


def test_crop_box_jitter_stays_within_its_bounds_and_varies():
    rng = np.random.default_rng(1)
    box, context, jitter = np.array([10, 10, 38, 38]), 1.2, 0.2
    crops = np.stack([crop_box(box, context, jitter, rng) for _ in range(500)])
    side = crops[:, 2] - crops[:, 0]
    assert np.array_equal(side, crops[:, 3] - crops[:, 1])  # square
    assert side.min() >= np.floor(33.6 * 0.8) and side.max() <= np.ceil(33.6 * 1.2)
    centre = (crops[:, :2] + crops[:, 2:]) / 2
    assert np.all(np.abs(centre - 24) <= jitter * (side[:, None] + 1) + 1)  # shift, plus rounding to whole pixels
    assert len(np.unique(crops, axis=0)) > 100 and side.max() - side.min() >= 10


def test_cut_inside_the_frame_without_resizing_is_a_plain_slice():
    frame = np.arange(20 * 30, dtype=np.int64).reshape(20, 30, 1).astype(np.uint8)
    patch = cut(frame, np.array([5, 3, 15, 13]), 10)
    assert patch.shape == (10, 10, 1) and patch.dtype == np.uint8
    assert np.array_equal(patch, frame[3:13, 5:15])


def test_cut_pads_with_zeros_outside_the_frame():
    frame = np.full((8, 8, 1), 200, dtype=np.uint8)
    frame[0, 0] = 9
    patch = cut(frame, np.array([-2, -3, 4, 3]), 6)[..., 0]
    expected = np.zeros((6, 6), dtype=np.uint8)
    expected[3:, 2:] = 200  # rows y = 0..2, columns x = 0..3 are inside
    expected[3, 2] = 9
    assert np.array_equal(patch, expected)
    assert not cut(frame, np.array([20, 20, 26, 26]), 6).any()  # entirely outside


def test_cut_shrinking_by_two_averages_pixel_blocks():
    """Against the float64 mean of each 2x2 block (area averaging), rounded."""
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    patch = cut(frame, np.array([2, 4, 14, 16]), 6)
    block = frame[4:16, 2:14].astype(np.float64).reshape(6, 2, 6, 2, 3).mean(axis=(1, 3))
    assert patch.shape == (6, 6, 3)
    assert np.abs(patch.astype(np.float64) - block).max() <= 0.5 + 1e-9


def test_cut_enlarging_keeps_one_channel_images_three_dimensional():
    frame = np.full((10, 10, 1), 50, dtype=np.uint8)
    patch = cut(frame, np.array([2, 2, 6, 6]), 12)
    assert patch.shape == (12, 12, 1) and np.all(patch == 50)


@pytest.mark.parametrize("min_gap,max_gap,threshold", [(1, 3, 0.5), (2, 2, 0.0), (1, None, 0.7), (4, 9, 0.5)])
def test_frame_pairs_are_exactly_the_pairs_that_meet_the_constraints(min_gap, max_gap, threshold):
    visible = np.array([1.0, 0.2, 0.5, 0.9, 0.0, 0.7, 1.0, 0.49])
    got = {tuple(p) for p in frame_pairs(visible, threshold, min_gap, max_gap).tolist()}
    expected = {
        (a, b)
        for a, b in itertools.product(range(len(visible)), repeat=2)
        if visible[a] >= threshold
        and visible[b] >= threshold
        and min_gap <= abs(a - b)
        and (max_gap is None or abs(a - b) <= max_gap)
    }
    assert got == expected and expected


def test_frame_pairs_is_empty_when_nothing_qualifies():
    assert frame_pairs(np.array([1.0, 0.0, 0.0]), 0.5, 1, 5).shape == (0, 2)
