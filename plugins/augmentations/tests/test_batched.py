"""Batched per-sample view augmentation (``sslx_augmentations.batched``) on
CPU tensors: each operation gets its own parameters per sample (recovered
from the outputs), the parameters cover the albumentations path's ranges,
outputs stay in range with their shape and dtype, crops stay inside the
image, seeds reproduce, float64 reference computations (bilinear sampling,
OpenCV's separable blur, colorsys' hue), and whole views of real photos."""

from __future__ import annotations

import colorsys
import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.blur import functional as fblur
from skimage import data as photos
from skimage.transform import resize
from sslx_augmentations.batched import (
    BatchedViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    draw_crops,
    gaussian_blur,
    grayscale,
    resized_crops,
    solarize,
    to_gray,
)
from sslx_augmentations.multicrop import MultiCrop
from sslx_augmentations.views import MoCoV2Views, SimCLRViews, view_ops

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
GRAY = dict(mean=(0.286,), std=(0.353,))
PIPELINES = [SimCLRViews, MoCoV2Views]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: on a busy 2-core machine, OpenMP threads only wait on each other (the module took
    11 s with 2 threads, 1.5 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def simclr_draw(n: int, channels: int = 3, seed: int = 0, **values) -> dict[str, torch.Tensor]:
    """n samples' parameters of SimCLR's views of 32x32 images (keyword overrides apply)."""
    return BatchedViews(**{**IMAGENET, **values}).draw(n, 32, 32, channels, generator(seed))


def distinct(values: torch.Tensor) -> int:
    return len(torch.unique(values))


# -- crops ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, scale, ratio",
    [
        (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),  # SimCLR on CIFAR-sized images
        (28, 28, (0.2, 1.0), (3 / 4, 4 / 3)),  # MoCo v2 on Fashion-MNIST
        (20, 90, (0.08, 1.0), (0.1, 10.0)),  # wide image, extreme ratios
        (90, 20, (0.9, 1.0), (0.2, 5.0)),  # tall image, large crops: many fallbacks
        (7, 300, (1.0, 1.0), (1.0, 1.0)),  # no candidate ever fits
        (5, 5, (0.01, 0.02), (3 / 4, 4 / 3)),  # crops rounded to nothing: fallback
        (300, 7, (0.5, 1.0), (0.01, 100.0)),
    ],
)
def test_crop_boxes_stay_inside_the_image(height, width, scale, ratio):
    boxes = draw_crops(2000, height, width, scale, ratio, generator())
    x0, y0, w, h = boxes.unbind(1)
    assert boxes.shape == (2000, 4) and boxes.dtype == torch.float32
    assert torch.equal(boxes, boxes.round())  # whole pixels, as albumentations' crops
    assert (w >= 1).all() and (h >= 1).all() and (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= width).all() and (y0 + h <= height).all()


def test_crop_fallback_is_the_centre_crop():
    # a 30 px wide, 40 px high image cannot hold any crop of its whole area with aspect ratio 2 to 3:
    # the fallback is the centre crop of the largest part with ratio 2, 30 x 15
    boxes = draw_crops(50, 40, 30, (1.0, 1.0), (2.0, 3.0), generator())
    assert torch.equal(boxes, torch.tensor([[0.0, 12.0, 30.0, 15.0]]).expand(50, 4))


@pytest.mark.parametrize("height, width, scale", [(32, 32, (0.08, 1.0)), (24, 40, (0.2, 1.0)), (40, 24, (0.5, 1.0))])
def test_crops_follow_albumentations_distribution(height, width, scale):
    ratio = (3 / 4, 4 / 3)
    reference = A.RandomResizedCrop(size=(8, 8), scale=scale, ratio=ratio)
    reference.set_random_seed(0)
    shape = {"shape": (height, width)}
    coords = [reference.get_params_dependent_on_data(shape, {})["crop_coords"] for _ in range(4000)]
    x_min, y_min, x_max, y_max = torch.tensor(coords, dtype=torch.float64).unbind(1)
    theirs = {"w": x_max - x_min, "h": y_max - y_min, "x centre": (x_min + x_max) / 2, "y centre": (y_min + y_max) / 2}
    x0, y0, w, h = draw_crops(4000, height, width, scale, ratio, generator()).double().unbind(1)
    ours = {"w": w, "h": h, "x centre": x0 + w / 2, "y centre": y0 + h / 2}
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    for key in ours:
        side = width if key[0] in "wx" else height
        gap = (torch.quantile(ours[key], q) - torch.quantile(theirs[key], q)).abs().max() / side
        assert gap < 0.04, f"{key}: quantiles differ by {gap:.3f} of the image side"
    full_theirs = ((theirs["w"] == width) & (theirs["h"] == height)).double().mean()
    full_ours = ((w == width) & (h == height)).double().mean()
    assert abs(full_theirs - full_ours) < 0.02  # whole-image crops, fallbacks among them


def ramps(n: int, height: int, width: int) -> torch.Tensor:
    """(n, 2, height, width) float64: channel 0 is each pixel's x, channel 1 its y."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([x, y]).expand(n, 2, height, width)


def test_crops_of_coordinate_ramps_give_back_each_sample_box_and_flip():
    n, size = 200, 8
    params = BatchedViews(size=size, crop_scale=(0.3, 1.0), **IMAGENET).draw(n, 60, 80, 3, generator())
    boxes, flip = params["boxes"], params["flip"]
    out = resized_crops(ramps(n, 60, 80), boxes, size, flip)
    xs, ys = out[:, 0, 0, :], out[:, 1, :, 0]  # x along the first row, y down the first column
    # output pixel j samples x0 + (j + 0.5) w / size - 0.5 (mirrored when flipped); every crop is >= 8 px a side
    w = (xs[:, -1] - xs[:, 0]).abs() * size / (size - 1)
    h = (ys[:, -1] - ys[:, 0]) * size / (size - 1)
    x0 = torch.minimum(xs[:, 0], xs[:, -1]) + 0.5 - 0.5 * w / size
    y0 = ys[:, 0] + 0.5 - 0.5 * h / size
    torch.testing.assert_close(torch.stack([x0, y0, w, h], 1), boxes.double(), rtol=0, atol=1e-9)
    assert torch.equal(xs[:, -1] < xs[:, 0], flip)
    assert 0.3 < flip.double().mean() < 0.7
    assert len(torch.unique(boxes, dim=0)) > 0.9 * n  # a box of its own for (nearly) every sample


def bilinear(image: np.ndarray, box, size: int, flip: bool) -> np.ndarray:
    """The crop resampled by hand: pixel (i, j) samples (y0 + (i + .5) h / size - .5, x0 + (j + .5) w / size - .5),
    clamped to the image, mirrored in j when flipped."""
    x0, y0, w, h = box
    channels, height, width = image.shape
    out = np.empty((channels, size, size))
    for i in range(size):
        for j in range(size):
            jj = size - 1 - j if flip else j
            u = min(max(x0 + (jj + 0.5) * w / size - 0.5, 0), width - 1)
            v = min(max(y0 + (i + 0.5) * h / size - 0.5, 0), height - 1)
            u0, v0 = int(math.floor(u)), int(math.floor(v))
            u1, v1 = min(u0 + 1, width - 1), min(v0 + 1, height - 1)
            a, b = u - u0, v - v0
            out[:, i, j] = (
                (1 - a) * (1 - b) * image[:, v0, u0]
                + a * (1 - b) * image[:, v0, u1]
                + (1 - a) * b * image[:, v1, u0]
                + a * b * image[:, v1, u1]
            )
    return out


def test_resized_crop_is_bilinear_sampling_of_the_box():
    images = torch.rand(4, 3, 11, 13, generator=generator(), dtype=torch.float64)
    # a shrunk crop, an enlarged one at the corner (clamped samples), a non-square one, the whole image
    boxes = torch.tensor([[2.0, 1.0, 9.0, 8.0], [0.0, 0.0, 3.0, 4.0], [5.0, 3.0, 8.0, 5.0], [0.0, 0.0, 13.0, 11.0]])
    flip = torch.tensor([False, True, True, False])
    out = resized_crops(images, boxes, 6, flip)
    assert out.shape == (4, 3, 6, 6) and out.dtype == torch.float64
    for k in range(4):
        expected = bilinear(images[k].numpy(), boxes[k].tolist(), 6, bool(flip[k]))
        np.testing.assert_allclose(out[k].numpy(), expected, rtol=0, atol=1e-12)


# -- colour: parameters per sample, recovered -------------------------------------------


def test_brightness_of_a_constant_image_gives_back_each_factor():
    params = simclr_draw(500)
    images = torch.full((500, 3, 4, 4), 0.5)
    out = adjust_brightness(images, params["brightness"], params["jitter"])
    factor = out[:, 0, 0, 0] / 0.5
    expected = torch.where(params["jitter"], params["brightness"], 1.0)
    torch.testing.assert_close(factor, expected)
    assert distinct(factor[params["jitter"]]) == int(params["jitter"].sum())


def test_contrast_of_a_two_level_image_gives_back_each_factor():
    params = simclr_draw(500)
    images = torch.full((500, 3, 4, 4), 0.3)
    images[:, :, 2:] = 0.7  # mean 0.5: factors up to 1.8 stay within [0, 1]
    out = adjust_contrast(images, params["contrast"])
    factor = (out[:, 0, 3, 0] - out[:, 0, 0, 0]) / 0.4
    torch.testing.assert_close(factor, params["contrast"])
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.full((500,), 0.5))  # the mean stays
    assert distinct(factor) == 500


def test_contrast_blends_with_the_mean_of_the_grayscale():
    images = torch.rand(4, 3, 5, 6, generator=generator(), dtype=torch.float64) * 0.5 + 0.25
    images[:, 0] *= 0.5  # channels with different means
    factor = torch.tensor([0.2, 0.7, 1.0, 1.6], dtype=torch.float64)
    apply = torch.tensor([True, True, True, False])
    out = adjust_contrast(images, factor, apply)
    gray = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    f = torch.tensor([0.2, 0.7, 1.0, 1.0], dtype=torch.float64).view(4, 1, 1, 1)
    expected = (f * images + (1 - f) * gray.mean(dim=(1, 2)).view(4, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_saturation_gives_back_each_factor_and_keeps_the_gray():
    params = simclr_draw(500)
    images = torch.tensor([0.5, 0.4, 0.45]).view(1, 3, 1, 1).expand(500, 3, 4, 4)
    out = adjust_saturation(images, params["saturation"])
    gray = grayscale(images)
    factor = (out - gray)[:, 0, 0, 0] / (images - gray)[:, 0, 0, 0]
    torch.testing.assert_close(factor, params["saturation"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grayscale(out), gray)
    assert distinct(params["saturation"]) == 500


def test_hue_gives_back_each_shift():
    params = simclr_draw(500)
    rgb = (0.8, 0.3, 0.2)
    images = torch.tensor(rgb).view(1, 3, 1, 1).expand(500, 3, 2, 2)
    out = adjust_hue(images, params["hue"])
    before = colorsys.rgb_to_hsv(*rgb)[0]
    after = torch.tensor([colorsys.rgb_to_hsv(*pixel)[0] for pixel in out[:, :, 0, 0].tolist()])
    shifts = (after - before + 0.5) % 1 - 0.5
    torch.testing.assert_close(shifts, params["hue"], rtol=0, atol=1e-5)
    assert distinct(params["hue"]) == 500


def test_hue_matches_colorsys():
    pixels = torch.rand(6, 3, 5, 5, generator=generator(1), dtype=torch.float64)
    pixels[0, :, 0, 0] = 0.25  # gray: no hue
    pixels[1, :, 0, 0] = torch.tensor([0.6, 0.6, 0.2])  # ties for the largest channel
    pixels[2, :, 0, 0] = torch.tensor([0.0, 0.0, 0.0])
    shifts = torch.tensor([0.5, -0.5, 0.1, -0.37, 0.0, 0.29], dtype=torch.float64)
    out = adjust_hue(pixels, shifts)
    for k in range(6):
        for y in range(5):
            for x in range(5):
                h, s, v = colorsys.rgb_to_hsv(*pixels[k, :, y, x].tolist())
                expected = colorsys.hsv_to_rgb((h + float(shifts[k])) % 1, s, v)
                np.testing.assert_allclose(out[k, :, y, x].numpy(), expected, rtol=0, atol=1e-12)


def test_to_gray_makes_three_equal_channels_per_sample():
    params = simclr_draw(500)
    images = torch.rand(500, 3, 4, 4, generator=generator())
    out = to_gray(images, params["gray"])
    gray = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[params["gray"], c], gray[params["gray"]])
    assert torch.equal(out[~params["gray"]], images[~params["gray"]])
    assert 0.15 < params["gray"].double().mean() < 0.25


def test_blur_of_an_impulse_gives_back_each_sigma():
    params = simclr_draw(500)
    images = torch.zeros(500, 1, 9, 9, dtype=torch.float64)
    images[:, :, 4, 4] = 1
    out = gaussian_blur(images, params["sigma"], kernel_size=5)
    # the response is the outer product of the kernel with itself: k(1) / k(0) = exp(-1 / (2 sigma^2))
    ratio = out[:, 0, 4, 5] / out[:, 0, 4, 4]
    torch.testing.assert_close(torch.sqrt(-0.5 / ratio.log()), params["sigma"].double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), torch.ones(500, dtype=torch.float64))
    assert distinct(params["sigma"]) == 500


@pytest.mark.parametrize("kernel_size", [3, 7, None])
def test_blur_matches_opencv_separable_convolution(kernel_size):
    images = torch.rand(5, 3, 12, 10, generator=generator(), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0])
    apply = torch.tensor([True, True, True, False, True])
    out = gaussian_blur(images, sigma, apply, kernel_size)
    size = kernel_size or int(3.5 * 2.0) * 2 + 1  # PIL's size for the largest sigma: 15
    for k in range(5):
        if not apply[k]:
            assert torch.equal(out[k], images[k])
            continue
        kernel = fblur.create_gaussian_kernel_1d(float(sigma[k]), size)  # albumentations' GaussianBlur kernel
        image = images[k].permute(1, 2, 0).numpy()
        expected = cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(out[k].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)


def test_solarize_of_a_ramp_gives_back_each_threshold():
    threshold = torch.rand(300, generator=generator()) * 0.6 + 0.2
    ramp = torch.linspace(0, 1, 1001).view(1, 1, 1, -1).expand(300, 1, 1, 1001)
    apply = torch.rand(300, generator=generator(1)) < 0.5
    out = solarize(ramp, threshold, apply)
    inverted = out != ramp
    first = torch.where(inverted.any(-1), inverted.int().argmax(-1), -1).view(300)  # first inverted pixel
    assert torch.equal(first >= 0, apply)
    recovered = ramp[0, 0, 0, first[apply]]
    assert ((recovered >= threshold[apply]) & (recovered - 0.001 < threshold[apply])).all()
    above = ramp[apply] >= threshold[apply].view(-1, 1, 1, 1)
    torch.testing.assert_close(out[apply], torch.where(above, 1 - ramp[apply], ramp[apply]))


# -- ranges: the albumentations path's -------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
def test_drawn_parameters_cover_the_albumentations_ranges(cls):
    params = cls.Params(**IMAGENET)
    ops = view_ops(params, 32, params.crop_scale, color=True)
    crop, flip, jitter, gray, blur, solar = ops
    n = 20000
    drawn = BatchedViews(params).draw(n, 32, 32, 3, generator())
    for key in ("brightness", "contrast", "saturation", "hue"):
        low, high = getattr(jitter, key)
        values = drawn[key]
        margin = 0.01 * (high - low)
        assert low <= values.min() < low + margin and high - margin < values.max() <= high, key
    low, high = blur.sigma_limit
    assert low <= drawn["sigma"].min() < low + 0.01 and high - 0.01 < drawn["sigma"].max() <= high
    for key, op in (("flip", flip), ("jitter", jitter), ("gray", gray), ("blur", blur), ("solarize", solar)):
        assert abs(drawn[key].double().mean() - op.p) < 0.02, key
    x0, y0, w, h = drawn["boxes"].double().unbind(1)
    area = w * h / 32**2
    assert crop.scale[0] - 0.02 < area.min() < crop.scale[0] + 0.02 and area.max() == 1.0
    aspect = w / h  # rounding to whole pixels widens the range a little
    assert crop.ratio[0] * 0.9 < aspect.min() < crop.ratio[0] * 1.05
    assert crop.ratio[1] / 1.05 < aspect.max() < crop.ratio[1] / 0.9


def test_parameters_come_from_a_params_object_or_keywords():
    mocov2 = BatchedViews(MoCoV2Views.Params(**IMAGENET))
    assert (mocov2.params.brightness, mocov2.params.hue, mocov2.params.crop_scale) == (0.4, 0.1, (0.2, 1.0))
    assert BatchedViews(SimCLRViews.Params(), **IMAGENET, hue=0.0).params.hue == 0.0
    multicrop = MultiCrop.Params(**IMAGENET)  # its crops have other names: pass them as keywords
    small = BatchedViews(multicrop, size=16, crop_scale=multicrop.small_scale)
    assert small.params.crop_scale == (0.05, 0.14) and small.params.blur_prob == multicrop.blur_prob
    with pytest.raises(ValueError, match="mean and std"):
        BatchedViews(SimCLRViews.Params())
    with pytest.raises(ValueError):
        BatchedViews(**IMAGENET, crop_scale=(0.5, 2.0))  # ViewParams' validation


def test_grayscale_images_get_no_colour_changes():
    drawn = simclr_draw(100, channels=1)
    assert (drawn["saturation"] == 1).all() and (drawn["hue"] == 0).all() and not drawn["gray"].any()
    images = torch.rand(100, 1, 6, 6, generator=generator())
    assert adjust_saturation(images, torch.full((100,), 1.8)) is images
    assert adjust_hue(images, torch.full((100,), 0.3)) is images
    assert to_gray(images) is images


# -- range, dtype and shape ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_operation_keeps_range_dtype_and_shape(dtype, channels):
    n = 64
    images = torch.rand(n, channels, 10, 12, generator=generator(), dtype=dtype)
    images[:, :, 0] = 0
    images[:, :, 1] = 1
    high = torch.full((n,), 1.8)  # SimCLR's strongest factors
    drawn = simclr_draw(n, channels)
    ops = {
        "brightness": lambda x: adjust_brightness(x, high, drawn["jitter"]),
        "contrast": lambda x: adjust_contrast(x, high),
        "saturation": lambda x: adjust_saturation(x, high),
        "hue": lambda x: adjust_hue(x, drawn["hue"]),
        "to_gray": lambda x: to_gray(x, drawn["gray"]),
        "blur": lambda x: gaussian_blur(x, drawn["sigma"], drawn["blur"], 5),
        "solarize": lambda x: solarize(x, 0.5, drawn["solarize"] | True),
    }
    for name, op in ops.items():
        out = op(images)
        assert out.dtype == dtype and out.shape == images.shape, name
        assert out.min() >= 0 and out.max() <= 1, name
    out = resized_crops(images, drawn["boxes"], 7, drawn["flip"])
    assert out.dtype == dtype and out.shape == (n, channels, 7, 7) and out.min() >= 0 and out.max() <= 1


# -- seeds ----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_views_and_another_seed_other_views():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=generator())
    views = BatchedViews(**IMAGENET, solarize_prob=0.2)
    first, again, other = views(images, generator(7)), views(images, generator(7)), views(images, generator(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # one generator drawn twice gives two different sets of views
    g = generator(7)
    assert torch.equal(views(images, g), first) and not torch.allclose(views(images, g), first)


# -- whole views of real photos ---------------------------------------------------------


def photo_batch(n: int) -> torch.Tensor:
    """(n, 3, 32, 32) uint8: scikit-image's astronaut, chelsea and coffee photos, centre-cropped square and resized."""
    images = []
    for photo in (photos.astronaut(), photos.chelsea(), photos.coffee()):
        side = min(photo.shape[:2])
        top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
        small = resize(photo[top : top + side, left : left + side], (32, 32), anti_aliasing=True)
        images.append(torch.from_numpy(np.round(small * 255).astype(np.uint8)).permute(2, 0, 1))
    return torch.stack([images[k % 3] for k in range(n)])


@pytest.mark.parametrize("cls", PIPELINES)
@pytest.mark.parametrize("size", [None, 24])
def test_views_of_real_colour_photos(cls, size):
    images = photo_batch(30)
    views = BatchedViews(cls.Params(size=size, **IMAGENET), solarize_prob=0.2)
    out = views(images, generator())
    side = size or 32
    assert out.shape == (30, 3, side, side) and out.dtype == torch.float32 and torch.isfinite(out).all()
    pixels = out * torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1) + torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5
    same_photo = out[0::3]  # ten views of the astronaut: ten different views
    assert all(not torch.allclose(same_photo[i], same_photo[j]) for i in range(10) for j in range(i))


def test_views_of_a_real_grayscale_photo():
    camera = resize(photos.camera(), (28, 28), anti_aliasing=True)
    images = torch.from_numpy(np.round(camera * 255).astype(np.uint8)).view(1, 1, 28, 28).expand(20, 1, 28, 28)
    out = BatchedViews(SimCLRViews.Params(size=16, **GRAY))(images, generator())
    assert out.shape == (20, 1, 16, 16) and out.dtype == torch.float32 and torch.isfinite(out).all()
    pixels = out * GRAY["std"][0] + GRAY["mean"][0]
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5
    assert len(torch.unique(out.flatten(1), dim=0)) == 20


def test_views_are_the_operations_in_order():
    images = photo_batch(12)
    views = BatchedViews(SimCLRViews.Params(size=20, solarize_prob=0.5, **IMAGENET))
    params = views.draw(12, 32, 32, 3, generator())
    x = resized_crops(images / 255, params["boxes"], 20, params["flip"])
    x = adjust_brightness(x, params["brightness"], params["jitter"])
    x = adjust_contrast(x, params["contrast"], params["jitter"])
    x = adjust_saturation(x, params["saturation"], params["jitter"])
    x = adjust_hue(x, params["hue"], params["jitter"])
    x = to_gray(x, params["gray"])
    x = gaussian_blur(x, params["sigma"], params["blur"], kernel_size=3)  # view_ops' kernel for 20 px views
    x = solarize(x, 0.5, params["solarize"])
    mean, std = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1), torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(views.apply(images, params), (x - mean) / std)
    assert views(images, generator()).equal(views.apply(images, params))


def test_views_without_random_operations_are_the_normalised_images():
    images = photo_batch(6)
    identity = dict(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_prob=0.0,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
    )
    out = BatchedViews(**IMAGENET, **identity)(images, generator())
    mean, std = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1), torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (images / 255 - mean) / std, rtol=0, atol=1e-5)


def test_channel_count_must_match_the_normalisation():
    with pytest.raises(ValueError, match="3/3 values but the images have 1 channel$"):
        BatchedViews(**IMAGENET)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), generator())
    with pytest.raises(ValueError, match="not square"):
        BatchedViews(**IMAGENET)(torch.zeros(2, 3, 8, 9, dtype=torch.uint8), generator())
