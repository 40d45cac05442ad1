"""The dataset 'example': patches of photographs bundled with scikit-image.

Made with `sslx new-plugin example --kind dataset`. The dataset's contract is
in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field

import sslx

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket")  # RGB, inside scikit-image's wheel


def cut_patches(
    photos: list[np.ndarray], count: int, size: int, part: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
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


class ExampleDataset(sslx.Dataset):
    """Square patches of five photographs bundled with scikit-image
    (astronaut, chelsea, coffee, hubble_deep_field, rocket), labelled by the
    photograph they come from (5 balanced classes): real RGB images that need
    no download. Patches are cut at seeded random places, the test split's
    from the right quarter of each photograph and the training split's from
    the rest, so no test patch overlaps a training patch."""

    name = "example"

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
        cut = {
            part: cut_patches(photos, count, p.patch_size, part, np.random.default_rng([p.seed, i]))
            for i, (part, count) in enumerate((("train", p.train_size), ("test", p.test_size)))
        }
        values = cut["train"][0].reshape(-1, 3) / 255
        info = sslx.DataInfo(
            channels=3,
            image_size=(p.patch_size, p.patch_size),
            mean=tuple(values.mean(0).tolist()),
            std=tuple(values.std(0).tolist()),
            num_classes=len(PHOTOS),
        )
        return {part: sslx.ArraySplit(images, labels, info) for part, (images, labels) in cut.items()}


@sslx.hookimpl
def sslx_register_datasets(register):
    register(ExampleDataset)
