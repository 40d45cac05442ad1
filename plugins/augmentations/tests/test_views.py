"""The ``simclr`` and ``mocov2`` view pipelines on a real grayscale
Fashion-MNIST image and real colour photos: layout, normalisation, eval
resizing, seeding, and what each probability switch does."""

from __future__ import annotations

import cv2
import numpy as np
import pydantic
import pytest
import torch
from skimage import data as photos
from sslx_augmentations.views import MoCoV2Views, SimCLRViews

import sslx

PIPELINES = [SimCLRViews, MoCoV2Views]
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# every random operation off: a view is the image itself
IDENTITY = dict(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    grayscale_prob=0.0,
    blur_prob=0.0,
    solarize_prob=0.0,
)


COLOUR_VARYING = sslx.DataInfo(channels=3, image_size=None, num_classes=None, **IMAGENET)


def normalised(image: np.ndarray, mean, std) -> torch.Tensor:
    """(img / 255 - mean) / std in float64, channels first."""
    x = torch.tensor(np.ascontiguousarray(image), dtype=torch.float64).permute(2, 0, 1) / 255
    return (x - torch.tensor(mean, dtype=torch.float64)[:, None, None]) / torch.tensor(std, dtype=torch.float64)[
        :, None, None
    ]


# -- layout -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
@pytest.mark.parametrize("size", [None, 16, 40])
def test_grayscale_views_keep_one_channel(cls, size, fmnist):
    image, info = fmnist
    aug = cls(cls.Params(size=size), info)
    aug.seed(0)
    side = size or 28
    assert aug.out_channels == 1
    for v in range(3):
        view = aug.view(image, v)
        assert view.dtype == torch.float32 and view.shape == (1, side, side)
        assert torch.isfinite(view).all()
    assert aug.eval(image).shape == (1, side, side) and aug.eval(image).dtype == torch.float32


@pytest.mark.parametrize("cls", PIPELINES)
@pytest.mark.parametrize("size", [32, 96])
def test_colour_views_keep_three_channels(cls, size):
    image = photos.chelsea()  # 300x451, larger than the views
    aug = cls(cls.Params(size=size), COLOUR_VARYING)
    aug.seed(0)
    assert aug.out_channels == 3
    for v in range(3):
        view = aug.view(image, v)
        assert view.dtype == torch.float32 and view.shape == (3, size, size)
    assert aug.eval(image).shape == (3, size, size)


def test_grayscale_input_given_as_2d_array(fmnist):
    image, info = fmnist
    aug = SimCLRViews(SimCLRViews.Params(), info)
    torch.testing.assert_close(aug.eval(image[..., 0]), aug.eval(image), rtol=0, atol=0)


# -- normalisation and eval ---------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
def test_eval_is_the_normalised_image_when_sizes_match(cls, fmnist, photo64):
    for image, info in (fmnist, photo64):
        out = cls(cls.Params(), info).eval(image)
        torch.testing.assert_close(out.double(), normalised(image, info.mean, info.std), rtol=0, atol=1e-6)


def test_params_mean_std_override_the_dataset(fmnist):
    image, info = fmnist
    out = SimCLRViews(SimCLRViews.Params(mean=(0.1,), std=(0.7,)), info).eval(image)
    torch.testing.assert_close(out.double(), normalised(image, (0.1,), (0.7,)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("photo", ["chelsea", "coffee", "astronaut"])
@pytest.mark.parametrize("size", [32, 100])
def test_eval_of_a_larger_photo_is_resize_then_center_crop(photo, size):
    """The shorter side is resized (bilinear) to `size`, then the central
    size x size square is kept."""
    image = getattr(photos, photo)()
    out = SimCLRViews(SimCLRViews.Params(size=size), COLOUR_VARYING).eval(image)
    assert out.shape == (3, size, size)
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = round(h * scale), round(w * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    expected = normalised(resized[top : top + size, left : left + size], IMAGENET["mean"], IMAGENET["std"])
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    if nw > size:  # a left-aligned crop would be something else
        assert not torch.allclose(
            out.double(), normalised(resized[:size, :size], IMAGENET["mean"], IMAGENET["std"]), atol=1e-3
        )


# -- seeding --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
def test_same_seed_same_views_different_seed_different_views(cls, fmnist):
    image, info = fmnist

    def views(aug, seed):
        aug.seed(seed)
        return [aug.view(image, v) for v in range(4)]

    first = cls(cls.Params(), info)
    a = views(first, 123)
    b = views(first, 123)  # same instance, reseeded after drawing
    c = views(cls(cls.Params(), info), 123)  # a fresh instance (another worker)
    d = views(first, 124)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, c))
    assert not any(torch.equal(x, y) for x, y in zip(a, d))


@pytest.mark.parametrize("cls", PIPELINES)
def test_successive_views_of_one_image_differ(cls, fmnist, photo64):
    for image, info in (fmnist, photo64):
        aug = cls(cls.Params(), info)
        aug.seed(7)
        views = [aug.view(image, 0) for _ in range(6)]
        for i in range(len(views)):
            for j in range(i + 1, len(views)):
                assert not torch.equal(views[i], views[j])


def test_large_seeds_are_accepted(fmnist):
    """The host derives 63-bit seeds: they are accepted and reproducible."""
    image, info = fmnist
    aug = SimCLRViews(SimCLRViews.Params(), info)
    aug.seed(2**62 + 5)
    first = aug.view(image, 0)
    aug.seed(2**62 + 5)
    assert torch.equal(first, aug.view(image, 0))


# -- what the switches do ----------------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
def test_all_random_operations_off_gives_the_image(cls, fmnist, photo64):
    for image, info in (fmnist, photo64):
        aug = cls(cls.Params(**IDENTITY), info)
        aug.seed(3)
        for v in range(3):
            torch.testing.assert_close(
                aug.view(image, v).double(), normalised(image, info.mean, info.std), rtol=0, atol=1e-6
            )


@pytest.mark.parametrize("cls", PIPELINES)
def test_flip_prob_one_always_flips(cls, fmnist, photo64):
    """jitter off, flip_prob 1, full square crop: every view is the
    horizontally flipped normalised image."""
    for image, info in (fmnist, photo64):
        aug = cls(cls.Params(**{**IDENTITY, "flip_prob": 1.0}), info)
        expected = normalised(image[:, ::-1], info.mean, info.std)
        assert not torch.allclose(expected, normalised(image, info.mean, info.std))  # the image is not symmetric
        for seed in range(25):
            aug.seed(seed)
            torch.testing.assert_close(aug.view(image, 0).double(), expected, rtol=0, atol=1e-6)


def test_flip_prob_half_flips_about_half_the_views(fmnist):
    image, info = fmnist
    aug = SimCLRViews(SimCLRViews.Params(**{**IDENTITY, "flip_prob": 0.5}), info)
    plain, flipped = normalised(image, info.mean, info.std), normalised(image[:, ::-1], info.mean, info.std)
    aug.seed(0)
    outcomes = []
    for _ in range(400):
        view = aug.view(image, 0).double()
        is_plain, is_flipped = torch.allclose(view, plain, atol=1e-6), torch.allclose(view, flipped, atol=1e-6)
        assert is_plain != is_flipped  # each view is exactly one of the two
        outcomes.append(is_flipped)
    assert 0.4 < np.mean(outcomes) < 0.6  # binomial(400, 0.5): 4 standard deviations


def test_grayscale_prob_one_gives_equal_channels(photo64):
    image, info = photo64
    aug = SimCLRViews(SimCLRViews.Params(**{**IDENTITY, "grayscale_prob": 1.0}), info)
    aug.seed(0)
    mean, std = torch.tensor(info.mean)[:, None, None], torch.tensor(info.std)[:, None, None]
    pixels = aug.view(image, 0) * std + mean  # undo the normalisation
    torch.testing.assert_close(pixels[0], pixels[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels[1], pixels[2], rtol=0, atol=1e-5)
    gray = torch.tensor(image, dtype=torch.float64) @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64) / 255
    assert (pixels[0].double() - gray).abs().max() < 1.5 / 255


def test_solarize_prob_one_inverts_bright_pixels(fmnist):
    image, info = fmnist
    aug = SimCLRViews(SimCLRViews.Params(**{**IDENTITY, "solarize_prob": 1.0}, mean=(0.0,), std=(1.0,)), info)
    aug.seed(0)
    out = (aug.view(image, 0)[0] * 255).round().numpy().astype(int)
    x = image[..., 0].astype(int)
    assert (x < 120).any() and (x > 136).any()
    np.testing.assert_array_equal(out[x < 120], x[x < 120])
    np.testing.assert_array_equal(out[x > 136], 255 - x[x > 136])


def test_jitter_changes_pixel_values_but_not_geometry(fmnist):
    """With only colour jitter on (p=1), every view changes the pixel values,
    but the bright garment stays brighter than the background."""
    image, info = fmnist
    aug = SimCLRViews(SimCLRViews.Params(**{**IDENTITY, "jitter_prob": 1.0}, mean=(0.0,), std=(1.0,)), info)
    aug.seed(1)
    views = [aug.view(image, 0)[0] for _ in range(5)]
    original = torch.tensor(image[..., 0], dtype=torch.float32) / 255
    assert all(not torch.allclose(v, original, atol=1e-3) for v in views)
    mask = original > 0.3
    assert all(v[mask].mean() > v[~mask].mean() for v in views)


# -- parameters and errors ----------------------------------------------------------------


@pytest.mark.parametrize("cls", PIPELINES)
@pytest.mark.parametrize(
    "bad",
    [
        {"crop_scale": (0.9, 0.5)},
        {"crop_scale": (0.5, 1.2)},
        {"crop_scale": (0.0, 1.0)},
        {"crop_ratio": (1.5, 0.5)},
        {"blur_sigma": (2.0, 0.1)},
        {"size": 4},
        {"flip_prob": 1.5},
        {"hue": 0.6},
        {"rotation": 10},
    ],
)
def test_params_reject_invalid_values(cls, bad):
    with pytest.raises(pydantic.ValidationError):
        cls.Params(**bad)


def test_published_defaults():
    simclr, mocov2 = SimCLRViews.Params(), MoCoV2Views.Params()
    assert simclr.crop_scale == (0.08, 1.0) and mocov2.crop_scale == (0.2, 1.0)
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (0.8, 0.8, 0.8, 0.2)
    assert (mocov2.brightness, mocov2.contrast, mocov2.saturation, mocov2.hue) == (0.4, 0.4, 0.4, 0.1)


@pytest.mark.parametrize("cls", PIPELINES)
@pytest.mark.parametrize("image_size", [None, (28, 32)])
def test_size_is_required_when_images_are_not_one_square_size(cls, image_size):
    info = sslx.DataInfo(channels=3, image_size=image_size, num_classes=None, **IMAGENET)
    with pytest.raises(sslx.UserError, match="augmentation.size"):
        cls(cls.Params(), info)
    assert cls(cls.Params(size=24), info).size == 24


@pytest.mark.parametrize("params", [{"mean": (0.5, 0.5, 0.5)}, {"std": (0.2, 0.2)}])
def test_mean_std_must_match_the_channels(params, fmnist):
    _, info = fmnist
    with pytest.raises(sslx.UserError, match="channels"):
        SimCLRViews(SimCLRViews.Params(**params), info)
