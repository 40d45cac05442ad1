"""Clips whose frames and sound say where they come from, for the sampler and
evaluator tests.

Clip ``c`` of ``num_clips`` has frames filled with ``c * stride + f`` (frame
index ``f``; ``stride`` 100 unless given) and a sound whose sample ``s`` is ``(c + s / S) / num_clips``
(``S`` samples in the clip): any value decodes to the clip and the time it
was recorded at, so tests can check which frame and which stretch of sound a
view holds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import sslx
from sslx.testing import PixelViews


class Clips(sslx.Dataset):
    """A dataset over fixed splits."""

    name = "test_clips"

    def __init__(self, splits: dict[str, sslx.ImageSplit]):
        super().__init__(sslx.NoParams())
        self.splits = splits

    def split(self, name: str) -> sslx.ImageSplit:
        return self.splits[name]


def info(size: int = 4) -> sslx.DataInfo:
    return sslx.DataInfo(channels=1, image_size=(size, size), mean=(0.0,), std=(1.0,), num_classes=None)


def coded_clips(
    num_clips: int = 3,
    length: int = 16,
    fps: float = 8.0,
    sample_rate: int = 1000,
    seconds: float | None = None,
    size: int = 4,
    stride: int = 100,
) -> sslx.ArrayClips:
    """``num_clips`` clips coded as the module docstring says; the sound lasts
    ``seconds`` (default: as long as the frames, ``length / fps``)."""
    seconds = length / fps if seconds is None else seconds
    num_samples = int(round(seconds * sample_rate))
    if (num_clips - 1) * stride + length > 256 or stride < length:
        raise ValueError("frame codes c * stride + f must be distinct and fit in uint8")
    frames = np.zeros((num_clips, length, size, size, 1), dtype=np.uint8)
    audio = np.zeros((num_clips, num_samples), dtype=np.float64)
    for c in range(num_clips):
        frames[c] = (c * stride + np.arange(length)).reshape(length, 1, 1, 1).astype(np.uint8)
        audio[c] = (c + np.arange(num_samples) / num_samples) / num_clips
    return sslx.ArrayClips(frames, np.arange(num_clips), info(size), fps, audio.astype(np.float32), sample_rate)


def decode(value: np.ndarray, clips: sslx.ArrayClips) -> tuple[np.ndarray, np.ndarray]:
    """The clip and the time in seconds that sound values come from."""
    n, num_samples = clips._audio.shape
    scaled = np.asarray(value, dtype=np.float64) * n
    clip = np.floor(scaled + 1e-6).astype(int)
    return clip, (scaled - clip) * num_samples / clips.sample_rate


@pytest.fixture
def make_clips() -> Callable[..., sslx.ArrayClips]:
    return coded_clips


@pytest.fixture
def decode_sound() -> Callable[[np.ndarray, sslx.ArrayClips], tuple[np.ndarray, np.ndarray]]:
    return decode


@pytest.fixture
def identity() -> PixelViews:
    return PixelViews(sslx.NoParams(), info())


@pytest.fixture
def clips_dataset() -> type[Clips]:
    return Clips
