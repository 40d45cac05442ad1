"""The ``crops`` pair sampler: one image in, ``views`` augmented views out,
drawn from the augmentation in order."""

from __future__ import annotations

import pickle

import numpy as np
import pydantic
import pytest
import torch
from skimage import data as photos
from sslx_augmentations.views import MoCoV2Views
from sslx_crops.sampler import Crops

import sslx

INFO = sslx.DataInfo(channels=3, image_size=(48, 48), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=2)


@pytest.fixture(scope="module")
def split() -> sslx.ArraySplit:
    """Two real 48x48 colour crops: a cat and a coffee cup."""
    images = np.stack([photos.chelsea()[60:108, 150:198], photos.coffee()[150:198, 250:298]])
    return sslx.ArraySplit(np.ascontiguousarray(images), np.array([0, 1]), INFO)


@pytest.mark.parametrize("views", [2, 3, 5])
def test_sample_returns_the_augmentations_successive_views(split, views):
    augmentation = MoCoV2Views(MoCoV2Views.Params(), INFO)
    sampler = Crops(Crops.Params(views=views))
    assert sampler.num_views == views
    augmentation.seed(11)
    out = sampler.sample(split, 1, augmentation)
    assert len(out) == views
    assert all(isinstance(v, torch.Tensor) and v.shape == (3, 48, 48) and v.dtype == torch.float32 for v in out)
    augmentation.seed(11)
    expected = [augmentation.view(split.image(1), v) for v in range(views)]
    assert all(torch.equal(a, b) for a, b in zip(out, expected))
    # independently augmented: no two views alike
    assert all(not torch.equal(out[i], out[j]) for i in range(views) for j in range(i + 1, views))


def test_views_are_of_the_requested_image(split):
    """With every random operation off, each view is the normalised image at `index`."""
    identity = dict(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0
    )
    augmentation = MoCoV2Views(MoCoV2Views.Params(**identity), INFO)
    augmentation.seed(0)
    for index in (0, 1):
        expected = (torch.tensor(split.image(index), dtype=torch.float64).permute(2, 0, 1) / 255 - 0.5) / 0.25
        for view in Crops(Crops.Params(views=3)).sample(split, index, augmentation):
            torch.testing.assert_close(view.double(), expected, rtol=0, atol=1e-6)


def test_default_is_two_views():
    assert Crops(Crops.Params()).num_views == 2


@pytest.mark.parametrize("views", [0, -1, 17])
def test_params_reject_view_counts_out_of_range(views):
    with pytest.raises(pydantic.ValidationError):
        Crops.Params(views=views)


def test_one_view_per_image_is_allowed(split):
    """views=1 (NPID's one view per image): one augmented view of the image."""
    augmentation = MoCoV2Views(MoCoV2Views.Params(), INFO)
    sampler = Crops(Crops.Params(views=1))
    augmentation.seed(5)
    out = sampler.sample(split, 0, augmentation)
    augmentation.seed(5)
    assert sampler.num_views == 1 and len(out) == 1 and torch.equal(out[0], augmentation.view(split.image(0), 0))


def test_sampler_is_picklable(split):
    """Samplers run inside DataLoader workers."""
    sampler = pickle.loads(pickle.dumps(Crops(Crops.Params(views=4))))
    assert sampler.num_views == 4
    augmentation = MoCoV2Views(MoCoV2Views.Params(), INFO)
    augmentation.seed(0)
    assert len(sampler.sample(split, 0, augmentation)) == 4
