"""Moving digits on real Fashion-MNIST images: reproducible, inside the
canvas, bouncing, and with boxes that hold their object's pixels in every
frame."""

from __future__ import annotations

import numpy as np
import pytest
from sslx_datasets.images import FashionMNIST
from sslx_datasets.moving_digits import moving_digits, trajectory


@pytest.fixture(scope="module")
def source():
    split = FashionMNIST(FashionMNIST.Params(train_size=200, test_size=10)).split("train")
    images = np.stack([split.image(i)[:, :, 0] for i in range(len(split))])
    return images, split.labels


@pytest.mark.parametrize("compose", ["max", "over"])
def test_every_box_holds_its_objects_pixels_in_every_frame(source, compose):
    images, labels = source
    clips = moving_digits(
        images, labels, num_clips=6, length=30, canvas=48, num_objects=3, speed=(1, 4), compose=compose, seed=3
    )
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


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"canvas": 20}, "smaller than the 28x28 images"),
        ({"speed": (3, 1)}, "speed must be a range"),
        ({"compose": "add"}, "compose must be"),
        ({"num_objects": 0}, "must be >= 1"),
    ],
)
def test_bad_arguments_say_what_to_do(source, kwargs, message):
    images, labels = source
    with pytest.raises(ValueError, match=message):
        moving_digits(images, labels, num_clips=1, **kwargs)


def digest(*arrays: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    "compose,expected",
    [
        ("max", "4f6824c80397be19434643be7ca09492e8b2606165ffd83a569fa9288556a02a"),
        ("over", "a6e509c557b5c6d19fd5e94bfd288d69f2a209aeb6e69d290ff9ff1e3099dc55"),
    ],
)
def test_without_rotation_and_scaling_the_clips_are_those_of_the_first_version(source, compose, expected):
    """The digests were taken from the generator before rotation and scale existed."""
    images, labels = source
    clips = moving_digits(
        images, labels, num_clips=5, length=12, canvas=48, num_objects=3, speed=(1, 4), compose=compose, seed=11
    )
    assert digest(clips.frames, clips.boxes, clips.sources, clips.visible) == expected
    assert (clips.angles == 0).all() and (clips.scales == 1).all()


def rotate_reference(image: np.ndarray, angle: float) -> np.ndarray:
    """Counter-clockwise rotation about the centre, nearest neighbour, float64:
    output pixel (x, y) takes the source pixel at R(angle) applied to its offset
    from the centre (y grows downwards, so this turns the picture counter-clockwise)."""
    h, w = image.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.deg2rad(angle)
    sx = cx + (x - cx) * np.cos(a) - (y - cy) * np.sin(a)
    sy = cy + (x - cx) * np.sin(a) + (y - cy) * np.cos(a)
    sx, sy = np.rint(sx).astype(int), np.rint(sy).astype(int)
    ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = np.zeros((h, w))
    out[ok] = image[sy[ok], sx[ok]]
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel())[0, 1])


def test_rotating_digits_turn_smoothly_by_the_recorded_angle(source):
    images, labels = source
    clips = moving_digits(images, labels, num_clips=4, length=24, canvas=48, num_objects=1, rotation=40, seed=5)
    assert np.abs(clips.angles).max() <= 40 and np.abs(clips.angles).max() > 20
    assert np.abs(np.diff(clips.angles, axis=1)).max() <= 40 * 2 * np.pi / 16 + 1e-4  # at most the fastest sine's slope
    for i in range(4):
        image = images[clips.sources[i, 0]]
        for t in range(0, 24, 3):
            x0, y0, x1, y1 = clips.boxes[i, t, 0]
            assert (x1 - x0, y1 - y0) == (28, 28)
            drawn, angle = clips.frames[i, t, y0:y1, x0:x1], float(clips.angles[i, t, 0])
            assert correlation(drawn, rotate_reference(image, angle)) > 0.9
            if abs(angle) > 15:  # the direction is right, not only the amount
                assert correlation(drawn, rotate_reference(image, angle)) > correlation(
                    drawn, rotate_reference(image, -angle)
                )


@pytest.mark.parametrize("compose", ["max", "over"])
def test_scaled_and_turned_digits_stay_inside_their_exact_boxes(source, compose):
    images, labels = source
    clips = moving_digits(
        images,
        labels,
        num_clips=6,
        length=20,
        canvas=56,
        num_objects=2,
        speed=(1, 4),
        compose=compose,
        seed=4,
        rotation=30,
        scale=(0.6, 1.5),
    )
    assert clips.scales.min() >= 0.6 and clips.scales.max() <= 1.5 and np.ptp(clips.scales) > 0.5
    assert np.abs(np.diff(clips.scales, axis=1)).max() <= 0.45 * 2 * np.pi / 16 + 1e-4  # smooth
    size = clips.boxes[..., 2:] - clips.boxes[..., :2]
    assert np.array_equal(size[..., 0], np.rint(28 * clips.scales)) and np.array_equal(size[..., 0], size[..., 1])
    assert (clips.boxes >= 0).all() and (clips.boxes <= 56).all()
    inside = np.zeros(clips.frames.shape, dtype=bool)
    for i, t, k in np.ndindex(*clips.visible.shape):
        x0, y0, x1, y1 = clips.boxes[i, t, k]
        inside[i, t, y0:y1, x0:x1] = True
    assert (clips.frames[~inside] == 0).all()
    # the ink of a lone object fills its box's middle as the source fills the image's: centred, at its size
    lone = moving_digits(images, labels, num_clips=6, length=20, canvas=56, num_objects=1, seed=4, scale=(0.6, 1.5))
    for i in range(6):
        image = images[lone.sources[i, 0]].astype(np.float64)
        for t in (0, 10, 19):
            x0, y0, x1, y1 = lone.boxes[i, t, 0]
            drawn = lone.frames[i, t, y0:y1, x0:x1].astype(np.float64)
            ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0]
            centre = np.array([(drawn * ys).sum(), (drawn * xs).sum()]) / drawn.sum() / (y1 - y0)
            ys, xs = np.mgrid[0:28, 0:28]
            expected = np.array([(image * ys).sum(), (image * xs).sum()]) / image.sum() / 28
            np.testing.assert_allclose(centre, expected, atol=0.04)
            assert drawn.sum() == pytest.approx(image.sum() * ((x1 - x0) / 28) ** 2, rel=0.1)  # mass scales with area


def test_motion_does_not_depend_on_rotation(source):
    images, labels = source
    plain = moving_digits(images, labels, num_clips=3, length=12, seed=9)
    turned = moving_digits(images, labels, num_clips=3, length=12, seed=9, rotation=45)
    assert np.array_equal(plain.boxes, turned.boxes) and np.array_equal(plain.sources, turned.sources)
    assert not np.array_equal(plain.frames, turned.frames)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"scale": (1.2, 0.8)}, "scale must be a range"),
        ({"rotation": -5}, "rotation is the largest angle"),
        ({"canvas": 40, "scale": (1, 1.5)}, r"smaller than the 28x28 images at scale 1.5 \(42x42\)"),
    ],
)
def test_bad_rotation_or_scale_say_what_to_do(source, kwargs, message):
    images, labels = source
    with pytest.raises(ValueError, match=message):
        moving_digits(images, labels, num_clips=1, **kwargs)
