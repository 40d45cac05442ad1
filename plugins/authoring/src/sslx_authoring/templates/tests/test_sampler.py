"""Tests of the pair sampler 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import numpy as np
import sslx_example.sampler
import torch
from sslx_example.sampler import ExampleSampler

import sslx
from sslx.testing import PixelViews, conformance

# The conformance kit's tiny experiment, with this plugin's sampler in it.
TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "example", "views": 2},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_view_0_is_the_whole_image_and_the_others_zoom_into_it():
    """On a 16x16 image whose pixel values are their positions (y * 16 + x),
    through an augmentation that changes nothing: a crop of a quarter of the
    area is an 8x8 window, shown at 16x16."""
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    info = sslx.DataInfo(channels=1, image_size=(16, 16), mean=(0.5,), std=(0.25,), num_classes=None)
    split = sslx.ArraySplit(image[None], None, info)
    sampler = ExampleSampler(ExampleSampler.Params(views=3, zoom_area=(0.25, 0.25)))
    views = sampler.sample(split, 0, PixelViews(sslx.NoParams(), info))
    assert len(views) == 3 and torch.equal(views[0][0], torch.from_numpy(image[..., 0]).float())
    for view in views[1:]:
        rows, cols = np.divmod(view[0].numpy().astype(int), 16)  # where each pixel comes from
        assert view.shape == (1, 16, 16)
        assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7


def test_conforms():
    conformance("sampler", ExampleSampler)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.sampler).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
