"""The pair sampler 'example': global and local views of one image.

Made with `sslx new-plugin example --kind sampler`. The sampler's contract is
in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, model_validator

import sslx


def zoom(image: np.ndarray, area: float, rng: np.random.Generator) -> np.ndarray:
    """A square crop covering ``area`` (a share) of ``image``'s area at a
    random place drawn from ``rng``, resized back to the image's size
    (nearest neighbour)."""
    h, w = image.shape[:2]
    side = min(h, w, max(1, round(math.sqrt(area * h * w))))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    rows = y + np.arange(h) * side // h
    cols = x + np.arange(w) * side // w
    return image[rows[:, None], cols]


class ExampleSampler(sslx.PairSampler):
    """Global and local views: view 0 of an image is the whole image, every
    further view a zoomed-in square crop of it (a random share zoom_area of
    its area, at a random place, resized back to the image's size), each then
    augmented. The views of an image are positives, other images negatives,
    so the encoder learns to match details with the whole they belong to
    (the local-to-global views of DINO, Caron et al., 2021)."""

    name = "example"

    class Params(sslx.Params):
        views: int = Field(
            2, ge=2, le=16, description="Views per image: the whole image, then views - 1 zoomed-in crops."
        )
        zoom_area: tuple[float, float] = Field(
            (0.2, 0.5), description="Range [low, high] of a crop's share of the image's area, drawn for each crop."
        )

        @model_validator(mode="after")
        def _area_range(self):
            low, high = self.zoom_area
            if not 0 < low <= high <= 1:
                raise ValueError(f"zoom_area must be [low, high] with 0 < low <= high <= 1, got [{low}, {high}]")
            return self

    @property
    def num_views(self) -> int:
        return self.params.views

    def sample(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[torch.Tensor]:
        image = split.image(index)
        low, high = self.params.zoom_area
        crops = [zoom(image, self.rng.uniform(low, high), self.rng) for _ in range(self.params.views - 1)]
        return [augmentation.view(crop, v) for v, crop in enumerate([image, *crops])]


@sslx.hookimpl
def sslx_register_pair_samplers(register):
    register(ExampleSampler)
