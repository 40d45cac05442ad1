"""Batched view augmentation on tensors, on any device: the views of a whole
batch made at once, each sample with its own random parameters.

The albumentations path (:func:`sslx_augmentations.views.view_ops`) makes views
image by image on CPU workers. Here the batch is one tensor (uint8 or float in
[0, 1], shape (n, C, H, W), C = 1 or 3), every operation runs on the whole
batch, and every random number is drawn from a ``torch.Generator`` on the
images' device, so a view depends on that generator's state and the batch size
only, and :class:`BatchedViews` never waits for the device (nothing is read
back; only its first call on a device copies the normalisation there). torchvision's v2 transforms draw one set of
parameters per call, so on a batch tensor all samples get the same crop and
the same jitter; SSL views need them independent.

The operations and their parameter ranges are those of albumentations 2.0.8
as :func:`~sslx_augmentations.views.view_ops` configures it, in the same order:
RandomResizedCrop, HorizontalFlip, ColorJitter, ToGray, GaussianBlur,
Solarize (SimCLR, Chen et al., 2020, arXiv:2002.05709, appendix A). The
math is float32 on images scaled to [0, 1] (float64 input stays float64).
Where the batched path differs from albumentations:

- colour jitter applies brightness, contrast, saturation and hue in this
  fixed order (albumentations shuffles the order per image; a per-sample order
  would make the jitter four times the work);
- the blur kernel has one odd size per call, the largest of albumentations'
  range (about 10% of the view), with a per-sample sigma (albumentations also
  draws the kernel size, from 3 to that size);
- the crop is resampled straight from the image with bilinear interpolation
  (albumentations crops, then resizes with OpenCV): the same sample positions,
  except that when a crop is enlarged, samples within half an output pixel of
  its edge blend in the pixels just outside it rather than repeating its edge;
- pixels stay float between operations (albumentations rounds to uint8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import sslx
from sslx_augmentations.views import Pair, ViewParams

SOLARIZE_THRESHOLD = 0.5  # view_ops: Solarize(threshold_range=(0.5, 0.5)), a fraction of the maximum value


# -- random parameters ---------------------------------------------------------------


def _uniform(shape: int | tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Float32 values drawn uniformly from [low, high) on the generator's device."""
    return torch.rand(shape, generator=generator, device=generator.device) * (high - low) + low


def _coin(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) bool: each True with probability p."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def draw_crops(
    n: int, height: int, width: int, scale: Pair, ratio: Pair, generator: torch.Generator, attempts: int = 10
) -> torch.Tensor:
    """Boxes of albumentations' RandomResizedCrop, one per sample.

    For each sample, ``attempts`` candidates at once: an area drawn uniformly
    from ``scale`` times the image's area, an aspect ratio (width / height)
    drawn uniformly in log space from ``ratio``, sides rounded to pixels. The
    first candidate that fits in the image is placed at a uniformly random
    integer position; a sample without one gets the centre crop of the
    largest part of the image whose aspect ratio lies in ``ratio``.

    Returns (n, 4) float32 boxes (x0, y0, w, h) in pixels, integer-valued,
    with 0 <= x0, x0 + w <= width, 0 <= y0, y0 + h <= height.
    """
    area = _uniform((n, attempts), scale[0] * height * width, scale[1] * height * width, generator)
    aspect = _uniform((n, attempts), math.log(ratio[0]), math.log(ratio[1]), generator).exp()
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first candidate that fits (0 when none does)
    w, h, found = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1), fits.any(dim=1)
    start = torch.rand(n, 2, generator=generator, device=generator.device)
    y0 = torch.minimum(torch.floor((height - h + 1) * start[:, 0]), height - h)
    x0 = torch.minimum(torch.floor((width - w + 1) * start[:, 1]), width - w)

    # the fallback: albumentations' centre crop
    if width / height < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    x0 = torch.where(found, x0, float((width - fw) // 2))
    y0 = torch.where(found, y0, float((height - fh) // 2))
    w = torch.where(found, w, float(fw))
    h = torch.where(found, h, float(fh))
    return torch.stack([x0, y0, w, h], dim=1)


# -- geometry -------------------------------------------------------------------------


def resized_crops(
    images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Each image's box resampled to ``size`` x ``size``, mirrored where
    ``flip`` is True: one ``affine_grid`` + ``grid_sample`` for the batch.

    images: (n, C, H, W) float; boxes: (n, 4) (x0, y0, w, h) in pixels, as
    :func:`draw_crops` gives; flip: (n,) bool or None. Output pixel j (of
    ``size``) samples the image at x = x0 + (j + 0.5) * w / size - 0.5 in
    pixel coordinates (pixel centres at integers), as OpenCV's INTER_LINEAR
    resize of the crop does, with bilinear interpolation and positions
    clamped to the image. Returns (n, C, size, size), the images' dtype.
    """
    n, c, height, width = images.shape
    x0, y0, w, h = boxes.to(images.dtype).unbind(dim=1)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1] (align_corners=False)
    sx, sy = w / width, h / height
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    tx, ty = (2 * x0 + w) / width - 1, (2 * y0 + h) / height - 1
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], dim=1), torch.stack([zero, sy, ty], dim=1)], dim=1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# -- colour ---------------------------------------------------------------------------


def _per_sample(
    values: torch.Tensor | float, images: torch.Tensor, apply: torch.Tensor | None = None
) -> torch.Tensor | float:
    """Per-sample values (n,), or one value for all, shaped to broadcast over
    (n, C, H, W) images in their dtype; where ``apply`` (n,) is False, 1 (the
    factor that leaves an image as it is). One value without ``apply`` is
    returned as the Python number it is."""
    if not isinstance(values, torch.Tensor):
        if apply is None:
            return values
        values = torch.full(apply.shape, values, device=apply.device)
    if apply is not None:
        values = torch.where(apply, values, 1.0)
    return values.to(dtype=images.dtype, device=images.device).reshape(-1, 1, 1, 1)


def _where(apply: torch.Tensor | None, changed: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``changed`` for the samples where ``apply`` (n,) is True, ``images`` elsewhere (all changed when None)."""
    return changed if apply is None else torch.where(apply.reshape(-1, 1, 1, 1), changed, images)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) luma of (n, 3, H, W) RGB images, ITU-R BT.601 weights
    0.299, 0.587, 0.114 (OpenCV's RGB2GRAY, albumentations' ToGray
    "weighted_average"); single-channel images are returned as they are."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels times a per-sample ``factor`` (n,), clipped to [0, 1], where
    ``apply`` (n,) is True (albumentations' ColorJitter brightness)."""
    return (images * _per_sample(factor, images, apply)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Each image blended with the mean of its grayscale: factor * x +
    (1 - factor) * mean, clipped to [0, 1], where ``apply`` is True
    (albumentations' ColorJitter contrast)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor, images, apply)
    return (f * images + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Each RGB image blended with its grayscale: factor * x + (1 - factor) *
    gray, clipped to [0, 1], where ``apply`` is True (albumentations'
    ColorJitter saturation); single-channel images are returned as they are."""
    if images.shape[1] == 1:
        return images
    f = _per_sample(factor, images, apply)
    return (f * images + (1 - f) * grayscale(images)).clamp(0, 1)


def _hue(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hue of (n, 3, H, W) RGB pixels in sixths of a turn, in [-1, 5)
    (colorsys' rgb_to_hsv hue times 6, before wrapping), and each pixel's
    smallest channel and range (largest - smallest), all (n, 1, H, W)."""
    r, g, b = images.split(1, dim=1)
    largest, smallest = images.amax(dim=1, keepdim=True), images.amin(dim=1, keepdim=True)
    spread = largest - smallest
    d = spread.clamp(min=torch.finfo(images.dtype).tiny)  # gray pixels: every difference below is 0 too, hue 0
    hue = torch.where(largest == r, (g - b) / d, torch.where(largest == g, (b - r) / d + 2, (r - g) / d + 4))
    return hue, smallest, spread


def _from_hue(hue: torch.Tensor, smallest: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) RGB pixels from a hue in sixths of a turn in [0, 6], each
    pixel's smallest channel and range (n, 1, H, W): a channel is the smallest
    plus the range times its weight, 1 on the third of the circle around its
    own hue (red 0, green 2, blue 4), 0 on the opposite third, linear between
    (colorsys' hsv_to_rgb)."""
    weights = ((hue - 3).abs() - 1, 2 - (hue - 2).abs(), 2 - (hue - 4).abs())
    return torch.cat([smallest + spread * w.clamp(0, 1) for w in weights], dim=1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Each RGB image's hue rotated by a per-sample ``shift`` (n,) in [-0.5,
    0.5] of a full turn, saturation and value kept (as RGB -> HSV -> RGB),
    where ``apply`` is True (albumentations' ColorJitter hue); single-channel
    images are returned as they are."""
    if images.shape[1] == 1:
        return images
    hue, smallest, spread = _hue(images)
    hue = (hue + 6 * _per_sample(shift, images)) % 6
    return _where(apply, _from_hue(hue, smallest, spread).clamp(0, 1), images)


def to_gray(images: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """RGB images replaced by their :func:`grayscale`, kept as 3 equal
    channels, where ``apply`` is True (albumentations' ToGray); single-channel
    images are returned as they are."""
    if images.shape[1] == 1:
        return images
    return _where(apply, grayscale(images).expand_as(images), images)


def gaussian_kernel_size(sigma: float) -> int:
    """The odd Gaussian kernel size albumentations (and PIL) use for ``sigma``: int(3.5 sigma) * 2 + 1."""
    return int(3.5 * sigma) * 2 + 1


def gaussian_blur(
    images: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor | None = None, kernel_size: int | None = None
) -> torch.Tensor:
    """Each image blurred with a Gaussian of its own ``sigma`` (n,), where
    ``apply`` is True (albumentations' GaussianBlur).

    The kernel, exp(-x^2 / (2 sigma^2)) for x = -r..r normalised to sum 1, has
    one odd size for the call: ``kernel_size``, or the size for the largest
    sigma (:func:`gaussian_kernel_size`; reading sigma back synchronises with the
    device). The separable convolution is two grouped convolutions over the
    batch as one (1, n * C, H, W) image, one kernel per sample, with
    reflected borders (OpenCV's BORDER_REFLECT_101, as albumentations).
    """
    n, c, height, width = images.shape
    size = kernel_size if kernel_size is not None else gaussian_kernel_size(float(sigma.max()))
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the blur's kernel size must be odd and positive, got {size}")
    radius = size // 2
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma.to(images).reshape(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).expand(n, size).repeat_interleave(c, dim=0)  # (n * C, size)
    flat = F.pad(images.reshape(1, n * c, height, width), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel.reshape(n * c, 1, 1, size), groups=n * c)  # along rows
    flat = F.conv2d(flat, kernel.reshape(n * c, 1, size, 1), groups=n * c)  # along columns
    return _where(apply, flat.reshape(n, c, height, width), images)


def solarize(images: torch.Tensor, threshold: torch.Tensor | float, apply: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels at or above a per-sample ``threshold`` (n,) (or one for all)
    inverted to 1 - x, where ``apply`` is True (albumentations' Solarize)."""
    invert = images >= _per_sample(threshold, images)
    if apply is not None:
        invert = invert & apply.reshape(-1, 1, 1, 1)
    return torch.where(invert, 1 - images, images)


# -- views ----------------------------------------------------------------------------


class BatchedViews:
    """The views of :func:`~sslx_augmentations.views.view_ops` for a whole batch:
    random resized crop, flip, colour jitter, grayscale, Gaussian blur,
    solarize, normalisation, each sample with its own random parameters.

    Built from a ``ViewParams``-like object (any object with some of
    ViewParams' attributes, e.g. the params of ``simclr`` or ``mocov2``; for
    multi-crop pass ``size`` and ``crop_scale`` as keywords) and/or keyword
    arguments, which win; missing values are ViewParams' defaults (SimCLR's).
    ``mean`` and ``std`` (per channel, pixels in [0, 1]) are required. A
    ``size`` of None makes views the side of the (square) input images.

    Calling it with (images, generator) maps (n, C, H, W) uint8 images (or float in
    [0, 1]) to normalised (n, C, size, size) float32 views;
    ``draw`` and ``apply`` are its two halves. Colour jitter applies
    brightness, contrast, saturation and hue in this fixed order. Grayscale
    images (C = 1) get no saturation, hue or grayscale change, as in the
    albumentations path.
    """

    def __init__(self, params: object | None = None, **values: object):
        given = {key: getattr(params, key) for key in ViewParams.model_fields if hasattr(params, key)}
        self.params = ViewParams(**{**given, **values})
        if self.params.mean is None or self.params.std is None:
            raise ValueError("BatchedViews needs the normalisation's mean and std (per channel, pixels in [0, 1])")
        self._norm: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def view_size(self, height: int, width: int) -> int:
        """The side of the views of (height, width) images."""
        if self.params.size is not None:
            return self.params.size
        if height != width:
            raise ValueError(f"the images are {height}x{width}, not square: give BatchedViews a size")
        return height

    def blur_kernel_size(self, size: int) -> int:
        """The blur kernel's size for views of side ``size``: about 10% of it,
        odd, at least 3 (the largest of view_ops' GaussianBlur blur_limit)."""
        return max(3, int(0.1 * size) // 2 * 2 + 1)

    def draw(
        self, n: int, height: int, width: int, channels: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The random parameters of n views of (channels, height, width)
        images, each (n,) on the generator's device unless noted: ``boxes``
        (n, 4) (x0, y0, w, h) crops; ``flip``, ``jitter``, ``gray``, ``blur``,
        ``solarize`` bool switches; ``brightness``, ``contrast``,
        ``saturation`` factors; ``hue`` shifts; ``sigma`` blur widths. Always
        the same draws, in the same order, so one generator state gives one
        set of views. For channels = 1: saturation 1, hue 0, no grayscale."""
        p = self.params
        params = {
            "boxes": draw_crops(n, height, width, p.crop_scale, p.crop_ratio, generator),
            "flip": _coin(n, p.flip_prob, generator),
            "jitter": _coin(n, p.jitter_prob, generator),
            "brightness": _uniform(n, max(0.0, 1 - p.brightness), 1 + p.brightness, generator),
            "contrast": _uniform(n, max(0.0, 1 - p.contrast), 1 + p.contrast, generator),
            "saturation": _uniform(n, max(0.0, 1 - p.saturation), 1 + p.saturation, generator),
            "hue": _uniform(n, -p.hue, p.hue, generator),
            "gray": _coin(n, p.grayscale_prob, generator),
            "blur": _coin(n, p.blur_prob, generator),
            "sigma": _uniform(n, *p.blur_sigma, generator),
            "solarize": _coin(n, p.solarize_prob, generator),
        }
        if channels == 1:
            params["saturation"] = torch.ones_like(params["saturation"])
            params["hue"] = torch.zeros_like(params["hue"])
            params["gray"] = torch.zeros_like(params["gray"])
        return params

    def _mean_std(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalisation's mean and std as (1, C, 1, 1) tensors on the images' device, made once per device."""
        key = (images.device, images.dtype)
        if key not in self._norm:
            mean = torch.tensor(self.params.mean, dtype=images.dtype).reshape(1, -1, 1, 1).to(images.device)
            std = torch.tensor(self.params.std, dtype=images.dtype).reshape(1, -1, 1, 1).to(images.device)
            self._norm[key] = mean, std
        return self._norm[key]

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The views of (n, C, H, W) images (uint8, or float in [0, 1]) under
        ``params`` from :meth:`draw`: (n, C, size, size), normalised, float32
        (float64 for float64 input)."""
        n, c, height, width = images.shape
        if c not in (1, 3):
            raise ValueError(f"the images have {c} channels; BatchedViews takes 1 (grayscale) or 3 (RGB)")
        if len(self.params.mean) != c or len(self.params.std) != c:
            raise ValueError(
                f"mean/std have {len(self.params.mean)}/{len(self.params.std)} values but the images "
                f"have {c} channel{'s' if c > 1 else ''}"
            )
        x = images if images.is_floating_point() else images.to(torch.float32) / 255
        size = self.view_size(height, width)
        p = self.params
        x = resized_crops(x, params["boxes"], size, params["flip"])
        if p.jitter_prob > 0:
            jitter = params["jitter"]
            x = adjust_brightness(x, params["brightness"], jitter)
            x = adjust_contrast(x, params["contrast"], jitter)
            x = adjust_saturation(x, params["saturation"], jitter)
            if p.hue > 0:
                x = adjust_hue(x, params["hue"], jitter)
        if p.grayscale_prob > 0:
            x = to_gray(x, params["gray"])
        if p.blur_prob > 0:
            x = gaussian_blur(x, params["sigma"], params["blur"], self.blur_kernel_size(size))
        if p.solarize_prob > 0:
            x = solarize(x, SOLARIZE_THRESHOLD, params["solarize"])
        mean, std = self._mean_std(x)
        return (x - mean) / std

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Views of (n, C, H, W) images with parameters drawn from ``generator`` (on the images' device)."""
        n, c, height, width = images.shape
        return self.apply(images, self.draw(n, height, width, c, generator))


class ViewsOnDevice(sslx.BatchedAugmentation):
    """An augmentation's batched path (``trainer.augment_on_device``): views
    before ``first_small`` come from ``large``, the others from ``small``
    (multi-crop's two sizes; a one-size augmentation passes ``small=None``)."""

    def __init__(self, large: BatchedViews, small: BatchedViews | None = None, first_small: int = 1 << 30):
        self.large, self.small, self.first_small = large, small, first_small

    def _maker(self, view: int) -> BatchedViews:
        return self.large if view < self.first_small or self.small is None else self.small

    def draw(
        self, view: int, n: int, image_shape: tuple[int, int, int], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        channels, height, width = image_shape
        return self._maker(view).draw(n, height, width, channels, generator)

    def apply(self, view: int, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._maker(view).apply(images, params)
