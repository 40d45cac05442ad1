"""Tests of the dataset 'example': its behaviour, the conformance kit's
checks of its contract, and a few training steps with the kit's tiny
components. The fixtures sslx_register and sslx_run come with sslx (its
pytest plugin); tests/test_installed.py checks the installed plugin.
"""

from __future__ import annotations

import math

import numpy as np
import sslx_example.dataset
from sslx_example.dataset import PHOTOS, ExampleDataset

from sslx.testing import conformance

# The conformance kit's tiny experiment, with this plugin's dataset in it.
TINY = {
    "dataset": {"name": "example", "train_size": 64, "test_size": 32},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}


def test_patches_are_balanced_over_the_photographs_and_seeded():
    params = ExampleDataset.Params(train_size=50, test_size=10)
    train = ExampleDataset(params).split("train")
    test = ExampleDataset(params).split("test")
    assert np.bincount(train.labels).tolist() == [10] * len(PHOTOS)
    assert np.bincount(test.labels).tolist() == [2] * len(PHOTOS)
    assert np.array_equal(ExampleDataset(params).split("train").images, train.images)
    reseeded = ExampleDataset.Params(train_size=50, test_size=10, seed=1)
    assert not np.array_equal(ExampleDataset(reseeded).split("train").images, train.images)


def test_conforms():
    conformance("dataset", ExampleDataset)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_example.dataset).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
