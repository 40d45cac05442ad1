"""Tiny real components for tests: one of each kind a run needs, small
enough that a run of a few steps takes a second on a CPU.

:mod:`sslx.testing` builds plugins' components with them (an objective needs
an encoder and a batch of views; an evaluator needs a dataset) and its pytest
fixtures register them on an isolated plugin host, so a plugin's tests can
run an experiment without any other plugin installed. The images are real:
patches of photographs bundled with scikit-image (no download).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sslx.components import (
    ArraySplit,
    Augmentation,
    Batch,
    DataInfo,
    Dataset,
    Encoder,
    ImageSplit,
    Objective,
    ObjectiveOutput,
    PairSampler,
    Params,
    TrainInfo,
)
from sslx.errors import UserError

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # RGB photographs shipped inside scikit-image


class TinyImagesParams(Params):
    train_size: int = Field(64, ge=1, le=4096, description="Patches in the training split.")
    test_size: int = Field(32, ge=1, le=4096, description="Patches in the test split.")
    size: int = Field(32, ge=8, le=128, description="Side of the square patches, in pixels.")
    seed: int = Field(0, ge=0, description="Seed of the patch positions.")


class TinyImages(Dataset):
    """Square RGB patches of four photographs bundled with scikit-image
    (astronaut, coffee, chelsea, rocket), each cut at twice its size at a
    seeded random place and averaged down 2x2, labelled by photograph (4
    classes): real images that need no download. The test split's patches
    come from the right third of each photograph, the training split's from
    the rest."""

    name = "tiny_images"
    Params = TinyImagesParams
    params: TinyImagesParams

    def split(self, name: str) -> ArraySplit:
        if name not in ("train", "test"):
            raise UserError(f"dataset 'tiny_images' has the splits 'train' and 'test', not {name!r}.")
        return self._splits[name]

    @cached_property
    def _splits(self) -> dict[str, ArraySplit]:
        import skimage.data

        p = self.params
        rng = np.random.default_rng(p.seed)
        photos = [getattr(skimage.data, name)() for name in PHOTOS]
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split, count in (("train", p.train_size), ("test", p.test_size)):
            images, labels = [], []
            for i in range(count):
                label = i % len(PHOTOS)
                photo = photos[label]
                h, w = photo.shape[:2]
                cut = 2 * p.size
                x0, x1 = (0, 2 * w // 3 - cut) if split == "train" else (2 * w // 3, w - cut)
                y, x = int(rng.integers(0, h - cut + 1)), int(rng.integers(x0, x1 + 1))
                patch = photo[y : y + cut, x : x + cut].astype(np.float32)
                images.append(patch.reshape(p.size, 2, p.size, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8))
                labels.append(label)
            out[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
        pixels = out["train"][0].reshape(-1, 3) / 255.0
        info = DataInfo(
            channels=3,
            image_size=(p.size, p.size),
            mean=tuple(pixels.mean(0).tolist()),
            std=tuple(pixels.std(0).tolist()),
            num_classes=len(PHOTOS),
        )
        return {split: ArraySplit(images, labels, info) for split, (images, labels) in out.items()}


class TinyViewsParams(Params):
    pad: int = Field(4, ge=0, description="Random crop: pad by this many pixels (reflect), then crop back to size.")
    flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    brightness: float = Field(0.3, ge=0, le=1, description="Brightness factor drawn from [1-b, 1+b].")


class TinyViews(Augmentation):
    """Random padded crop, horizontal flip and brightness jitter, then
    per-channel normalisation; numpy only, seeded by the host."""

    name = "tiny_views"
    Params = TinyViewsParams
    params: TinyViewsParams

    def __init__(self, params: TinyViewsParams, data: DataInfo):
        super().__init__(params, data)
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        p, rng = self.params, self.rng
        image = image if image.ndim == 3 else image[..., None]
        h, w = image.shape[:2]
        padded = np.pad(image, ((p.pad, p.pad), (p.pad, p.pad), (0, 0)), mode="reflect")
        y, x = rng.integers(0, 2 * p.pad + 1, size=2)
        out = padded[y : y + h, x : x + w].astype(np.float32) / 255.0
        if rng.random() < p.flip_prob:
            out = out[:, ::-1]
        out = np.clip(out * rng.uniform(1 - p.brightness, 1 + p.brightness), 0.0, 1.0)
        return self._normalise(out)

    def eval(self, image: np.ndarray) -> torch.Tensor:
        image = image if image.ndim == 3 else image[..., None]
        return self._normalise(image.astype(np.float32) / 255.0)

    def _normalise(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        mean = torch.tensor(self.data.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.data.std, dtype=torch.float32).view(-1, 1, 1)
        return ((x - mean) / std).contiguous()

    @property
    def out_channels(self) -> int:
        return self.data.channels


class TinyPairsParams(Params):
    views: int = Field(2, ge=1, le=8, description="Views per sample, each augmented independently.")


class TinyPairs(PairSampler):
    """``views`` independently augmented views of one image: the views of a
    sample are positives, other samples negatives."""

    name = "tiny_pairs"
    Params = TinyPairsParams
    params: TinyPairsParams

    @property
    def num_views(self) -> int:
        return self.params.views

    def sample(self, split: ImageSplit, index: int, augmentation: Augmentation) -> list[torch.Tensor]:
        image = split.image(index)
        return [augmentation.view(image, v) for v in range(self.params.views)]


class TinyEncoderParams(Params):
    width: int = Field(8, ge=1, le=256, description="Channels of the first block (the second has twice as many).")


class TinyEncoder(Encoder):
    """Two convolution blocks (3x3 convolution, BatchNorm, ReLU, 2x2 max
    pool), then global average pooling: ``out_dim`` is twice ``width``."""

    name = "tiny_encoder"
    Params = TinyEncoderParams
    params: TinyEncoderParams
    stages = ("block1", "block2")

    def __init__(self, params: TinyEncoderParams, data: DataInfo):
        super().__init__(params, data)
        w = params.width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.block1, self.block2 = block(data.channels, w), block(w, 2 * w)
        self.out_dim = 2 * w

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        first = self.block1(x)
        return {"block1": first, "block2": self.block2(first)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["block2"].mean(dim=(2, 3))


class TinyInfoNCEParams(Params):
    temperature: float = Field(0.2, gt=0, le=10, description="Softmax temperature of the contrastive loss.")
    dim: int = Field(32, ge=1, description="Size of the linear projection the loss compares.")


class TinyInfoNCE(Objective):
    """SimCLR's contrastive loss in its smallest form: a linear projection of
    two views, L2-normalised; each view's positive is the other view of its
    sample, every other view of the batch is a negative. Needs 2 views."""

    name = "tiny_infonce"
    Params = TinyInfoNCEParams
    params: TinyInfoNCEParams

    def __init__(self, params: TinyInfoNCEParams, encoder: Encoder, info: TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        self.head = nn.Linear(encoder.out_dim, params.dim)

    def forward(self, batch: Batch) -> ObjectiveOutput:
        b = len(batch)
        z = F.normalize(self.head(self.encoder(torch.cat(batch.views))).float(), dim=1)
        logits = z @ z.T / self.params.temperature
        logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
        return ObjectiveOutput(loss=F.cross_entropy(logits, targets), embeddings=z[:b].detach())


TINY_COMPONENTS = {
    "dataset": TinyImages,
    "augmentation": TinyViews,
    "sampler": TinyPairs,
    "encoder": TinyEncoder,
    "objective": TinyInfoNCE,
}


class TinyPlugin:
    """The tiny components as a plugin (what the ``sslx_host`` fixture registers)."""

    from sslx.hookspecs import hookimpl

    @hookimpl
    def sslx_register_datasets(self, register):
        register(TinyImages)

    @hookimpl
    def sslx_register_augmentations(self, register):
        register(TinyViews)

    @hookimpl
    def sslx_register_pair_samplers(self, register):
        register(TinyPairs)

    @hookimpl
    def sslx_register_encoders(self, register):
        register(TinyEncoder)

    @hookimpl
    def sslx_register_objectives(self, register):
        register(TinyInfoNCE)
