"""Moving digits: clips of real images (digits, or Fashion-MNIST items)
moving and bouncing on a black canvas, with exact per-frame boxes.

The ground truth of every clip is known by construction: where each object
is in every frame, which source image and class it is, and how much of it is
visible. Video, tracking and audio-video samplers are tested on these clips.

    clips = moving_digits(images, labels, num_clips=100, length=20, canvas=64, num_objects=2, seed=0)
    clips.frames.shape   # (100, 20, 64, 64) uint8
    clips.boxes[i, t, k] # (x0, y0, x1, y1) of object k in frame t of clip i (x1, y1 exclusive)

Objects may also turn and change size smoothly over time (``rotation``,
``scale``); their boxes stay exact: the square the transformed image fills.

Clip ``i`` depends only on ``(seed, i)`` and the other arguments, not on
``num_clips``: a larger set starts with the clips of a smaller one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Compose = Literal["max", "over"]


@dataclass(frozen=True)
class Clips:
    """A set of generated clips and their ground truth.

    Attributes:
        frames: ``(N, T, H, W)`` uint8 frames.
        boxes: ``(N, T, K, 4)`` int32 ``(x0, y0, x1, y1)``: where object ``k``'s
            image (its full square, scaled and turned as in frame ``t``) lies
            in frame ``t``; ``x1``, ``y1`` exclusive; always inside the canvas.
        sources: ``(N, K)`` index of each object's source image.
        classes: ``(N, K)`` label of each object's source image.
        visible: ``(N, T, K)`` fraction of the object's ink pixels (source
            pixels above zero) that are its own in the frame: 1 with
            ``compose="max"``; with ``"over"``, the part not covered by the
            ink of objects drawn after it.
        angles: ``(N, T, K)`` each object's rotation in degrees (counter-clockwise).
        scales: ``(N, T, K)`` each object's size relative to its source image
            (before rounding the box to whole pixels).
    """

    frames: np.ndarray
    boxes: np.ndarray
    sources: np.ndarray
    classes: np.ndarray
    visible: np.ndarray
    angles: np.ndarray
    scales: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        """``(N, K)`` identities, unique across the set: ``clip * K + k``."""
        n, k = self.sources.shape
        return np.arange(n * k).reshape(n, k)


def trajectory(start: np.ndarray, velocity: np.ndarray, length: int, limit: np.ndarray) -> np.ndarray:
    """Positions ``(length, 2)`` of a point moving at constant ``velocity`` from
    ``start`` and bouncing (elastic reflection) off ``0`` and ``limit`` on
    each axis: the unfolded straight-line position folded back into
    ``[0, limit]``."""
    t = np.arange(length, dtype=np.float64)[:, None]
    free = start[None, :] + velocity[None, :] * t
    period = 2 * np.maximum(limit, 1e-12)[None, :]
    folded = np.mod(free, period)
    pos = np.where(folded > limit[None, :], period - folded, folded)
    return np.where(limit[None, :] > 0, pos, 0.0)


def oscillation(rng: np.random.Generator, length: int) -> np.ndarray:
    """A smooth curve in ``[-1, 1]`` over ``length`` frames: a sine with a
    random phase and a random period of 16 to 48 frames."""
    period, phase = rng.uniform(16, 48), rng.uniform(0, 2 * np.pi)
    return np.sin(2 * np.pi * np.arange(length) / period + phase)


def transform(image: np.ndarray, size: tuple[int, int], angle: float) -> np.ndarray:
    """``image`` resized to ``size`` (height, width), then turned by ``angle``
    degrees about its centre inside that rectangle (ink leaving it is cut)."""
    if size == image.shape and angle == 0:
        return image
    im = Image.fromarray(image)
    if size != image.shape:
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    if angle != 0:
        im = im.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(im)


def moving_digits(
    images: np.ndarray,
    labels: np.ndarray,
    num_clips: int,
    length: int = 20,
    canvas: int = 64,
    num_objects: int = 2,
    speed: tuple[float, float] = (1.0, 3.0),
    compose: Compose = "max",
    seed: int = 0,
    rotation: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Clips:
    """Generate clips of ``num_objects`` source images moving on a canvas.

    Each object is a source image drawn at random from ``images``, starts at
    a uniform random position, moves in a uniform random direction at a speed
    drawn from ``speed`` (pixels per frame), and bounces off the canvas
    edges, so its whole square stays inside the canvas. Positions are
    rounded to whole pixels for drawing. With ``rotation`` or ``scale``,
    each object also turns and grows or shrinks smoothly (sines of random
    phase and period); its box is centred where the square of its largest
    size would be. These draw from their own random stream, so the motion
    of a clip is the same with them on or off (for the same largest size).

    Args:
        images: ``(M, h, w)`` uint8 source images (black background), e.g.
            MNIST digits or Fashion-MNIST items.
        labels: ``(M,)`` their classes.
        num_clips, length: clips and frames per clip.
        canvas: side of the square frames, at least the images' side.
        num_objects: objects per clip (they may overlap: occlusion).
        speed: range of speeds in pixels per frame.
        compose: ``"max"``: each pixel is the brightest object's (Moving
            MNIST); ``"over"``: objects are drawn in order, and an object's
            ink (pixels above zero) covers what was drawn before.
        seed: seed of every random choice.
        rotation: largest angle (degrees) an object turns away from upright;
            0: no rotation.
        scale: range ``(low, high)`` of object sizes relative to the images.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (M, h, w) uint8, got {images.dtype}{images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"labels ({len(labels)}) and images ({len(images)}) differ in length")
    lo_scale, hi_scale = scale
    if not 0 < lo_scale <= hi_scale:
        raise ValueError(f"scale must be a range (low, high) with 0 < low <= high, got {scale}")
    if rotation < 0:
        raise ValueError(f"rotation is the largest angle in degrees, >= 0, got {rotation}")
    h, w = images.shape[1:]
    big_h, big_w = round(h * hi_scale), round(w * hi_scale)  # an object's largest size
    if canvas < max(big_h, big_w):
        scaled = f" at scale {hi_scale} ({big_h}x{big_w})" if hi_scale != 1 else ""
        raise ValueError(
            f"the canvas ({canvas} px) is smaller than the {h}x{w} images{scaled}: use a canvas of at "
            f"least {max(big_h, big_w)} px"
        )
    if num_clips < 1 or length < 1 or num_objects < 1:
        raise ValueError(f"num_clips, length and num_objects must be >= 1, got {num_clips}, {length}, {num_objects}")
    lo, hi = speed
    if not 0 <= lo <= hi:
        raise ValueError(f"speed must be a range (low, high) with 0 <= low <= high, got {speed}")
    if compose not in ("max", "over"):
        raise ValueError(f"compose must be 'max' or 'over', got {compose!r}")

    limit = np.array([canvas - big_w, canvas - big_h], dtype=np.float64)  # (x, y) range of the largest square's corner
    frames = np.zeros((num_clips, length, canvas, canvas), dtype=np.uint8)
    boxes = np.zeros((num_clips, length, num_objects, 4), dtype=np.int32)
    sources = np.zeros((num_clips, num_objects), dtype=np.int64)
    visible = np.ones((num_clips, length, num_objects), dtype=np.float32)
    angles = np.zeros((num_clips, length, num_objects), dtype=np.float32)
    scales = np.ones((num_clips, length, num_objects), dtype=np.float32)
    for i in range(num_clips):
        rng = np.random.default_rng([seed, i])
        turn = np.random.default_rng([seed, i, 1])  # rotation and scale: their own stream
        sources[i] = rng.integers(0, len(images), num_objects)
        for k in range(num_objects):
            start = rng.uniform(0, 1, 2) * limit
            angle = rng.uniform(0, 2 * np.pi)
            velocity = rng.uniform(lo, hi) * np.array([np.cos(angle), np.sin(angle)])
            xy = np.rint(trajectory(start, velocity, length, limit)).astype(np.int32)
            angles[i, :, k] = rotation * oscillation(turn, length)
            scales[i, :, k] = lo_scale + (hi_scale - lo_scale) * (0.5 + 0.5 * oscillation(turn, length))
            size = np.stack([np.rint(w * scales[i, :, k]), np.rint(h * scales[i, :, k])], axis=1).astype(np.int32)
            corner = xy + (np.array([big_w, big_h]) - size) // 2  # centred in the largest square
            boxes[i, :, k] = np.concatenate([corner, corner + size], axis=1)
        for t in range(length):
            draw_frame(
                frames[i, t],
                boxes[i, t],
                [
                    transform(images[sources[i, k]], (y1 - y0, x1 - x0), float(angles[i, t, k]))
                    for k, (x0, y0, x1, y1) in enumerate(boxes[i, t])
                ],
                compose,
                visible[i, t],
            )
    return Clips(
        frames=frames,
        boxes=boxes,
        sources=sources,
        classes=labels[sources],
        visible=visible,
        angles=angles,
        scales=scales,
    )


def draw_frame(
    frame: np.ndarray, boxes: np.ndarray, objects: list[np.ndarray], compose: Compose, visible: np.ndarray
) -> None:
    """Draw ``objects`` (their images as transformed for this frame) into
    their ``boxes`` of ``frame``, in order; with ``"over"``, fill ``visible``
    with the fraction of each object's ink left uncovered."""
    owner = np.full(frame.shape, -1)  # which object's ink a pixel shows ("over")
    for k, ((x0, y0, x1, y1), image) in enumerate(zip(boxes, objects)):
        if compose == "max":
            np.maximum(frame[y0:y1, x0:x1], image, out=frame[y0:y1, x0:x1])
        else:
            m = image > 0
            frame[y0:y1, x0:x1][m] = image[m]
            owner[y0:y1, x0:x1][m] = k
    if compose == "over":
        for k, ((x0, y0, x1, y1), image) in enumerate(zip(boxes, objects)):
            m = image > 0
            total = m.sum()
            visible[k] = (owner[y0:y1, x0:x1][m] == k).sum() / total if total else 1.0
