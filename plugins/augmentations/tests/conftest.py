"""Real images shared by the augmentation tests."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as photos
from sslx_datasets.images import FashionMNIST

import sslx

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(scope="session")
def fmnist():
    """A real 28x28x1 Fashion-MNIST test image (an ankle boot) and its DataInfo."""
    split = FashionMNIST(FashionMNIST.Params(test_size=8)).split("test")
    return split.image(0), split.info


@pytest.fixture(scope="session")
def photo64():
    """A real 64x64 colour crop of scikit-image's chelsea, with a matching DataInfo."""
    image = np.ascontiguousarray(photos.chelsea()[60:124, 150:214])
    return image, sslx.DataInfo(channels=3, image_size=(64, 64), num_classes=None, **IMAGENET)
