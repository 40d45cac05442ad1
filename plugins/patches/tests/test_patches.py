"""The ``patches`` sampler against its definition, on images whose pixels
say where they are: channel 0 holds the row, channel 1 the column and
channel 2 the image's index, so every view tells which image and which
pixels it was cut from. An identity augmentation keeps the pixel values."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from sslx_patches.sampler import Patches, cell_corners, cell_distances, draw_layout, find_layout

import sslx
from sslx.engine.data import ViewDataset
from sslx.testing import PixelViews, check_component


def coordinate_images(count: int, height: int, width: int) -> sslx.ArraySplit:
    """``count`` images where pixel ``(y, x)`` of image ``i`` is ``(y, x, i)``."""
    y, x = np.mgrid[:height, :width]
    images = np.stack([np.stack([y, x, np.full_like(y, i)], axis=-1) for i in range(count)]).astype(np.uint8)
    info = sslx.DataInfo(channels=3, image_size=(height, width), mean=(0.0,) * 3, std=(1.0,) * 3, num_classes=None)
    return sslx.ArraySplit(images, np.arange(count) % 3, info)


def expected_corners(side: int, patch: int, grid: int) -> list[int]:
    """The spec's corners, written independently: grid cells spread evenly
    over ``side`` (the test sizes have no ties at .5)."""
    return [int(np.floor(i * (side - patch) / (grid - 1) + 0.5)) for i in range(grid)]


def chebyshev(a, b) -> int:
    return int(max(abs(a[0] - b[0]), abs(a[1] - b[1])))


def where_from(
    view: torch.Tensor, height: int, width: int, patch: int, grid: int
) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(image index, cell, top-left pixel) of a view, read from its pixels;
    asserts the view is one whole ``patch`` x ``patch`` crop of that image."""
    y0, x0, image = (int(v) for v in view[:, 0, 0])
    y, x = np.mgrid[y0 : y0 + patch, x0 : x0 + patch]
    assert view.shape == (3, patch, patch)
    np.testing.assert_array_equal(view.numpy(), np.stack([y, x, np.full_like(y, image)]).astype(np.float32))
    rows, cols = expected_corners(height, patch, grid), expected_corners(width, patch, grid)
    assert y0 in rows and x0 in cols, f"pixel {(y0, x0)} is not a grid corner {rows} x {cols}"
    return image, (rows.index(y0), cols.index(x0)), (y0, x0)


SETTINGS = [  # (height, width, grid, patch_size, near, far, pairs, every cell can take part)
    (40, 40, 4, 14, 1, 2, 2, True),
    (40, 52, 4, 14, 1, 2, 2, True),  # not square: rows and columns have their own steps
    (40, 40, 4, 14, 2, 3, 2, False),  # a patch in the middle leaves no cell 3 away from both patches
    (64, 64, 6, 16, 2, 3, 3, False),
    (40, 40, 5, 12, 1, 3, 3, False),
    (40, 40, 4, 10, 1, 2, 4, False),  # crowded: random placement mostly fails; the checked one may take over
    (40, 40, 3, 20, 2, 3, 1, True),
]


@pytest.mark.parametrize("height,width,grid,patch_size,near,far,pairs,every_cell", SETTINGS)
def test_samples_satisfy_the_definition(height, width, grid, patch_size, near, far, pairs, every_cell):
    """For every sample of 30 images: both views are whole patches at grid
    corners of the requested image, their cells and boxes are the meta's,
    anchor and positive lie 1..near cells apart, and every patch of one
    sample lies at least far cells from every patch of another sample of
    the same image. Over the images, every allowed positive distance occurs,
    and every cell where the settings leave room for the other samples."""
    split = coordinate_images(30, height, width)
    sampler = Patches(Patches.Params(grid=grid, patch_size=patch_size, near=near, far=far, pairs=pairs))
    assert sampler.group_size == pairs and sampler.num_views == 2
    augmentation = PixelViews(sslx.NoParams(), split.info)
    seen_distances, seen_cells = set(), set()
    for index in range(len(split)):
        sampler.seed(index)
        group = sampler.sample_group(split, index, augmentation)
        assert len(group) == pairs
        cells = []
        for sample in group:
            assert len(sample.views) == 2 and sample.label is None
            found = [where_from(v, height, width, patch_size, grid) for v in sample.views]
            assert [image for image, _, _ in found] == [index, index]
            for (_, cell, (y0, x0)), role in zip(found, ("anchor", "positive")):
                assert sample.meta[f"{role}_cell"].tolist() == list(cell)
                assert sample.meta[f"{role}_box"].tolist() == [x0, y0, x0 + patch_size, y0 + patch_size]
            anchor, positive = found[0][1], found[1][1]
            assert 1 <= chebyshev(anchor, positive) <= near
            seen_distances.add(chebyshev(anchor, positive))
            seen_cells.update([anchor, positive])
            cells.append((anchor, positive))
        for k in range(pairs):
            for m in range(pairs):
                if k != m:
                    assert min(chebyshev(a, b) for a in cells[k] for b in cells[m]) >= far
    assert seen_distances == set(range(1, near + 1))
    assert len(seen_cells) == grid * grid if every_cell else len(seen_cells) >= 2 * pairs + 2


def test_the_checked_placement_is_reused_under_random_symmetries(monkeypatch):
    """When random placement keeps failing, each image gets the placement
    found at construction, turned and flipped at random: still valid, not
    always the same."""
    monkeypatch.setattr("sslx_patches.sampler.SAMPLE_TRIES", 0)
    sampler = Patches(Patches.Params(grid=4, patch_size=10, near=1, far=2, pairs=4))
    distances = cell_distances(4)
    layouts = set()
    for seed in range(40):
        sampler.seed(seed)
        layout = sampler.layout()
        assert layout.shape == (4, 2)
        assert all(distances[a, p] == 1 for a, p in layout)
        for k in range(4):
            for m in range(k + 1, 4):
                assert distances[np.ix_(layout[k], layout[m])].min() >= 2
        layouts.add(tuple(map(tuple, layout.tolist())))
    assert len(layouts) > 8


def test_cell_corners_spread_the_grid_over_the_image():
    assert cell_corners(28, 14, 3).tolist() == [0, 7, 14]
    assert cell_corners(40, 14, 4).tolist() == [0, 9, 17, 26]  # steps of 8.67 px, rounded
    assert cell_corners(20, 20, 2).tolist() == [0, 0]  # patch as large as the image (the sampler rejects this)
    assert cell_corners(16, 4, 2).tolist() == [0, 12]  # the last patch ends on the border


def test_cell_distances_are_chebyshev_distances():
    d = cell_distances(3)
    assert d.shape == (9, 9) and d[0, 8] == 2 and d[0, 1] == 1 and d[4].tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert d[0, 5] == 2 and d[2, 6] == 2 and (d == d.T).all()


def test_draw_layout_gives_up_when_the_cells_run_out():
    """On a 3x3 grid every cell lies within 2 of every other: two samples at
    far 3 never fit."""
    rng = np.random.default_rng(0)
    assert all(draw_layout(3, 1, 3, 2, rng) is None for _ in range(20))
    assert find_layout(3, 1, 3, 2) is None
    assert find_layout(3, 1, 3, 1) is not None


def test_batches_collate_meta_and_are_reproducible_per_batch_seed():
    """Through the host's ViewDataset: samples of an item follow each other,
    share its index, and the meta becomes (B, 2) and (B, 4) tensors; the same
    batch seed gives the same batch, another seed another one."""
    split = coordinate_images(8, 40, 40)
    dataset = ViewDataset(split, Patches(Patches.Params(pairs=2)), PixelViews(sslx.NoParams(), split.info))
    batch = dataset.__getitems__([(i, 7) for i in (3, 5, 6)])
    assert batch.index.tolist() == [3, 3, 5, 5, 6, 6]
    assert batch.label.tolist() == [0, 0, 2, 2, 0, 0]
    assert batch.views[0].shape == (6, 3, 14, 14) and len(batch.views) == 2
    assert batch.meta["anchor_cell"].shape == (6, 2) and batch.meta["positive_box"].shape == (6, 4)
    assert batch.meta["anchor_cell"].dtype == torch.int64
    assert (batch.views[0][:, 2, 0, 0] == batch.index.float()).all()
    again = dataset.__getitems__([(i, 7) for i in (3, 5, 6)])
    assert all(torch.equal(batch.meta[k], again.meta[k]) for k in batch.meta)
    assert all(torch.equal(a, b) for a, b in zip(batch.views, again.views))
    other = [dataset.__getitems__([(i, seed) for i in (3, 5, 6)]) for seed in (8, 9)]
    assert any(not torch.equal(batch.meta["anchor_cell"], o.meta["anchor_cell"]) for o in other)


def test_real_digits_through_a_real_augmentation():
    """Fashion-MNIST items cut into 14 px patches and passed through the
    simclr pipeline with its random operations off: 2 views of (1, 14, 14)
    per sample, the anchor view the normalised patch of the meta's box."""
    from sslx_augmentations.views import SimCLRViews
    from sslx_datasets.images import read_idx

    images = read_idx(Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"))[:4, :, :, None]
    info = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.5,), num_classes=10)
    split = sslx.ArraySplit(np.ascontiguousarray(images), np.zeros(4, dtype=np.int64), info)
    still = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, blur_prob=0.0)
    augmentation = SimCLRViews(SimCLRViews.Params(size=14, **still), info)
    sampler = Patches(Patches.Params(grid=3, patch_size=14, near=1, far=2, pairs=2))
    augmentation.seed(0)
    sampler.seed(0)
    for sample in sampler.sample_group(split, 2, augmentation):
        x0, y0, x1, y1 = sample.meta["anchor_box"].tolist()
        expected = (torch.tensor(images[2, y0:y1, x0:x1, 0], dtype=torch.float32) / 255 - 0.5) / 0.5
        assert [v.shape for v in sample.views] == [(1, 14, 14)] * 2
        torch.testing.assert_close(sample.views[0][0], expected)
        assert (x1 - x0, y1 - y0) == (14, 14) and {x0, y0} <= {0, 7, 14}


def test_patches_larger_than_the_image_are_a_user_error():
    split = coordinate_images(2, 20, 24)
    sampler = Patches(Patches.Params(grid=3, patch_size=21))
    with pytest.raises(sslx.UserError) as err:
        sampler.sample_group(split, 0, PixelViews(sslx.NoParams(), split.info))
    assert str(err.value) == (
        "sampler 'patches': patch_size (21 px) is larger than the 20x24 images of the dataset: "
        "set sampler.patch_size to at most 20."
    )


def test_a_grid_finer_than_the_pixels_is_a_user_error():
    """18 px patches on 20 px images leave 2 px to move: a 4x4 grid would put
    two cells on the same pixels, so 'far' patches could be identical."""
    split = coordinate_images(2, 20, 20)
    sampler = Patches(Patches.Params(grid=4, patch_size=18))
    with pytest.raises(
        sslx.UserError,
        match=r"a 4x4 grid of 18 px patches on 20x20 images puts different cells on "
        r"the same pixels .* lower sampler.grid to at most 3 or "
        r"sampler.patch_size to at most 17\.",
    ):
        sampler.sample_group(split, 0, PixelViews(sslx.NoParams(), split.info))
    Patches(Patches.Params(grid=3, patch_size=18)).sample_group(split, 0, PixelViews(sslx.NoParams(), split.info))


@pytest.mark.parametrize(
    "params,message",
    [
        ({"near": 2, "far": 2}, "far (2) must exceed near (2)"),
        ({"grid": 3, "far": 3, "pairs": 2}, "a 3x3 grid has no room found for 2 samples"),
        ({"grid": 4, "far": 2, "pairs": 5}, "Lower pairs or far, or raise grid"),
    ],
)
def test_impossible_placements_are_rejected_with_the_parameters_to_change(params, message):
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        Patches.Params(**params)


@pytest.mark.parametrize("bad", [{"grid": 1}, {"near": 0}, {"far": 1}, {"pairs": 0}, {"patch_size": 0}, {"size": 3}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        Patches.Params(**bad)


def test_picklable_and_conforming():
    sampler = pickle.loads(pickle.dumps(Patches(Patches.Params(pairs=3, far=2))))
    split = coordinate_images(2, 40, 40)
    sampler.seed(1)
    assert len(sampler.sample_group(split, 1, PixelViews(sslx.NoParams(), split.info))) == 3
    check_component(Patches, "sampler")
    defaults = Patches.Params()
    assert (defaults.grid, defaults.patch_size, defaults.near, defaults.far, defaults.pairs) == (4, 14, 1, 2, 2)
