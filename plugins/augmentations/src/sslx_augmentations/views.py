"""The albumentations view pipelines ``simclr`` and ``mocov2``, and what
the other pipelines of this plugin build on: the parameter models, the
random operations of one view (:func:`view_ops`) and :class:`Pipeline`.

albumentations and OpenCV are imported when a pipeline is built, not when
this module is imported (``sslx validate`` and ``sslx describe`` read the
parameter models only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import Field, model_validator

import sslx

if TYPE_CHECKING:
    import albumentations as A

Pair = tuple[float, float]


def _check_range(key: str, value: Pair, fraction: bool = False) -> None:
    lo, hi = value
    if not 0 < lo <= hi:
        raise ValueError(f"{key} must be [low, high] with 0 < low <= high, got [{lo}, {hi}]")
    if fraction and hi > 1:
        raise ValueError(f"{key} must lie within (0, 1], got {list(value)}")


class AppearanceParams(sslx.Params):
    """What every pipeline here shares besides the size and scale of its
    crops: aspect ratio, flip, colour, blur, solarize, normalisation."""

    crop_ratio: Pair = Field((3 / 4, 4 / 3), description="Range of the crop's aspect ratio.")
    flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    jitter_prob: float = Field(0.8, ge=0, le=1, description="Probability of colour jitter.")
    brightness: float = Field(0.8, ge=0, description="Brightness jitter: factor drawn from [1-b, 1+b].")
    contrast: float = Field(0.8, ge=0, description="Contrast jitter: factor drawn from [1-c, 1+c].")
    saturation: float = Field(0.8, ge=0, description="Saturation jitter (colour images only).")
    hue: float = Field(0.2, ge=0, le=0.5, description="Hue jitter (colour images only).")
    grayscale_prob: float = Field(
        0.2, ge=0, le=1, description="Probability of converting to grayscale (colour images only)."
    )
    blur_prob: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Probability of a Gaussian blur (papers use 0.5 on ImageNet and none on 32 px images).",
    )
    blur_sigma: Pair = Field((0.1, 2.0), description="Range of the blur's sigma in pixels.")
    solarize_prob: float = Field(
        0.0, ge=0, le=1, description="Probability of solarizing (inverting pixels above half range)."
    )
    mean: tuple[float, ...] | None = Field(None, description="Per-channel normalisation mean (null: the dataset's).")
    std: tuple[float, ...] | None = Field(None, description="Per-channel normalisation std (null: the dataset's).")

    @model_validator(mode="after")
    def _appearance_ranges(self) -> AppearanceParams:
        _check_range("crop_ratio", self.crop_ratio)
        _check_range("blur_sigma", self.blur_sigma)
        return self


class CropParams(sslx.Params):
    size: int | None = Field(
        None,
        ge=8,
        description="Side of the square views in pixels (null: the dataset's image size; "
        "required when its images vary in size).",
    )
    crop_scale: Pair = Field(
        (0.08, 1.0), description="Range of the crop's area as a fraction of the image (RandomResizedCrop)."
    )

    @model_validator(mode="after")
    def _crop_ranges(self) -> CropParams:
        _check_range("crop_scale", self.crop_scale, fraction=True)
        return self


class ViewParams(AppearanceParams, CropParams):
    """The parameters of one pipeline (pydantic lists the last base's fields first: size and scale, then appearance)."""


def view_ops(params: AppearanceParams, size: int, scale: Pair, color: bool) -> list[A.BasicTransform]:
    """The random operations of one view, in order: a crop of ``scale`` of
    the image's area resized to ``size`` x ``size``, flip, colour jitter,
    grayscale (colour images only), Gaussian blur, solarize."""
    import albumentations as A
    import cv2

    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # about 10% of the view, odd
    ops = [
        A.RandomResizedCrop(size=(size, size), scale=scale, ratio=params.crop_ratio, interpolation=cv2.INTER_LINEAR),
        A.HorizontalFlip(p=params.flip_prob),
        A.ColorJitter(
            brightness=params.brightness,
            contrast=params.contrast,
            saturation=params.saturation if color else 0.0,
            hue=params.hue if color else 0.0,
            p=params.jitter_prob,
        ),
    ]
    if color:
        ops.append(A.ToGray(p=params.grayscale_prob))
    ops.append(A.GaussianBlur(blur_limit=(3, kernel), sigma_limit=params.blur_sigma, p=params.blur_prob))
    ops.append(A.Solarize(threshold_range=(0.5, 0.5), p=params.solarize_prob))
    return ops


class Pipeline(sslx.Augmentation):
    """What the pipelines here share: the side of the (large) views, the
    normalisation, the tensor layout and the deterministic evaluation view
    (the image resized and centre-cropped to that side when it differs)."""

    def __init__(self, params: AppearanceParams, data: sslx.DataInfo, size: int | None, size_key: str):
        import albumentations as A  # with OpenCV and SciPy: imported when a pipeline is built

        super().__init__(params, data)
        size = size or (data.image_size[0] if data.image_size and data.image_size[0] == data.image_size[1] else None)
        if size is None:
            raise sslx.UserError(
                f"augmentation {self.name!r}: the dataset's images are not all one square size, so set "
                f"augmentation.{size_key} to the side of the views in pixels (for example 224)."
            )
        self.size = size
        self.channels = data.channels
        self.color = data.channels == 3
        mean = params.mean or data.mean
        std = params.std or data.std
        if len(mean) != data.channels or len(std) != data.channels:
            raise sslx.UserError(
                f"augmentation.mean/std have {len(mean)}/{len(std)} values but the images have {data.channels} channels."
            )
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        same_size = data.image_size == (size, size)
        self.eval_pipeline = (
            None if same_size else A.Compose([A.SmallestMaxSize(max_size=size), A.CenterCrop(size, size)])
        )

    @property
    def out_channels(self) -> int:
        return self.channels

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        if image.ndim == 2:
            image = image[..., None]
        x = torch.tensor(image).permute(2, 0, 1).float().div_(255)  # a copy: dataset arrays may be read-only
        return x.sub_(self.mean).div_(self.std)

    def eval(self, image: np.ndarray) -> torch.Tensor:
        if self.eval_pipeline is not None:
            image = self.eval_pipeline(image=image)["image"]
        return self._to_tensor(image)


class Views(Pipeline):
    """Random resized crop, flip, colour jitter, grayscale, blur, solarize,
    normalise: the SimCLR family of view pipelines."""

    Params = ViewParams

    def __init__(self, params: ViewParams, data: sslx.DataInfo):
        import albumentations as A

        super().__init__(params, data, params.size, "size")
        self.pipeline = A.Compose(view_ops(params, self.size, params.crop_scale, self.color))

    def seed(self, seed: int) -> None:
        self.pipeline.set_random_seed(seed % 2**32)

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        return self._to_tensor(self.pipeline(image=image)["image"])

    def batched(self) -> sslx.BatchedAugmentation:
        from sslx_augmentations.batched import BatchedViews, ViewsOnDevice

        return ViewsOnDevice(
            BatchedViews(
                self.params, size=self.size, mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist()
            )
        )


class SimCLRViews(Views):
    """SimCLR's views (Chen et al., 2020, arXiv:2002.05709): crop scale
    0.08-1, colour jitter of strength 1 with p=0.8, grayscale p=0.2, blur p=0.5."""

    name = "simclr"


class MoCoV2Params(ViewParams):
    crop_scale: Pair = Field(
        (0.2, 1.0), description="Range of the crop's area as a fraction of the image (RandomResizedCrop)."
    )
    brightness: float = Field(0.4, ge=0, description="Brightness jitter: factor drawn from [1-b, 1+b].")
    contrast: float = Field(0.4, ge=0, description="Contrast jitter: factor drawn from [1-c, 1+c].")
    saturation: float = Field(0.4, ge=0, description="Saturation jitter (colour images only).")
    hue: float = Field(0.1, ge=0, le=0.5, description="Hue jitter (colour images only).")


class MoCoV2Views(Views):
    """MoCo v2's views (Chen et al., 2020, arXiv:2003.04297): crop scale
    0.2-1, colour jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, blur p=0.5."""

    name = "mocov2"
    Params = MoCoV2Params
