"""Jigsaw tiling (``jigsaw_tiles``, ``cell_bounds``) on images whose pixel
values encode where they come from, and the ``pirl`` augmentation
(``PIRLViews``) on a real Fashion-MNIST image and a colour photo: shapes,
defaults, seeding, and the tiles being shuffled pieces of one crop."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from sslx_augmentations.jigsaw import PIRLViews, TilesViews, cell_bounds, jigsaw_tiles

import sslx
import sslx.testing


def coordinates(h: int, w: int) -> np.ndarray:
    """An (h, w, 2) image whose pixel (y, x) holds (y, x)."""
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([ys, xs], axis=-1).astype(np.int32)


def cell_of(y: int, x: int, h: int, w: int, grid: int) -> int:
    """The cell number (row * grid + col) of pixel (y, x), from the formula floor(i*size/grid)."""
    row = max(i for i in range(grid) if i * h // grid <= y)
    col = max(i for i in range(grid) if i * w // grid <= x)
    return row * grid + col


# -- cell_bounds ------------------------------------------------------------------


@pytest.mark.parametrize("size,grid", [(28, 3), (30, 3), (9, 3), (31, 4), (64, 8), (7, 7), (10, 1)])
def test_cell_bounds_cover_the_side_without_overlap(size, grid):
    bounds = cell_bounds(size, grid)
    assert len(bounds) == grid and bounds[0][0] == 0 and bounds[-1][1] == size
    for (_, end), (start, _) in zip(bounds, bounds[1:]):
        assert end == start  # contiguous: no gap, no overlap
    widths = [end - start for start, end in bounds]
    assert set(widths) <= {size // grid, -(-size // grid)}  # cells differ by at most one pixel
    assert bounds == [(i * size // grid, (i + 1) * size // grid) for i in range(grid)]


# -- jigsaw_tiles -----------------------------------------------------------------


@pytest.mark.parametrize(
    "h,w,grid,tile", [(30, 30, 3, 9), (28, 28, 3, 6), (31, 40, 3, 10), (32, 32, 4, 5), (12, 12, 2, 6)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_out_k_is_the_tile_of_cell_permutation_k_and_lies_inside_it(h, w, grid, tile, seed):
    """On an image whose pixels hold their coordinates: out[k] is a contiguous
    tile x tile square, entirely inside cell permutation[k]."""
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(grid * grid)
    out = jigsaw_tiles(coordinates(h, w), grid, tile, permutation, rng=np.random.default_rng(seed + 10))
    assert out.shape == (grid * grid, tile, tile, 2) and out.dtype == np.int32 and out.flags.c_contiguous
    rows, cols = cell_bounds(h, grid), cell_bounds(w, grid)
    for k, cell in enumerate(permutation):
        y0, x0 = out[k, 0, 0]
        np.testing.assert_array_equal(out[k], coordinates(h, w)[y0 : y0 + tile, x0 : x0 + tile])
        r, c = divmod(int(cell), grid)
        assert rows[r][0] <= y0 and y0 + tile <= rows[r][1], (k, cell)
        assert cols[c][0] <= x0 and x0 + tile <= cols[c][1], (k, cell)
        assert {cell_of(int(y), int(x), h, w, grid) for y, x in out[k].reshape(-1, 2)} == {cell}


def test_pixel_values_that_encode_the_cell_come_out_in_permutation_order():
    """A grayscale (H, W) image whose every pixel is its cell number."""
    h, w, grid = 30, 33, 3
    image = np.array([[cell_of(y, x, h, w, grid) for x in range(w)] for y in range(h)], dtype=np.uint8)
    permutation = [4, 8, 0, 2, 6, 1, 3, 7, 5]
    out = jigsaw_tiles(image, grid, 8, permutation, rng=np.random.default_rng(3))
    assert out.shape == (9, 8, 8) and out.dtype == np.uint8
    for k in range(9):
        assert np.all(out[k] == permutation[k])


def test_offsets_are_random_within_the_slack_and_seeded():
    image = coordinates(30, 30)
    corners = {tuple(jigsaw_tiles(image, 3, 7, rng=np.random.default_rng(s))[:, 0, 0].ravel()) for s in range(30)}
    assert len(corners) > 20  # the gaps between tiles vary
    a = jigsaw_tiles(image, 3, 7, rng=np.random.default_rng(42))
    b = jigsaw_tiles(image, 3, 7, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    # every offset of every cell is used: 0 .. 10 - 7 along each axis
    offsets = set()
    for s in range(200):
        top_left = jigsaw_tiles(image, 3, 7, rng=np.random.default_rng(s))[:, 0, 0]
        offsets |= {int(v) % 10 for v in top_left.ravel()}
    assert offsets == {0, 1, 2, 3}


@pytest.mark.parametrize("h,w,grid,tile", [(30, 30, 3, 7), (31, 40, 3, 10), (28, 28, 3, 6), (9, 9, 3, 3)])
def test_without_rng_tiles_are_centred_in_their_cells(h, w, grid, tile):
    """rng=None: the tile's corner is cell start + (cell side - tile) // 2;
    the permutation defaults to the identity."""
    out = jigsaw_tiles(coordinates(h, w), grid, tile)
    rows, cols = cell_bounds(h, grid), cell_bounds(w, grid)
    for c in range(grid * grid):
        (y0, y1), (x0, x1) = rows[c // grid], cols[c % grid]
        assert tuple(out[c, 0, 0]) == (y0 + (y1 - y0 - tile) // 2, x0 + (x1 - x0 - tile) // 2)


@pytest.mark.parametrize(
    "permutation", [[0, 0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2], list(range(1, 10)), [[0, 1, 2], [3, 4, 5], [6, 7, 8]]]
)
def test_invalid_permutations_raise(permutation):
    with pytest.raises(ValueError, match=r"permutation must be a permutation of range\(9\)"):
        jigsaw_tiles(coordinates(30, 30), 3, 9, permutation)


@pytest.mark.parametrize("h,w,grid,tile", [(30, 30, 3, 11), (30, 26, 3, 9), (8, 8, 3, 3)])
def test_tiles_larger_than_the_cells_raise(h, w, grid, tile):
    with pytest.raises(ValueError, match="do not fit in the cells"):
        jigsaw_tiles(coordinates(h, w), grid, tile)


@pytest.mark.parametrize("grid,tile", [(0, 3), (3, 0)])
def test_grid_and_tile_must_be_positive(grid, tile):
    with pytest.raises(ValueError, match="grid and tile must be >= 1"):
        jigsaw_tiles(coordinates(30, 30), grid, tile)


# -- the pirl augmentation --------------------------------------------------------


def test_defaults_for_28_px_images(fmnist):
    """Defaults: a 3x3 grid cut from a crop the size of view 0 (28 px), tiles of
    3/4 of a 9 px cell (6 px); MoCo v2's appearance settings."""
    image, info = fmnist
    params = PIRLViews.Params()
    assert (params.grid, params.jigsaw_size, params.tile) == (3, None, None)
    assert params.crop_scale == (0.2, 1.0) and params.brightness == 0.4
    aug = PIRLViews(params, info)
    aug.seed(0)
    assert (aug.size, aug.grid, aug.jigsaw_size, aug.tile) == (28, 3, 28, 6)
    assert aug.view(image, 0).shape == (1, 28, 28)
    assert aug.view(image, 1).shape == (9, 1, 6, 6)
    assert aug.eval(image).shape == (1, 28, 28)


@pytest.mark.parametrize("grid,jigsaw_size,tile", [(3, 30, 9), (3, 30, 10), (2, 28, 12), (4, 40, 8)])
def test_view_shapes(grid, jigsaw_size, tile, fmnist):
    image, info = fmnist
    aug = PIRLViews(PIRLViews.Params(grid=grid, jigsaw_size=jigsaw_size, tile=tile, crop_scale=(0.5, 1.0)), info)
    aug.seed(1)
    assert aug.out_channels == 1
    view0, view1, view2 = (aug.view(image, v) for v in range(3))
    assert view0.shape == view2.shape == (1, 28, 28)  # every view but 1 is an ordinary view
    assert view1.shape == (grid * grid, 1, tile, tile)
    for v in (view0, view1):
        assert v.dtype == torch.float32 and torch.isfinite(v).all()


def test_colour_tiles_keep_three_channels(photo64):
    image, info = photo64
    aug = PIRLViews(PIRLViews.Params(jigsaw_size=48, tile=12), info)
    aug.seed(0)
    assert aug.view(image, 0).shape == (3, 64, 64)
    assert aug.view(image, 1).shape == (9, 3, 12, 12)


def test_same_seed_same_views_different_seed_different_views(fmnist):
    image, info = fmnist
    params = PIRLViews.Params(jigsaw_size=30, tile=9)

    def views(aug, seed):
        aug.seed(seed)
        return [aug.view(image, v) for v in (0, 1, 0, 1)]

    first = PIRLViews(params, info)
    a = views(first, 123)
    b = views(first, 123)  # the same instance, reseeded after drawing
    c = views(PIRLViews(params, info), 123)
    d = views(first, 124)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert not torch.equal(a[1], d[1]) and not torch.equal(a[0], d[0])
    assert not torch.equal(a[1], a[3])  # successive jigsaw views of one image differ


def test_tiles_are_shuffled_normalised_pieces_of_the_crop(fmnist):
    """With every random appearance operation off and a crop of the whole
    image at its own size, each tile equals the normalised image at exactly
    one place, inside one cell; the tiles come from all nine cells, and
    their order varies with the seed. (Random pixels make every tile unique.)"""
    _, info = fmnist
    image = np.random.default_rng(0).integers(0, 256, size=(28, 28, 1), dtype=np.uint8)
    identity = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0)
    aug = PIRLViews(PIRLViews.Params(tile=6, **identity), info)
    normalised = (torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255 - info.mean[0]) / info.std[0]
    bounds = cell_bounds(28, 3)
    orders = set()
    for seed in range(6):
        aug.seed(seed)
        tiles = aug.view(image, 1)
        order = []
        for t in tiles:
            places = [
                (y, x)
                for y in range(23)
                for x in range(23)
                if torch.allclose(normalised[:, y : y + 6, x : x + 6], t, atol=1e-6)
            ]
            assert len(places) == 1
            ((y, x),) = places
            cells = {
                r * 3 + c
                for r, (r0, r1) in enumerate(bounds)
                for c, (c0, c1) in enumerate(bounds)
                if r0 <= y and y + 6 <= r1 and c0 <= x and x + 6 <= c1
            }
            assert len(cells) == 1
            order += cells
        assert sorted(order) == list(range(9))
        orders.add(tuple(order))
    assert len(orders) == 6


def test_tiles_too_large_for_the_cells_are_a_user_error(fmnist):
    _, info = fmnist
    with pytest.raises(sslx.UserError) as err:
        PIRLViews(PIRLViews.Params(jigsaw_size=30, tile=11), info)
    message = str(err.value)
    assert "augmentation 'pirl'" in message and "tiles of 11 px do not fit in the 10 px cells" in message
    assert "lower augmentation.tile to at most 10" in message and "augmentation.jigsaw_size to at least 33" in message


@pytest.mark.parametrize("bad", [{"grid": 1}, {"grid": 9}, {"tile": 1}, {"jigsaw_size": 3}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        PIRLViews.Params(**bad)


# -- jigsaw_tiles with a gap --------------------------------------------------------


@pytest.mark.parametrize("size,tile,gap", [(30, 7, 1), (30, 7, 2), (30, 6, 3), (33, 9, 1), (31, 8, 2)])
def test_a_gap_keeps_neighbouring_tiles_apart_and_the_offsets_in_their_range(size, tile, gap):
    """Every offset lies in [gap // 2, cell - tile - (gap - gap // 2)] and
    each value of that range is drawn; tiles of neighbouring cells (rows,
    columns, diagonals) are at least `gap` pixels apart."""
    image = coordinates(size, size)
    bounds = cell_bounds(size, 3)
    seen = set()
    for seed in range(150):
        out = jigsaw_tiles(image, 3, tile, rng=np.random.default_rng(seed), gap=gap)
        corners = out[:, 0, 0]  # (9, 2): (y, x) of each tile, cells in row order
        for c, (y, x) in enumerate(corners):
            (y0, y1), (x0, x1) = bounds[c // 3], bounds[c % 3]
            assert gap // 2 <= y - y0 <= y1 - y0 - tile - (gap - gap // 2)
            assert gap // 2 <= x - x0 <= x1 - x0 - tile - (gap - gap // 2)
            seen.add(int(x - x0))
        for a in range(9):
            for b in range(a + 1, 9):
                (ra, ca), (rb, cb) = divmod(a, 3), divmod(b, 3)
                if max(abs(ra - rb), abs(ca - cb)) == 1:  # neighbours
                    separation = [abs(int(corners[b, i]) - int(corners[a, i])) - tile for i in (0, 1)]
                    assert max(separation) >= gap, (seed, a, b)
    narrowest = min(end - start for start, end in bounds)
    assert set(range(gap // 2, narrowest - tile - (gap - gap // 2) + 1)) <= seen


def test_gap_zero_draws_the_same_offsets_as_before():
    """The default gap 0 leaves the tiling as it was: offsets from
    rng.integers(0, slack + 1), one (dy, dx) per cell in cell order."""
    image = coordinates(30, 30)
    for seed in range(5):
        out = jigsaw_tiles(image, 3, 7, rng=np.random.default_rng(seed))
        offsets = np.random.default_rng(seed).integers(0, np.full((9, 2), 3) + 1)
        starts = np.array([(r * 10, c * 10) for r in range(3) for c in range(3)])
        np.testing.assert_array_equal(out[:, 0, 0], starts + offsets)


def test_a_gap_without_rng_centres_the_tiles_in_their_allowed_range():
    out = jigsaw_tiles(coordinates(30, 30), 3, 6, gap=2)  # offsets 1..3: centred at 2
    assert [tuple(t) for t in out[:, 0, 0]] == [(r * 10 + 2, c * 10 + 2) for r in range(3) for c in range(3)]


@pytest.mark.parametrize("tile,gap", [(10, 1), (9, 2), (5, 6)])
def test_tiles_and_gaps_larger_than_the_cells_raise(tile, gap):
    with pytest.raises(ValueError, match=f"tiles of {tile} px with a gap of {gap} px do not fit in the cells"):
        jigsaw_tiles(coordinates(30, 30), 3, tile, gap=gap)
    with pytest.raises(ValueError, match="gap must be >= 0"):
        jigsaw_tiles(coordinates(30, 30), 3, 5, gap=-1)


# -- the tiles augmentation ---------------------------------------------------------

IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)


def coordinate_views(aug: TilesViews, size: int, seeds) -> list[np.ndarray]:
    """The tiles of a (size, size, 3) uint8 image whose pixel (y, x) holds
    (y, x, 0), through `aug` (mean 0, std 1: values are coordinates / 255),
    as (9, tile, tile, 2) integer coordinates, one per seed."""
    image = np.concatenate([coordinates(size, size), np.zeros((size, size, 1), np.int32)], axis=-1).astype(np.uint8)
    out = []
    for seed in seeds:
        aug.seed(seed)
        view = aug.view(image, 0)
        out.append((view[:, :2] * 255).round().long().permute(0, 2, 3, 1).numpy())
    return out


COORDS = sslx.DataInfo(channels=3, image_size=(30, 30), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=None)


def test_tiles_defaults_for_28_px_images(fmnist):
    """Defaults: 3x3 tiles of 3/4 of a 9 px cell from a crop the size of the
    image, no guaranteed gap, MoCo v2's appearance strengths; the evaluation
    view is the whole normalised image."""
    image, info = fmnist
    params = TilesViews.Params()
    assert (params.grid, params.jigsaw_size, params.tile, params.gap) == (3, None, None, 0)
    assert params.crop_scale == (0.2, 1.0) and params.brightness == 0.4 and params.jitter_prob == 0.8
    aug = TilesViews(params, info)
    aug.seed(0)
    assert (aug.size, aug.grid, aug.jigsaw_size, aug.tile, aug.out_channels) == (28, 3, 28, 6, 1)
    assert aug.view(image, 0).shape == aug.view(image, 1).shape == (9, 1, 6, 6)  # every view is tiles
    expected = (torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255 - info.mean[0]) / info.std[0]
    torch.testing.assert_close(aug.eval(image), expected)


@pytest.mark.parametrize("gap", [0, 1])
def test_tiles_stay_in_cell_order(gap):
    """Every appearance operation off, a crop of the whole image at its own
    size: tile k is a contiguous square of the image lying inside cell k,
    whatever the seed (the tiles are never shuffled), and the offsets vary."""
    aug = TilesViews(TilesViews.Params(jigsaw_size=30, tile=9 - gap, gap=gap, **IDENTITY), COORDS)
    bounds = cell_bounds(30, 3)
    corners = set()
    for tiles in coordinate_views(aug, 30, range(20)):
        assert tiles.shape == (9, 9 - gap, 9 - gap, 2)
        for k in range(9):
            y0, x0 = tiles[k, 0, 0]
            np.testing.assert_array_equal(tiles[k], coordinates(30, 30)[y0 : y0 + 9 - gap, x0 : x0 + 9 - gap])
            assert {cell_of(int(y), int(x), 30, 30, 3) for y, x in tiles[k].reshape(-1, 2)} == {k}
            (r0, r1), (c0, c1) = bounds[k // 3], bounds[k % 3]
            assert r0 <= y0 and y0 + 9 - gap <= r1 and c0 <= x0 and x0 + 9 - gap <= c1
        corners.add(tuple(tiles[:, 0, 0].ravel()))
    assert len(corners) > 5


def test_tiles_are_normalised_pieces_of_the_crop_in_cell_order(fmnist):
    """A real-valued check with random pixels (every tile unique): tile k
    equals the normalised image at exactly one place, inside cell k."""
    _, info = fmnist
    image = np.random.default_rng(0).integers(0, 256, size=(28, 28, 1), dtype=np.uint8)
    aug = TilesViews(TilesViews.Params(tile=6, **IDENTITY), info)
    normalised = (torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255 - info.mean[0]) / info.std[0]
    bounds = cell_bounds(28, 3)
    for seed in range(3):
        aug.seed(seed)
        tiles = aug.view(image, 0)
        for k, t in enumerate(tiles):
            places = [
                (y, x)
                for y in range(23)
                for x in range(23)
                if torch.allclose(normalised[:, y : y + 6, x : x + 6], t, atol=1e-6)
            ]
            assert len(places) == 1
            ((y, x),) = places
            (r0, r1), (c0, c1) = bounds[k // 3], bounds[k % 3]
            assert r0 <= y and y + 6 <= r1 and c0 <= x and x + 6 <= c1


def test_each_tile_is_jittered_independently(fmnist):
    """A flat gray image with jitter always on: the tiles come out with
    different brightness/contrast, each tile flat itself."""
    _, info = fmnist
    image = np.full((28, 28, 1), 128, dtype=np.uint8)
    aug = TilesViews(TilesViews.Params(crop_scale=(1.0, 1.0), jitter_prob=1.0, brightness=0.5, contrast=0.0), info)
    aug.seed(0)
    tiles = aug.view(image, 0)
    means = tiles.mean(dim=(1, 2, 3))
    assert len(set(means.tolist())) == 9
    assert torch.allclose(tiles, means[:, None, None, None].expand_as(tiles))


@pytest.mark.parametrize("grid,jigsaw_size,tile,gap", [(3, 30, 9, 0), (3, 33, 9, 1), (2, 28, 12, 0), (4, 40, 8, 2)])
def test_tiles_shapes(grid, jigsaw_size, tile, gap, fmnist):
    image, info = fmnist
    aug = TilesViews(TilesViews.Params(grid=grid, jigsaw_size=jigsaw_size, tile=tile, gap=gap), info)
    aug.seed(1)
    view = aug.view(image, 0)
    assert view.shape == (grid * grid, 1, tile, tile) and view.dtype == torch.float32 and torch.isfinite(view).all()
    assert aug.eval(image).shape == (1, 28, 28)


def test_colour_tiles_keep_three_channels_and_eval_is_the_image(photo64):
    image, info = photo64
    aug = TilesViews(TilesViews.Params(jigsaw_size=48, tile=12), info)
    aug.seed(0)
    assert aug.view(image, 0).shape == (9, 3, 12, 12) and aug.eval(image).shape == (3, 64, 64)


def test_tiles_same_seed_same_views_different_seed_different_views(fmnist):
    image, info = fmnist
    params = TilesViews.Params(jigsaw_size=30, tile=9)

    def views(aug, seed):
        aug.seed(seed)
        return [aug.view(image, 0) for _ in range(3)]

    first = TilesViews(params, info)
    a, b, c, d = views(first, 5), views(first, 5), views(TilesViews(params, info), 5), views(first, 6)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert not torch.equal(a[0], d[0]) and not torch.equal(a[0], a[1])


def test_tiles_too_large_for_the_cells_and_gap_are_a_user_error(fmnist):
    _, info = fmnist
    with pytest.raises(sslx.UserError) as err:
        TilesViews(TilesViews.Params(jigsaw_size=30, tile=9, gap=2), info)
    assert str(err.value) == (
        "augmentation 'tiles': tiles of 9 px and gaps of 2 px do not fit in the 10 px cells of a 30 px crop cut 3x3: "
        "lower augmentation.tile to at most 8 or raise augmentation.jigsaw_size to at least 33."
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"grid": 1},
        {"grid": 9},
        {"tile": 1},
        {"jigsaw_size": 3},
        {"gap": -1},
        {"crop_scale": (0.5, 1.5)},
        {"crop_ratio": (2.0, 1.0)},
        {"blur_prob": 0.5},
    ],
)
def test_tiles_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        TilesViews.Params(**bad)


def test_the_default_tile_leaves_room_for_the_gap(fmnist):
    _, info = fmnist
    assert TilesViews(TilesViews.Params(jigsaw_size=30), info).tile == 7  # 3/4 of a 10 px cell
    assert TilesViews(TilesViews.Params(jigsaw_size=30, gap=2), info).tile == 7
    assert TilesViews(TilesViews.Params(jigsaw_size=30, gap=4), info).tile == 6  # 10 - 4
