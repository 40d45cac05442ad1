"""The crops-across-images pair sampler."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

import sslx


class Crops(sslx.PairSampler):
    """Crops across images: each image gives ``views`` independently augmented
    views; views of the same image are positives, views of other images are
    negatives (the sampler of SimCLR, MoCo, BYOL, Barlow Twins)."""

    name = "crops"
    views_of_one_image = True  # so trainer.augment_on_device can make its views on the device

    class Params(sslx.Params):
        views: int = Field(2, ge=1, le=16, description="Views per image (2 for SimCLR, MoCo and PIRL; 1 for NPID).")

    @property
    def num_views(self) -> int:
        return self.params.views

    def sample(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[torch.Tensor]:
        image: np.ndarray = split.image(index)
        return [augmentation.view(image, v) for v in range(self.params.views)]
