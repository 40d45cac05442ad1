"""Tests of the augmentation 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import numpy as np
import sslx_example.augmentation
import torch
from sslx_example.augmentation import ExampleAugmentation

import sslx
from sslx.testing import conformance

# The conformance kit's tiny experiment, with this plugin's augmentation in it.
TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "example"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_without_random_changes_a_view_is_the_normalised_image():
    """With the whole image as crop and no jitter, a view is the image
    scaled to [0, 1] and normalised with the dataset's mean and std, as the
    evaluation view is; with flip_prob 1 it is that image mirrored."""
    info = sslx.DataInfo(channels=3, image_size=(8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), num_classes=None)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    expected = (torch.from_numpy(image).permute(2, 0, 1) / 255 - mean) / std
    still = ExampleAugmentation.Params(crop_area=(1.0, 1.0), brightness=0.0, contrast=0.0, flip_prob=0.0)
    augmentation = ExampleAugmentation(still, info)
    torch.testing.assert_close(augmentation.view(image, 0), expected)
    torch.testing.assert_close(augmentation.eval(image), expected)
    mirrored = ExampleAugmentation(still.model_copy(update={"flip_prob": 1.0}), info)
    torch.testing.assert_close(mirrored.view(image, 0), expected.flip(-1))


def test_conforms():
    conformance("augmentation", ExampleAugmentation)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.augmentation).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
