"""Multi-crop views (SwAV, Caron et al., 2020, arXiv:2006.09882, section 3.2):
a few full-resolution crops of large parts of the image and several
low-resolution crops of small parts, each through the same flip, colour,
blur and solarize operations as the other pipelines (``view_ops``)."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

import sslx
from sslx_augmentations.views import AppearanceParams, Pair, Pipeline, _check_range, view_ops


class MultiCropCrops(sslx.Params):
    n_large: int = Field(
        2,
        ge=1,
        le=16,
        description="Number of large (full-resolution) views, given first: views 0 to "
        "n_large - 1. SwAV computes codes on these, so it needs at least 2.",
    )
    n_small: int = Field(
        4,
        ge=0,
        le=16,
        description="Number of small low-resolution views after the large ones (SwAV: 6 "
        "on ImageNet; 2 to 6 add views at little cost). Set sampler.views to "
        "n_large + n_small.",
    )
    large_size: int | None = Field(
        None,
        ge=8,
        description="Side of the large views in pixels (null: the dataset's image "
        "size; required when its images vary in size). Also the "
        "side of the evaluation view.",
    )
    small_size: int | None = Field(
        None,
        ge=8,
        description="Side of the small views in pixels, less than large_size (null: "
        "4/7 of large_size, 16 for 28 px images; the paper pairs 96 "
        "with 224).",
    )
    large_scale: Pair = Field(
        (0.14, 1.0),
        description="Range of a large crop's area as a fraction of the image (the paper's "
        "ImageNet value). Small images need larger crops: (0.5, 1.0) "
        "suits 28 px Fashion-MNIST.",
    )
    small_scale: Pair = Field(
        (0.05, 0.14),
        description="Range of a small crop's area as a fraction of the image (the "
        "paper's ImageNet value). Small images need larger crops: "
        "(0.2, 0.5) suits 28 px Fashion-MNIST.",
    )

    @model_validator(mode="after")
    def _scale_ranges(self) -> MultiCropCrops:
        _check_range("large_scale", self.large_scale, fraction=True)
        _check_range("small_scale", self.small_scale, fraction=True)
        return self


class MultiCropParams(AppearanceParams, MultiCropCrops):
    """Multi-crop's parameters (pydantic lists the last base's fields first: the crops, then appearance)."""


class MultiCrop(Pipeline):
    """Multi-crop (Caron et al., 2020, arXiv:2006.09882): views 0 to
    n_large - 1 are full-resolution random resized crops of large parts of
    the image, the next n_small are low-resolution crops of small parts; all
    get the same flip, colour jitter, grayscale, blur and solarize as the
    simclr pipeline (whose strengths are the defaults, as in SwAV). Use with
    sampler crops and views = n_large + n_small; batches then hold views of
    two sizes. Evaluation uses the large size."""

    name = "multicrop"
    Params = MultiCropParams

    def __init__(self, params: MultiCropParams, data: sslx.DataInfo):
        import albumentations as A  # imported when a pipeline is built

        super().__init__(params, data, params.large_size, "large_size")
        self.small_size = params.small_size or max(8, round(self.size * 4 / 7))
        if params.n_small and self.small_size >= self.size:
            raise sslx.UserError(
                f"augmentation 'multicrop': small_size ({self.small_size}) must be less than the large views' side "
                f"({self.size}), or objectives cannot tell the small views from the large ones: lower "
                f"augmentation.small_size (about 4/7 of the large side works) or set n_small to 0."
            )
        self.large = A.Compose(view_ops(params, self.size, params.large_scale, self.color))
        self.small = A.Compose(view_ops(params, self.small_size, params.small_scale, self.color))

    @property
    def num_views(self) -> int:
        return self.params.n_large + self.params.n_small

    def seed(self, seed: int) -> None:
        # two independent streams: the small views' crops are not tied to the large views'
        self.large.set_random_seed(seed % 2**32)
        self.small.set_random_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))

    def batched(self) -> sslx.BatchedAugmentation:
        from sslx_augmentations.batched import BatchedViews, ViewsOnDevice

        norm = {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}
        return ViewsOnDevice(
            BatchedViews(self.params, size=self.size, crop_scale=self.params.large_scale, **norm),
            BatchedViews(self.params, size=self.small_size, crop_scale=self.params.small_scale, **norm),
            first_small=self.params.n_large,
        )

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        if not 0 <= view < self.num_views:
            raise sslx.UserError(
                f"augmentation 'multicrop' makes {self.num_views} views (n_large {self.params.n_large} + n_small "
                f"{self.params.n_small}) but view {view} was asked for: set sampler.views to {self.num_views}."
            )
        pipeline = self.large if view < self.params.n_large else self.small
        return self._to_tensor(pipeline(image=image)["image"])
