"""The augmentation 'example': random crop, flip, brightness and contrast.

Made with `sslx new-plugin example --kind augmentation`. The augmentation's
contract is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

import sslx


class ExampleAugmentation(sslx.Augmentation):
    """Random square crop (a share crop_area of the image's area) resized to
    the views' size, horizontal flip, brightness and contrast jitter, then
    per-channel normalisation with the dataset's mean and std. Every random
    choice comes from the generator the host reseeds before each batch, so a
    seeded run makes the same views. The evaluation view is the central
    square, resized."""

    name = "example"

    class Params(sslx.Params):
        size: int | None = Field(
            None,
            ge=8,
            description="Side of the square views in pixels (null: the dataset's "
            "image size, when its images are square).",
        )
        crop_area: tuple[float, float] = Field(
            (0.35, 1.0), description="Range [low, high] of the crop's share of the image's area."
        )
        flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
        brightness: float = Field(
            0.4,
            ge=0,
            le=1,
            description="Pixel values are scaled by a factor drawn from [1 - brightness, 1 + brightness].",
        )
        contrast: float = Field(
            0.4,
            ge=0,
            le=1,
            description="Distances to the view's mean value are scaled by a "
            "factor drawn from [1 - contrast, 1 + contrast].",
        )

        @model_validator(mode="after")
        def _area_range(self):
            low, high = self.crop_area
            if not 0 < low <= high <= 1:
                raise ValueError(f"crop_area must be [low, high] with 0 < low <= high <= 1, got [{low}, {high}]")
            return self

    def __init__(self, params: Params, data: sslx.DataInfo):
        super().__init__(params, data)
        square = data.image_size is not None and data.image_size[0] == data.image_size[1]
        if params.size is None and not square:
            raise sslx.UserError(
                f"augmentation {self.name!r}: the dataset's images are not all one square size, so "
                f"set augmentation.size to the side of the views in pixels (such as 64)."
            )
        self.size = params.size or data.image_size[0]
        self.mean = torch.tensor(data.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32).view(-1, 1, 1)
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    @property
    def out_channels(self) -> int:
        return self.data.channels

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        p, rng = self.params, self.rng
        x = pixels(image)
        h, w = x.shape[1:]
        side = min(h, w, max(1, round(math.sqrt(rng.uniform(*p.crop_area) * h * w))))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        x = x[:, y0 : y0 + side, x0 : x0 + side]
        if rng.random() < p.flip_prob:
            x = x.flip(-1)
        x = x * rng.uniform(1 - p.brightness, 1 + p.brightness)
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - p.contrast, 1 + p.contrast) + mean
        return self._normalise(resize(x.clamp(0, 1), self.size))

    def eval(self, image: np.ndarray) -> torch.Tensor:
        x = pixels(image)
        h, w = x.shape[1:]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        return self._normalise(resize(x[:, y0 : y0 + side, x0 : x0 + side], self.size))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).float().contiguous()


def pixels(image: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` uint8 image as a ``(C, H, W)`` float32 tensor in [0, 1]
    (a copy: dataset arrays may be read-only)."""
    return torch.tensor(image).permute(2, 0, 1).float() / 255


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` (``(C, h, w)``) resized to ``size`` x ``size`` (bilinear, antialiased
    when shrinking); unchanged when it has that size already."""
    if x.shape[1:] == (size, size):
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


@sslx.hookimpl
def sslx_register_augmentations(register):
    register(ExampleAugmentation)
