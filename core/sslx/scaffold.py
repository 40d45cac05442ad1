"""``sslx new-plugin``: a new plugin distribution with one working component.

:func:`new_plugin` writes ``sslx-<name>/``, a complete installable
distribution: ``pyproject.toml`` with the ``sslx`` entry point, the package
``src/sslx_<name>/`` holding one example component of the chosen kind
(registered through its hook, with real behaviour: the plugin works as
generated), an experiment that trains it with first-party components, tests
built on the conformance kit (:mod:`sslx.testing` and its pytest fixtures)
and a README. The example is a starting point to edit; its tests say what it
must keep doing.

Each kind's example is one :class:`Example` (the module and its behaviour
test); the files around it are shared templates. Templates are
:class:`string.Template` s: ``$name`` (the registry name), ``$Cls`` (the
class), ``$dist`` (the distribution's name after ``sslx-``) and ``$kind``.
"""

from __future__ import annotations

import copy
import json
import keyword
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

from packaging.version import Version

import sslx
from sslx.config import COMPONENT_SECTIONS
from sslx.errors import UserError
from sslx.plugins import GROUP, REGISTRARS, PluginHost

NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")  # also a distribution name once "_" becomes "-"


@dataclass(frozen=True)
class Example:
    """One kind's example component and how the generated files use it."""

    summary: str  # one line: the distribution's description
    requires: tuple[str, ...]  # dependencies besides sslx and torch
    params: dict[str, Any]  # its parameters in the generated experiment (with first-party parts)
    tiny_params: dict[str, Any]  # its parameters in the test run with the conformance kit's tiny parts
    module: Template  # src/sslx_<name>/__init__.py
    test_imports: Template  # the test file's imports besides the standard library's: the package, the kit, ...
    test: Template  # the behaviour test (a test function), first in tests/test_<name>.py


# ----------------------------------------------------------------------------
# the examples, one per kind

OBJECTIVE = Example(
    summary="Alignment and uniformity on the hypersphere (Wang & Isola, 2020) as an sslx objective",
    requires=(),
    params={},
    tiny_params={},
    module=Template('''"""The objective '$name': alignment and uniformity on the hypersphere
(Wang & Isola, 2020, arXiv:2005.10242).

Made with `sslx new-plugin $name --kind objective`. The objective's
contract is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.distributed import gather
from sslx.modules import projection_mlp


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The alignment loss (alpha = 2): the mean squared distance between the
    two views' embeddings of each sample, ``(B, D)`` unit vectors each; 0
    when every pair coincides."""
    return (z1 - z2).pow(2).sum(dim=1).mean()


def uniformity(z: torch.Tensor, t: float) -> torch.Tensor:
    """The uniformity loss: the log of the mean Gaussian potential
    ``exp(-t |z_i - z_j|^2)`` over all pairs ``i < j`` of the rows of ``z``
    (``(N, D)`` unit vectors, N >= 2). It is lowest when the points spread
    evenly over the sphere; two opposite points give ``-4 t``."""
    squared = 2 - 2 * z @ z.T  # |a - b|^2 of unit vectors
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    return torch.logsumexp(-t * squared[i, j], dim=0) - math.log(len(i))


class $Cls(sslx.Objective):
    """Alignment and uniformity on the hypersphere (Wang & Isola, 2020,
    arXiv:2005.10242): both views go through the encoder and a projection
    MLP onto the unit sphere; the loss pulls the two views of each sample
    together (alignment) and spreads all embeddings evenly over the sphere
    (uniformity, over the global batch under DDP). Needs a sampler with 2
    views; logs both terms as train.alignment and train.uniformity."""

    name = "$name"

    class Params(sslx.Params):
        uniformity_weight: float = Field(1.0, ge=0, description="Weight of the uniformity term (the paper's lambda, 1 "
                                                                "in most of its experiments).")
        t: float = Field(2.0, gt=0, description="Sharpness t of the uniformity term's Gaussian potential (the paper "
                                                "uses 2).")
        hidden_dim: int | None = Field(None, ge=1, description="Hidden width of the projection MLP (null: the "
                                                               "encoder's output size).")
        dim: int = Field(128, ge=2, description="Size of the embeddings on the unit sphere.")

    def __init__(self, params: Params, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        self.projector = projection_mlp(encoder.out_dim, params.hidden_dim or encoder.out_dim, params.dim)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        z = self.projector(self.encoder(torch.cat(batch.views)))
        with torch.autocast(z.device.type, enabled=False):  # the loss in float32, also when training in bf16
            z1, z2 = F.normalize(z.float(), dim=1).chunk(2)
            align = alignment(z1, z2)
            t = self.params.t
            uniform = (uniformity(gather(z1), t) + uniformity(gather(z2), t)) / 2
            loss = align + self.params.uniformity_weight * uniform
        return sslx.ObjectiveOutput(loss=loss, embeddings=z1.detach(),
                                    metrics={"alignment": align.detach(), "uniformity": uniform.detach()})


@sslx.hookimpl
def sslx_register_objectives(register):
    register($Cls)
'''),
    test_imports=Template('''import torch

import sslx_$name
from sslx.testing import conformance
from sslx_$name import $Cls, alignment, uniformity
'''),
    test=Template('''def test_the_two_terms_on_points_worked_out_by_hand():
    """Identical views are perfectly aligned; two opposite points on the
    sphere are 2 apart, so their potential is exp(-4t); a collapsed batch
    has the highest uniformity loss, 0."""
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert alignment(z, z).item() == 0
    assert alignment(z, z.flip(0)).item() == 4.0
    assert uniformity(z, t=2.0).item() == -8.0
    assert abs(uniformity(torch.tensor([[0.0, 1.0]] * 3), t=2.0).item()) < 1e-6
'''),
)

SAMPLER = Example(
    summary="A pair sampler of global and local views (a whole image and zoomed-in crops of it) for sslx",
    requires=("numpy>=1.24",),
    params={"views": 2},
    tiny_params={"views": 2},
    module=Template('''"""The pair sampler '$name': global and local views of one image.

Made with `sslx new-plugin $name --kind sampler`. The sampler's contract is
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


class $Cls(sslx.PairSampler):
    """Global and local views: view 0 of an image is the whole image, every
    further view a zoomed-in square crop of it (a random share zoom_area of
    its area, at a random place, resized back to the image's size), each then
    augmented. The views of an image are positives, other images negatives,
    so the encoder learns to match details with the whole they belong to
    (the local-to-global views of DINO, Caron et al., 2021)."""

    name = "$name"

    class Params(sslx.Params):
        views: int = Field(2, ge=2, le=16, description="Views per image: the whole image, then views - 1 "
                                                       "zoomed-in crops.")
        zoom_area: tuple[float, float] = Field((0.2, 0.5), description="Range [low, high] of a crop's share of the "
                                                                         "image's area, drawn for each crop.")

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
    register($Cls)
'''),
    test_imports=Template('''import numpy as np
import torch

import sslx
import sslx_$name
from sslx.testing import PixelViews, conformance
from sslx_$name import $Cls
'''),
    test=Template('''def test_view_0_is_the_whole_image_and_the_others_zoom_into_it():
    """On a 16x16 image whose pixel values are their positions (y * 16 + x),
    through an augmentation that changes nothing: a crop of a quarter of the
    area is an 8x8 window, shown at 16x16."""
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    info = sslx.DataInfo(channels=1, image_size=(16, 16), mean=(0.5,), std=(0.25,), num_classes=None)
    split = sslx.ArraySplit(image[None], None, info)
    sampler = $Cls($Cls.Params(views=3, zoom_area=(0.25, 0.25)))
    views = sampler.sample(split, 0, PixelViews(sslx.NoParams(), info))
    assert len(views) == 3 and torch.equal(views[0][0], torch.from_numpy(image[..., 0]).float())
    for view in views[1:]:
        rows, cols = np.divmod(view[0].numpy().astype(int), 16)  # where each pixel comes from
        assert view.shape == (1, 16, 16)
        assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7
'''),
)

AUGMENTATION = Example(
    summary="A seeded crop, flip, brightness and contrast augmentation in numpy and torch for sslx",
    requires=("numpy>=1.24",),
    params={},
    tiny_params={},
    module=Template('''"""The augmentation '$name': random crop, flip, brightness and contrast.

Made with `sslx new-plugin $name --kind augmentation`. The augmentation's
contract is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

import sslx


class $Cls(sslx.Augmentation):
    """Random square crop (a share crop_area of the image's area) resized to
    the views' size, horizontal flip, brightness and contrast jitter, then
    per-channel normalisation with the dataset's mean and std. Every random
    choice comes from the generator the host reseeds before each batch, so a
    seeded run makes the same views. The evaluation view is the central
    square, resized."""

    name = "$name"

    class Params(sslx.Params):
        size: int | None = Field(None, ge=8, description="Side of the square views in pixels (null: the dataset's "
                                                         "image size, when its images are square).")
        crop_area: tuple[float, float] = Field((0.35, 1.0), description="Range [low, high] of the crop's share of "
                                                                        "the image's area.")
        flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
        brightness: float = Field(0.4, ge=0, le=1, description="Pixel values are scaled by a factor drawn from "
                                                               "[1 - brightness, 1 + brightness].")
        contrast: float = Field(0.4, ge=0, le=1, description="Distances to the view's mean value are scaled by a "
                                                             "factor drawn from [1 - contrast, 1 + contrast].")

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
            raise sslx.UserError(f"augmentation {self.name!r}: the dataset's images are not all one square size, so "
                                 f"set augmentation.size to the side of the views in pixels (for example 64).")
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
    register($Cls)
'''),
    test_imports=Template('''import numpy as np
import torch

import sslx
import sslx_$name
from sslx.testing import conformance
from sslx_$name import $Cls
'''),
    test=Template('''def test_without_random_changes_a_view_is_the_normalised_image():
    """With the whole image as crop and no jitter, a view is the image
    scaled to [0, 1] and normalised with the dataset's mean and std, as the
    evaluation view is; with flip_prob 1 it is that image mirrored."""
    info = sslx.DataInfo(channels=3, image_size=(8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), num_classes=None)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    expected = (torch.from_numpy(image).permute(2, 0, 1) / 255 - mean) / std
    still = dict(crop_area=(1.0, 1.0), brightness=0.0, contrast=0.0)
    augmentation = $Cls($Cls.Params(flip_prob=0.0, **still), info)
    torch.testing.assert_close(augmentation.view(image, 0), expected)
    torch.testing.assert_close(augmentation.eval(image), expected)
    mirrored = $Cls($Cls.Params(flip_prob=1.0, **still), info)
    torch.testing.assert_close(mirrored.view(image, 0), expected.flip(-1))
'''),
)

ENCODER = Example(
    summary="A small all-convolutional encoder with three stages for sslx",
    requires=(),
    params={"width": 8},
    tiny_params={"width": 4},
    module=Template('''"""The encoder '$name': a small all-convolutional network.

Made with `sslx new-plugin $name --kind encoder`. The encoder's contract is
in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

import sslx


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """A 3x3 convolution (``stride`` 2 halves the resolution), BatchNorm, ReLU."""
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class $Cls(sslx.Encoder):
    """A small all-convolutional network: three stages, each a 3x3
    convolution with stride 2 (halving the resolution) and a 3x3
    convolution, both followed by BatchNorm and ReLU, with width, 2 x width
    and 4 x width channels; global average pooling of the last stage gives
    4 x width features."""

    name = "$name"
    stages = ("stage1", "stage2", "stage3")

    class Params(sslx.Params):
        width: int = Field(16, ge=4, le=256, description="Channels of the first stage (doubling each stage); the "
                                                         "features have 4 x width.")

    def __init__(self, params: Params, data: sslx.DataInfo):
        super().__init__(params, data)
        channels = [data.channels, params.width, 2 * params.width, 4 * params.width]
        self.body = nn.ModuleDict({
            name: nn.Sequential(*conv_bn_relu(c_in, c_out, 2), *conv_bn_relu(c_out, c_out, 1))
            for name, c_in, c_out in zip(self.stages, channels, channels[1:])
        })
        self.out_dim = channels[-1]

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, stage in self.body.items():
            x = stage(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["stage3"].mean(dim=(2, 3))


@sslx.hookimpl
def sslx_register_encoders(register):
    register($Cls)
'''),
    test_imports=Template('''import torch

import sslx
import sslx_$name
from sslx.testing import conformance
from sslx_$name import $Cls
'''),
    test=Template('''def test_each_stage_halves_the_resolution_and_the_features_pool_the_last():
    info = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,), num_classes=None)
    encoder = $Cls($Cls.Params(width=4), info).eval()
    x = torch.randn(2, 1, 28, 28)
    maps = encoder.forward_stages(x)
    assert [tuple(m.shape) for m in maps.values()] == [(2, 4, 14, 14), (2, 8, 7, 7), (2, 16, 4, 4)]
    assert encoder.out_dim == 16
    torch.testing.assert_close(encoder(x), maps["stage3"].mean(dim=(2, 3)))
'''),
)

DATASET = Example(
    summary="Patches of the photographs bundled with scikit-image, labelled by photograph, as an sslx dataset",
    requires=("numpy>=1.24", "scikit-image>=0.22"),
    params={"train_size": 1000, "test_size": 500},
    tiny_params={"train_size": 64, "test_size": 32},
    module=Template('''"""The dataset '$name': patches of photographs bundled with scikit-image.

Made with `sslx new-plugin $name --kind dataset`. The dataset's contract is
in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field

import sslx

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket")  # RGB, inside scikit-image's wheel


def cut_patches(photos: list[np.ndarray], count: int, size: int, part: str,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` square patches of side ``size``, cycling through ``photos``
    (patch ``i`` is labelled ``i % len(photos)``), each at a random place in
    ``part`` of its photo: the left three quarters (``"train"``) or the right
    quarter (``"test"``). Returns ``(N, size, size, 3)`` uint8 images and
    int64 labels."""
    images, labels = [], []
    for i in range(count):
        label = i % len(photos)
        photo = photos[label]
        h, w = photo.shape[:2]
        edge = 3 * w // 4
        low, high = (0, edge - size) if part == "train" else (edge, w - size)
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(low, high + 1))
        images.append(photo[y : y + size, x : x + size])
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


class $Cls(sslx.Dataset):
    """Square patches of five photographs bundled with scikit-image
    (astronaut, chelsea, coffee, hubble_deep_field, rocket), labelled by the
    photograph they come from (5 balanced classes): real RGB images that need
    no download. Patches are cut at seeded random places, the test split's
    from the right quarter of each photograph and the training split's from
    the rest, so no test patch overlaps a training patch."""

    name = "$name"

    class Params(sslx.Params):
        train_size: int = Field(2000, ge=1, le=100_000, description="Patches in the training split.")
        test_size: int = Field(500, ge=1, le=100_000, description="Patches in the test split.")
        patch_size: int = Field(32, ge=8, le=96, description="Side of the square patches in pixels.")
        seed: int = Field(0, ge=0, description="Seed of the patches' places (each split draws its own).")

    def split(self, name: str) -> sslx.ArraySplit:
        if name not in ("train", "test"):
            raise sslx.UserError(f"dataset {self.name!r} has the splits 'train' and 'test', not {name!r}.")
        return self._splits[name]

    @cached_property
    def _splits(self) -> dict[str, sslx.ArraySplit]:
        import skimage.data

        p = self.params
        photos = [getattr(skimage.data, photo)() for photo in PHOTOS]
        cut = {part: cut_patches(photos, count, p.patch_size, part, np.random.default_rng([p.seed, i]))
               for i, (part, count) in enumerate((("train", p.train_size), ("test", p.test_size)))}
        values = cut["train"][0].reshape(-1, 3) / 255
        info = sslx.DataInfo(channels=3, image_size=(p.patch_size, p.patch_size), mean=tuple(values.mean(0).tolist()),
                             std=tuple(values.std(0).tolist()), num_classes=len(PHOTOS))
        return {part: sslx.ArraySplit(images, labels, info) for part, (images, labels) in cut.items()}


@sslx.hookimpl
def sslx_register_datasets(register):
    register($Cls)
'''),
    test_imports=Template('''import numpy as np

import sslx_$name
from sslx.testing import conformance
from sslx_$name import PHOTOS, $Cls
'''),
    test=Template('''def test_patches_are_balanced_over_the_photographs_and_seeded():
    params = $Cls.Params(train_size=50, test_size=10)
    train, test = $Cls(params).split("train"), $Cls(params).split("test")
    assert np.bincount(train.labels).tolist() == [10] * len(PHOTOS)
    assert np.bincount(test.labels).tolist() == [2] * len(PHOTOS)
    assert np.array_equal($Cls(params).split("train").images, train.images)
    other = $Cls($Cls.Params(train_size=50, test_size=10, seed=1)).split("train")
    assert not np.array_equal(other.images, train.images)
'''),
)

EVALUATOR = Example(
    summary="Nearest-class-centroid accuracy on frozen features, as an sslx evaluator",
    requires=(),
    params={},
    tiny_params={},
    module=Template('''"""The evaluator '$name': nearest-class-centroid accuracy on frozen features.

Made with `sslx new-plugin $name --kind evaluator`. The evaluator's contract
is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.features import extract_features, labeled_or_error


@torch.no_grad()
def nearest_centroid(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                     num_classes: int, cosine: bool = True) -> torch.Tensor:
    """The class of the nearest class centroid of each test feature.

    A class's centroid is the mean of its training features; with ``cosine``
    the features are L2-normalised first and centroids compared by cosine
    similarity, else by Euclidean distance. Classes without training
    features are never predicted. Returns ``(N_test,)`` labels."""
    if cosine:
        train_features, test_features = F.normalize(train_features, dim=1), F.normalize(test_features, dim=1)
    counts = torch.bincount(train_labels, minlength=num_classes)
    sums = torch.zeros(num_classes, train_features.shape[1], device=train_features.device)
    centroids = sums.index_add_(0, train_labels, train_features.float()) / counts.clamp(min=1)[:, None]
    if cosine:
        scores = test_features.float() @ F.normalize(centroids, dim=1).T
    else:
        scores = -torch.cdist(test_features.float(), centroids)
    return scores.masked_fill(counts == 0, float("-inf")).argmax(dim=1)


class $Cls(sslx.Evaluator):
    """Nearest-class-centroid accuracy: each class of the training split is
    summarised by the mean of its frozen encoder features, and each test
    image gets the class of the nearest centroid. A linear classifier with no
    training at all; reports ${name}_top1 in [0, 1]. Needs labels."""

    name = "$name"

    class Params(sslx.Params):
        cosine: bool = Field(True, description="Compare L2-normalised features by cosine similarity (true) or raw "
                                               "features by Euclidean distance (false).")

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        train_f, train_y = extract_features(ctx, "train")
        test_f, test_y = extract_features(ctx, "test")
        num_classes = labeled_or_error(self.name, train_y, test_y)
        known = train_y >= 0
        pred = nearest_centroid(train_f[known], train_y[known], test_f, num_classes, self.params.cosine)
        return {f"{self.name}_top1": float((pred == test_y).float().mean())}


@sslx.hookimpl
def sslx_register_evaluators(register):
    register($Cls)
'''),
    test_imports=Template('''import torch

import sslx_$name
from sslx.testing import conformance
from sslx_$name import $Cls, nearest_centroid
'''),
    test=Template('''def test_each_point_gets_the_class_of_the_nearest_centroid():
    """Class 0's centroid is (10, 0), class 1's (0, 1), class 2 has none:
    (2, 1) points towards class 0 but lies nearer to class 1's centroid."""
    train = torch.tensor([[10.0, 1.0], [10.0, -1.0], [0.1, 1.0], [-0.1, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[2.0, 1.0], [-1.0, -0.2]])
    assert nearest_centroid(train, labels, test, num_classes=3, cosine=True).tolist() == [0, 1]
    assert nearest_centroid(train, labels, test, num_classes=3, cosine=False).tolist() == [1, 1]
'''),
)

EXAMPLES = {"objective": OBJECTIVE, "sampler": SAMPLER, "encoder": ENCODER, "augmentation": AUGMENTATION,
            "dataset": DATASET, "evaluator": EVALUATOR}


# ----------------------------------------------------------------------------
# the shared files

FIRST_PARTY = {
    "seed": 0,
    "dataset": {"name": "mnist", "train_size": 1024, "test_size": 512},
    "augmentation": {"name": "simclr", "crop_scale": [0.5, 1.0], "blur_prob": 0.0},
    "sampler": {"name": "crops", "views": 2},
    "encoder": {"name": "small_cnn", "width": 8, "blocks": 3},
    "objective": {"name": "simclr", "temperature": 0.2},
    "evaluators": [{"name": "knn", "k": 20}],
    "trainer": {"batch_size": 64, "max_steps": 12, "warmup_steps": 2, "log_every": 2, "checkpoint_every": 12,
                "num_workers": 0, "progress": False},
}
"""The generated experiment's other parts: first-party plugins, sized to run in seconds on a CPU."""

FIRST_PARTY_DISTRIBUTIONS = {"dataset": "sslx-datasets", "augmentation": "sslx-augmentations", "sampler": "sslx-crops",
                             "encoder": "sslx-encoders", "objective": "sslx-simclr", "evaluator": "sslx-knn"}
"""The distribution of each of them, which the generated experiment needs installed."""

TINY = {
    "dataset": {"name": "tiny_images"},
    "augmentation": {"name": "tiny_views"},
    "sampler": {"name": "tiny_pairs"},
    "encoder": {"name": "tiny_encoder"},
    "objective": {"name": "tiny_infonce"},
    "evaluators": [],
    "trainer": {"batch_size": 16},
}
"""The generated test's run: the conformance kit's tiny parts (see :mod:`sslx.testing.pytest_plugin`)."""

PYPROJECT = Template('''[build-system]
requires = ["setuptools>=64,<81"]
build-backend = "setuptools.build_meta"

[project]
name = "sslx-$dist"
version = "0.1.0"
description = "$summary"
requires-python = ">=3.10"
dependencies = [
$dependencies]

[project.optional-dependencies]
test = ["pytest>=8", "scikit-image>=0.22"]  # sslx's conformance kit cuts its tiny images from scikit-image's photos

[project.entry-points.sslx]
$name = "sslx_$name"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

TESTS = Template('''"""Tests of the $kind '$name': its behaviour, the conformance kit's
checks of its contract, a few training steps with the kit's tiny
components, and the installed plugin as `sslx plugins` lists it.

The fixtures sslx_register and sslx_run come with sslx (its pytest plugin).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

$imports
SSLX = str(Path(sys.executable).parent / "sslx")

# The conformance kit's tiny experiment, with this plugin's $kind in it.
TINY = $tiny


$behaviour

def test_conforms():
    conformance("$kind", $Cls)


def test_trains_with_the_tiny_components(sslx_register, sslx_run):
    assert sslx_register(sslx_$name).error is None
    recorder = sslx_run(TINY, steps=3)
    losses = [loss for _, loss in recorder.metrics["train.loss"]]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
$run_check

def test_the_installed_plugin_is_listed():
    proc = subprocess.run([SSLX, "plugins", "--json"], capture_output=True, text=True, timeout=120)
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert "$name" in plugins, f"sslx-$dist is not installed (pip install -e .): {proc.stderr}"
    assert plugins["$name"]["error"] is None, plugins["$name"]["error"]
    assert plugins["$name"]["distribution"] == "sslx-$dist"
    assert plugins["$name"]["components"] == {"$kind": ["$name"]}
''')

EVALUATOR_RUN_CHECK = Template('''    [(_, top1)] = recorder.metrics["eval.${name}_top1"]
    assert 0 <= top1 <= 1
''')

README = Template('''# sslx-$dist

$summary: the $kind `$name`, made with
`sslx new-plugin $name --kind $kind`.

- `src/sslx_$name/__init__.py`: the $kind `$Cls`, registered through the
  `$hook` hook; the entry point in `pyproject.toml` lets sslx find it.
- `tests/test_$name.py`: its behaviour, the contract of its kind (sslx's
  conformance kit), a few training steps with the kit's tiny components, and
  the installed plugin as `sslx plugins` lists it.
- `experiments/$name.json`: a run of seconds on a CPU with first-party parts:
  $others.

## Install

Into the environment where sslx is installed:

```sh
pip install --no-build-isolation -e ".[test]"   # sacred needs the environment's setuptools<81
```

## Test

```sh
python -m pytest
```

## Run

`sslx plugins` lists the plugin, `sslx describe` prints its parameters, and
`sslx run` trains the experiment and records it under `runs/<id>/`:

```sh
sslx plugins
sslx describe $kind $name
sslx run experiments/$name.json
```
''')


# ----------------------------------------------------------------------------
# writing a plugin


def compatible_range(version: str) -> str:
    """The sslx versions a plugin made with sslx ``version`` declares it works
    with: the same minor version while sslx is 0.x (``0.1.3`` gives
    ``>=0.1,<0.2``), the same major version from 1.0 on."""
    v = Version(version)
    upper = f"{v.major}.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return f">={v.major}.{v.minor},<{upper}"


def check_name(name: str) -> None:
    """Refuse a ``name`` that cannot be at once a registry name, an entry
    point, a package (``sslx_<name>``) and a distribution (``sslx-<name>``)."""
    if NAME.fullmatch(name) and not keyword.iskeyword(name):
        return
    raise UserError(
        f"cannot make a plugin named {name!r}: a plugin's name is lowercase letters and digits, starting with a "
        f"letter, with single underscores between words, and not a Python keyword. It names the component in "
        f"experiments, the package sslx_<name> and the distribution sslx-<name>; for example: "
        f"sslx new-plugin {_suggest(name)}"
    )


def _suggest(name: str) -> str:
    """A valid name close to ``name``: "MyLoss" and "my-loss" give "my_loss"."""
    words = re.sub(r"[^a-z0-9]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()).strip("_")
    for candidate in (words, f"my_{words}"):
        if NAME.fullmatch(candidate) and not keyword.iskeyword(candidate):
            return candidate
    return "my_method"


def _taken(name: str, kind: str, dist: str, host: PluginHost | None) -> str | None:
    """Why ``name`` is not free, and what to do: an installed distribution or
    plugin has it, or a component of ``kind`` that ``host`` registered; None
    when it is free."""
    try:
        return (f"the distribution {dist} {metadata.version(dist)} is installed. Choose another name, such as "
                f"'my_{name}', or uninstall {dist} first if it is an older copy of this plugin.")
    except metadata.PackageNotFoundError:
        pass
    owners = [ep.dist.name if ep.dist else ep.value for ep in metadata.entry_points(group=GROUP) if ep.name == name]
    found = host.registry.find(kind, name) if host is not None else None
    if owners:
        taken = f"the installed distribution {owners[0]} has a plugin named {name!r}"
    elif found is not None:
        taken = f"the {kind} {name!r} is registered by {found.provenance}"
    else:
        return None
    return f"{taken}, and two with one name make it unusable. Choose another name, such as 'my_{name}'."


def new_plugin(name: str, kind: str = "objective", parent: Path = Path("."), host: PluginHost | None = None) -> Path:
    """Write ``parent/sslx-<name>/``, a plugin distribution whose package
    ``sslx_<name>`` holds one working ``kind`` component registered as
    ``name``, and return its folder.

    Refuses (``UserError``) a malformed name, an existing folder, and a name
    that an installed distribution or plugin has or (given ``host``) a
    registered component of ``kind``: two plugins with one name make it
    unusable."""
    check_name(name)
    dist = "sslx-" + name.replace("_", "-")
    root = Path(parent) / dist
    if root.exists():
        raise UserError(f"{root} already exists: choose another name, or another parent folder with --dir.")
    taken = _taken(name, kind, dist, host)
    if taken:
        raise UserError(f"cannot make a plugin named {name!r}: {taken}")
    example = EXAMPLES[kind]
    names = {"name": name, "Cls": "".join(w.capitalize() for w in name.split("_")) + kind.capitalize(),
             "dist": dist.removeprefix("sslx-"), "kind": kind}
    experiment = {
        "description": f"The {kind} '{name}' ({dist}) with first-party parts, sized to run in seconds on a CPU: raise "
                       f"the dataset's sizes and trainer.max_steps for a real measurement.",
        **_with_component(FIRST_PARTY, kind, name, example.params),
    }
    others = ", ".join(f"{k} {n} ({FIRST_PARTY_DISTRIBUTIONS[k]})" for k, n in _parts(experiment) if n != name)
    requires = [f"sslx{compatible_range(sslx.__version__)}", "torch>=2.1", *example.requires]
    files = {
        "pyproject.toml": PYPROJECT.substitute(names, summary=example.summary,
                                               dependencies="".join(f'    "{r}",\n' for r in requires)),
        "README.md": README.substitute(names, summary=example.summary, hook=REGISTRARS[kind], others=others),
        f"src/sslx_{name}/__init__.py": example.module.substitute(names),
        f"experiments/{name}.json": _experiment_json(experiment),
        f"tests/test_{name}.py": TESTS.substitute(
            names, imports=example.test_imports.substitute(names), behaviour=example.test.substitute(names),
            tiny=_python_dict(_with_component(TINY, kind, name, example.tiny_params)),
            run_check=EVALUATOR_RUN_CHECK.substitute(names) if kind == "evaluator" else ""),
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _with_component(config: dict[str, Any], kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the component ``name`` as its ``kind`` (an evaluator
    goes first in the list, before the others)."""
    config = copy.deepcopy(config)
    part = {"name": name, **params}
    if kind == "evaluator":
        config["evaluators"].insert(0, part)
    else:
        config[kind] = part
    return config


def _parts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every component of an experiment."""
    return [(kind, config[kind]["name"]) for kind in COMPONENT_SECTIONS] + \
        [("evaluator", e["name"]) for e in config["evaluators"]]


def _experiment_json(config: dict[str, Any]) -> str:
    """An experiment file laid out as the shipped ones are: one line per section."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in config.items()) + "\n}\n"


def _python_dict(config: dict[str, Any]) -> str:
    """``config`` as Python source, one line per key (its values are strings,
    numbers, lists and dicts, whose JSON is Python)."""
    return "{\n" + "".join(f"    {json.dumps(key)}: {json.dumps(value)},\n" for key, value in config.items()) + "}"
