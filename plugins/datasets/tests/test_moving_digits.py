"""Moving digits on real Fashion-MNIST images: reproducible, inside the
canvas, bouncing, and with boxes that hold their object's pixels in every
frame."""

from __future__ import annotations

import numpy as np
import pytest

from sslx_datasets import FashionMNIST
from sslx_datasets.moving_digits import moving_digits, trajectory


@pytest.fixture(scope="module")
def source():
    split = FashionMNIST(FashionMNIST.Params(train_size=200, test_size=10)).split("train")
    images = np.stack([split.image(i)[:, :, 0] for i in range(len(split))])
    return images, split.labels


@pytest.mark.parametrize("compose", ["max", "over"])
def test_every_box_holds_its_objects_pixels_in_every_frame(source, compose):
    images, labels = source
    clips = moving_digits(images, labels, num_clips=6, length=30, canvas=48, num_objects=3, speed=(1, 4),
                          compose=compose, seed=3)
    n, t, k = clips.visible.shape
    assert clips.frames.shape == (6, 30, 48, 48) and clips.boxes.shape == (6, 30, 3, 4)
    for i in range(n):
        for f in range(t):
            frame = clips.frames[i, f]
            drawn_after = np.zeros_like(frame, dtype=bool)
            for obj in reversed(range(k)):  # the last object drawn is on top
                x0, y0, x1, y1 = clips.boxes[i, f, obj]
                assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48 and (x1 - x0, y1 - y0) == (28, 28)
                image = images[clips.sources[i, obj]]
                patch = frame[y0:y1, x0:x1]
                if compose == "max":
                    assert (patch >= image).all()
                else:
                    own = (image > 0) & ~drawn_after[y0:y1, x0:x1]
                    assert np.array_equal(patch[own], image[own])
                    ink = (image > 0).sum()
                    assert clips.visible[i, f, obj] == pytest.approx(own.sum() / ink)
                    drawn_after[y0:y1, x0:x1] |= image > 0
    # nothing is drawn outside the boxes
    inside = np.zeros(clips.frames.shape, dtype=bool)
    for i in range(n):
        for f in range(t):
            for x0, y0, x1, y1 in clips.boxes[i, f]:
                inside[i, f, y0:y1, x0:x1] = True
    assert (clips.frames[~inside] == 0).all()


def test_classes_and_identities_follow_the_sources(source):
    images, labels = source
    clips = moving_digits(images, labels, num_clips=5, num_objects=2, seed=0)
    assert np.array_equal(clips.classes, labels[clips.sources])
    assert np.array_equal(clips.ids, np.arange(10).reshape(5, 2))


def test_seeded_and_each_clip_independent_of_the_set_size(source):
    images, labels = source
    a = moving_digits(images, labels, num_clips=4, seed=7)
    b = moving_digits(images, labels, num_clips=4, seed=7)
    c = moving_digits(images, labels, num_clips=9, seed=7)
    d = moving_digits(images, labels, num_clips=4, seed=8)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.frames, c.frames[:4]) and np.array_equal(a.sources, c.sources[:4])
    assert not np.array_equal(a.boxes, d.boxes)


def test_objects_move_at_the_drawn_speed_and_bounce_off_the_edges(source):
    images, labels = source
    clips = moving_digits(images, labels, num_clips=20, length=60, canvas=40, num_objects=2, speed=(2, 3), seed=1)
    step = np.abs(np.diff(clips.boxes[..., :2], axis=1))  # (N, T-1, K, 2) per-frame motion of the corners
    assert step.max() <= 3 + 1  # at most the speed, plus rounding
    assert (step.sum(axis=(1, 3)) > 0).all()  # every object moves
    x = clips.boxes[..., 0]
    assert x.min() == 0 and x.max() == 40 - 28  # 60 frames at >= 2 px/frame reach both walls


def test_trajectory_reflects_at_the_walls():
    """Against a step-by-step simulation with explicit reflection (float64)."""
    start, velocity, limit = np.array([1.0, 9.5]), np.array([2.5, -1.75]), np.array([10.0, 12.0])
    pos, vel, expected = start.copy(), velocity.copy(), []
    for _ in range(40):
        expected.append(pos.copy())
        pos = pos + vel
        for a in range(2):
            while pos[a] < 0 or pos[a] > limit[a]:
                if pos[a] < 0:
                    pos[a], vel[a] = -pos[a], -vel[a]
                else:
                    pos[a], vel[a] = 2 * limit[a] - pos[a], -vel[a]
    np.testing.assert_allclose(trajectory(start, velocity, 40, limit), np.array(expected), atol=1e-9)


def test_occlusion_happens_with_crowded_canvases(source):
    images, labels = source
    clips = moving_digits(images, labels, num_clips=10, length=10, canvas=32, num_objects=4, compose="over", seed=2)
    assert (clips.visible[..., -1] == 1).all()  # the object drawn last is never covered
    assert (clips.visible < 1).any() and ((clips.visible >= 0) & (clips.visible <= 1)).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"canvas": 20}, "smaller than the 28x28 images"),
    ({"speed": (3, 1)}, "speed must be a range"),
    ({"compose": "add"}, "compose must be"),
    ({"num_objects": 0}, "must be >= 1"),
])
def test_bad_arguments_say_what_to_do(source, kwargs, message):
    images, labels = source
    with pytest.raises(ValueError, match=message):
        moving_digits(images, labels, num_clips=1, **kwargs)
