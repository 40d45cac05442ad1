"""Cutting an object's patch out of a frame, and finding the frames where it
shows well enough: the geometry the ``tracks`` sampler and the ``reid``
evaluator share."""

from __future__ import annotations

import numpy as np

import sslx


def crop_box(box: np.ndarray, context: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """The square crop ``(x0, y0, x1, y1)`` (int, ``x1``/``y1`` exclusive) around
    an object's ``box``: centred on the box, its side ``context`` times the
    box's longer side. With ``jitter`` > 0 the side is scaled by a factor drawn
    from ``[1 - jitter, 1 + jitter]`` and the centre shifted on each axis by a
    fraction of the side drawn from ``[-jitter, jitter]`` (a detector's
    imprecise box); the crop may reach outside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = context * max(x1 - x0, y1 - y0, 1.0)
    if jitter > 0:
        side *= 1 + rng.uniform(-jitter, jitter)
        cx += rng.uniform(-jitter, jitter) * side
        cy += rng.uniform(-jitter, jitter) * side
    side = max(1, round(side))
    left, top = round(cx - side / 2), round(cy - side / 2)
    return np.array([left, top, left + side, top + side], dtype=np.int64)


def cut(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The ``(H, W, C)`` uint8 frame's pixels inside ``box`` (zero where the
    box reaches outside the frame), resized to ``size`` x ``size`` (area
    averaging when shrinking, bilinear when enlarging); ``(size, size, C)`` uint8."""
    h, w, c = frame.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    patch = np.zeros((y1 - y0, x1 - x0, c), dtype=np.uint8)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if fx0 < fx1 and fy0 < fy1:
        patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = frame[fy0:fy1, fx0:fx1]
    if patch.shape[0] == size:
        return patch
    import cv2  # imported on first use, so registering the plugin imports no OpenCV

    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation).reshape(size, size, c)


def frame_pairs(visible: np.ndarray, min_visible: float, min_gap: int, max_gap: int | None) -> np.ndarray:
    """Ordered pairs ``(t1, t2)`` (an ``(P, 2)`` int array) of frames of one
    object whose visible fractions ``visible`` ``(T,)`` are both at least
    ``min_visible`` and whose distance ``|t1 - t2|`` lies in ``[min_gap,
    max_gap]`` (no upper bound when ``max_gap`` is None)."""
    shown = np.flatnonzero(np.asarray(visible) >= min_visible)
    t1, t2 = np.meshgrid(shown, shown, indexing="ij")
    gap = np.abs(t1 - t2)
    keep = gap >= min_gap
    if max_gap is not None:
        keep &= gap <= max_gap
    return np.stack([t1[keep], t2[keep]], axis=1)


def clip_tracks(split: sslx.ImageSplit, index: int, who: str) -> sslx.Tracks:
    """The tracks of clip ``index``; a ``UserError`` naming ``who`` (the
    component that needs them) when the split has no tracks."""
    tracks = split.tracks(index) if isinstance(split, sslx.ClipSplit) else None
    if tracks is None:
        kind = "a video dataset without object tracks" if isinstance(split, sslx.ClipSplit) else "an image dataset"
        raise sslx.UserError(
            f"{who} needs clips with object tracks (boxes and identities per frame), but the dataset is {kind} "
            f"({type(split).__name__}): use a dataset with tracks, such as 'moving_digits'."
        )
    return tracks
