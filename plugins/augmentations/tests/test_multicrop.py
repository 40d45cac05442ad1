"""The ``multicrop`` pipeline (SwAV's multi-crop) on a real grayscale
Fashion-MNIST image and a real colour photo: which views are large and
which small, their sizes and channels, the eval view, seeding (including
the independent streams of the large and small views), and the errors a
user can meet."""

from __future__ import annotations

import cv2
import numpy as np
import pydantic
import pytest
import torch
from skimage import data as photos
from sslx_augmentations.multicrop import MultiCrop

import sslx

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# every random operation off and whole-image crops: large views are the image, small ones the image resized
IDENTITY = dict(
    large_scale=(1.0, 1.0),
    small_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    grayscale_prob=0.0,
    blur_prob=0.0,
    solarize_prob=0.0,
)


def normalised(image: np.ndarray, mean, std) -> torch.Tensor:
    """(img / 255 - mean) / std in float64, channels first."""
    if image.ndim == 2:
        image = image[..., None]
    x = torch.tensor(np.ascontiguousarray(image), dtype=torch.float64).permute(2, 0, 1) / 255
    return (x - torch.tensor(mean, dtype=torch.float64)[:, None, None]) / torch.tensor(std, dtype=torch.float64)[
        :, None, None
    ]


def all_views(aug: MultiCrop, image: np.ndarray, seed: int) -> list[torch.Tensor]:
    aug.seed(seed)
    return [aug.view(image, v) for v in range(aug.num_views)]


# -- layout -------------------------------------------------------------------------


@pytest.mark.parametrize("n_large,n_small", [(2, 4), (2, 0), (3, 6), (1, 2)])
def test_large_views_come_first_then_small_ones(n_large, n_small, fmnist):
    image, info = fmnist
    aug = MultiCrop(MultiCrop.Params(n_large=n_large, n_small=n_small), info)
    assert aug.num_views == n_large + n_small and aug.out_channels == 1
    views = all_views(aug, image, seed=0)
    assert len(views) == n_large + n_small
    for v, view in enumerate(views):
        side = 28 if v < n_large else 16
        assert view.dtype == torch.float32 and view.shape == (1, side, side), v
        assert torch.isfinite(view).all()


def test_default_small_size_is_four_sevenths_of_the_large_side(fmnist, photo64):
    image, info = fmnist
    aug = MultiCrop(MultiCrop.Params(), info)
    assert (aug.size, aug.small_size) == (28, 16)
    aug.seed(0)
    assert aug.view(image, 5).shape == (1, 16, 16)
    assert MultiCrop(MultiCrop.Params(), photo64[1]).small_size == round(64 * 4 / 7)  # 37
    assert MultiCrop(MultiCrop.Params(large_size=224), photo64[1]).small_size == 128


def test_explicit_sizes_on_a_colour_photo(photo64):
    image, info = photo64
    aug = MultiCrop(MultiCrop.Params(n_large=2, n_small=3, large_size=48, small_size=24), info)
    assert aug.out_channels == 3
    shapes = [tuple(v.shape) for v in all_views(aug, image, seed=1)]
    assert shapes == [(3, 48, 48)] * 2 + [(3, 24, 24)] * 3
    assert aug.eval(image).shape == (3, 48, 48)


def test_with_all_random_operations_off_large_views_are_the_image_and_small_views_its_resized_copy(fmnist, photo64):
    """Whole-image crops, no flip/colour/blur: a large view is the normalised
    image, a small view the image resized (bilinear) to small_size."""
    for image, info in (fmnist, photo64):
        side = info.image_size[0]
        small = round(side * 4 / 7)
        aug = MultiCrop(MultiCrop.Params(**IDENTITY, small_size=small), info)
        views = all_views(aug, image, seed=3)
        resized = cv2.resize(image, (small, small), interpolation=cv2.INTER_LINEAR)
        for v in range(2):
            torch.testing.assert_close(views[v].double(), normalised(image, info.mean, info.std), rtol=0, atol=1e-6)
        for v in range(2, 6):
            torch.testing.assert_close(views[v].double(), normalised(resized, info.mean, info.std), rtol=0, atol=1e-5)


def test_small_crops_cover_less_of_the_image_than_large_ones(fmnist):
    """With colour off, a small crop of 20% of the image is zoomed in: its
    mean brightness varies more across views than that of full-image
    crops, which all see the whole garment."""
    image, info = fmnist
    params = {**IDENTITY, "large_scale": (1.0, 1.0), "small_scale": (0.2, 0.2), "n_small": 4}
    aug = MultiCrop(MultiCrop.Params(**params), info)
    large_means, small_means = [], []
    for seed in range(20):
        views = all_views(aug, image, seed)
        large_means += [float(v.mean()) for v in views[:2]]
        small_means += [float(v.mean()) for v in views[2:]]
    assert np.std(large_means) < 1e-6  # the same whole image every time
    assert np.std(small_means) > 0.05


def test_eval_view_is_the_large_size(fmnist):
    image, info = fmnist
    out = MultiCrop(MultiCrop.Params(), info).eval(image)
    assert out.shape == (1, 28, 28)
    torch.testing.assert_close(out.double(), normalised(image, info.mean, info.std), rtol=0, atol=1e-6)
    smaller = MultiCrop(MultiCrop.Params(large_size=20, small_size=12), info)
    assert smaller.eval(image).shape == (1, 20, 20)
    smaller.seed(0)
    assert smaller.view(image, 0).shape == (1, 20, 20) and smaller.view(image, 2).shape == (1, 12, 12)


# -- seeding ---------------------------------------------------------------------------


def test_same_seed_same_views_different_seed_different_views(fmnist):
    image, info = fmnist
    first = MultiCrop(MultiCrop.Params(), info)
    a = all_views(first, image, 123)
    b = all_views(first, image, 123)  # same instance, reseeded after drawing
    c = all_views(MultiCrop(MultiCrop.Params(), info), image, 123)  # a fresh instance (another worker)
    d = all_views(first, image, 124)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, c))
    assert not any(torch.equal(x, y) for x, y in zip(a, d))


def test_views_within_a_seed_differ(fmnist):
    image, info = fmnist
    views = all_views(MultiCrop(MultiCrop.Params(n_large=3, n_small=4), info), image, 7)
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            if views[i].shape == views[j].shape:
                assert not torch.equal(views[i], views[j]), (i, j)


def test_small_views_do_not_depend_on_how_many_large_views_were_drawn(fmnist):
    """The large and small views draw from separate random streams: after
    seeding, the small views are the same whether or not (and how many)
    large views were made first, and the other way round."""
    image, info = fmnist
    aug = MultiCrop(MultiCrop.Params(n_large=2, n_small=4), info)
    reference = all_views(aug, image, 42)

    aug.seed(42)
    smalls_first = [aug.view(image, v) for v in range(2, 6)]  # no large view drawn before
    larges_after = [aug.view(image, v) for v in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(smalls_first, reference[2:]))
    assert all(torch.equal(x, y) for x, y in zip(larges_after, reference[:2]))

    aug.seed(42)
    for _ in range(5):
        aug.view(image, 0)  # five extra large views
    assert torch.equal(aug.view(image, 2), reference[2])


# -- errors and parameters -----------------------------------------------------------------


@pytest.mark.parametrize("small_size", [28, 40])
def test_small_size_not_below_the_large_size_is_a_user_error(small_size, fmnist):
    _, info = fmnist
    with pytest.raises(sslx.UserError) as err:
        MultiCrop(MultiCrop.Params(small_size=small_size), info)
    message = str(err.value)
    assert "augmentation 'multicrop'" in message and f"small_size ({small_size})" in message
    assert "(28)" in message and "n_small to 0" in message
    # without small views the small size does not matter
    assert MultiCrop(MultiCrop.Params(small_size=small_size, n_small=0), info).num_views == 2


@pytest.mark.parametrize("view", [6, 9, -1])
def test_view_index_out_of_range_is_a_user_error(view, fmnist):
    image, info = fmnist
    aug = MultiCrop(MultiCrop.Params(n_large=2, n_small=4), info)
    aug.seed(0)
    with pytest.raises(sslx.UserError, match=r"makes 6 views .* set sampler.views to 6"):
        aug.view(image, view)


def test_large_size_is_required_when_images_vary_in_size():
    info = sslx.DataInfo(channels=3, image_size=None, num_classes=None, **IMAGENET)
    with pytest.raises(sslx.UserError, match="augmentation.large_size"):
        MultiCrop(MultiCrop.Params(), info)
    aug = MultiCrop(MultiCrop.Params(large_size=64), info)
    assert (aug.size, aug.small_size) == (64, 37)
    aug.seed(0)
    shapes = [tuple(aug.view(photos.coffee(), v).shape) for v in (0, 2)]
    assert shapes == [(3, 64, 64), (3, 37, 37)]


@pytest.mark.parametrize(
    "bad",
    [
        {"large_scale": (0.9, 0.5)},
        {"large_scale": (0.5, 1.2)},
        {"large_scale": (0.0, 1.0)},
        {"small_scale": (0.5, 0.2)},
        {"small_scale": (0.05, 1.5)},
        {"small_scale": (-0.1, 0.2)},
        {"n_large": 0},
        {"n_small": -1},
        {"n_large": 17},
        {"small_size": 4},
        {"large_size": 7},
        {"crop_ratio": (2.0, 1.0)},
        {"flip_prob": 1.5},
        {"crop_scale": (0.5, 1.0)},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        MultiCrop.Params(**bad)


def test_paper_defaults():
    p = MultiCrop.Params()
    assert (p.n_large, p.n_small, p.large_size, p.small_size) == (2, 4, None, None)
    assert p.large_scale == (0.14, 1.0) and p.small_scale == (0.05, 0.14)
    assert (p.brightness, p.contrast, p.saturation, p.hue, p.blur_prob) == (0.8, 0.8, 0.8, 0.2, 0.5)
