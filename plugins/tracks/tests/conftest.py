"""Clips with known ground truth for the tracks tests: real Fashion-MNIST
silhouettes moving on a canvas (``sslx_datasets.moving_digits``), each object
of a clip painted with its own constant intensity, so the object a patch
shows can be read from its pixel values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sslx_datasets.images import read_idx
from sslx_datasets.moving_digits import moving_digits

import sslx
from sslx.testing import PixelViews

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist")
SOURCES = 48  # source images, intensities 7, 12, ..., 242: one per source


INFO = sslx.DataInfo(channels=1, image_size=(64, 64), mean=(0.0,), std=(1.0,), num_classes=10)


def dominant_value(patch: torch.Tensor | np.ndarray) -> int:
    """The most frequent nonzero pixel value of a patch (0 when it is empty)."""
    values = np.rint(np.asarray(patch)).astype(np.int64).ravel()
    values = values[values > 0]
    return int(np.bincount(values).argmax()) if len(values) else 0


@dataclass
class ObjectClips:
    """Generated clips with their ground truth: ``split`` (with tracks),
    ``value[i, k]`` the intensity of object ``k`` of clip ``i``."""

    split: sslx.ArrayClips
    value: np.ndarray


def make_object_clips(
    num_clips: int = 10, length: int = 12, num_objects: int = 3, compose: str = "over"
) -> ObjectClips:
    """Clips of ``num_objects`` 14 px silhouettes on a 64 px canvas, keeping only
    clips whose objects come from distinct sources (distinct intensities)."""
    items = read_idx(FASHION_TEST / "t10k-images-idx3-ubyte.gz")[:SOURCES]
    items = items.reshape(SOURCES, 14, 2, 14, 2).max(axis=(2, 4))  # 14 px silhouettes: room to move apart
    labels = read_idx(FASHION_TEST / "t10k-labels-idx1-ubyte.gz")[:SOURCES].astype(np.int64)
    intensity = 7 + 5 * np.arange(SOURCES)
    images = np.where(items > 0, intensity[:, None, None], 0).astype(np.uint8)
    clips = moving_digits(
        images,
        labels,
        num_clips=2 * num_clips,
        length=length,
        canvas=64,
        num_objects=num_objects,
        speed=(1.0, 3.0),
        compose=compose,
        seed=3,
    )
    keep = [i for i in range(len(clips.sources)) if len(set(clips.sources[i])) == num_objects][:num_clips]
    assert len(keep) == num_clips
    ids = clips.ids
    tracks = [
        sslx.Tracks(boxes=clips.boxes[i], ids=ids[i], classes=clips.classes[i], visible=clips.visible[i]) for i in keep
    ]
    split = sslx.ArrayClips(clips.frames[keep][..., None], clips.classes[keep, 0], INFO, fps=8.0, tracks=tracks)
    return ObjectClips(split=split, value=intensity[clips.sources[keep]])


@pytest.fixture(scope="session")
def object_clips() -> ObjectClips:
    """Ten 12-frame clips of three objects drawn over each other (occlusion)."""
    return make_object_clips()


@pytest.fixture
def pixel_views() -> PixelViews:
    return PixelViews(sslx.NoParams(), INFO)


@pytest.fixture
def dominant():
    """``dominant(patch)``: the most frequent nonzero pixel value."""
    return dominant_value
