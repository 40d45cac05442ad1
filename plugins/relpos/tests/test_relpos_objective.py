"""Relative position: the pairs and their labels against the geometry of
tiles cut from images whose pixels hold their coordinates (through the
'tiles' augmentation itself), the gap between neighbouring tiles, the loss
as cross-entropy of the head on (centre, neighbour) features, conformance,
and user errors."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from sslx_augmentations.jigsaw import TilesViews, cell_bounds, jigsaw_tiles
from sslx_encoders.models import SmallCNN
from sslx_relpos.objective import CENTRE, NEIGHBOURS, OFFSETS, RelativePosition, pair_up

import sslx
from sslx.testing import check_component, check_objective

DATA = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,), num_classes=None)
# three channels (y, x, 0), no normalisation: a view's pixel is its coordinates / 255
COORDS = sslx.DataInfo(channels=3, image_size=(33, 33), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=None)
IDENTITY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)


def make_relpos(seed: int = 0, num_views: int = 1, channels: int = 1, **params) -> RelativePosition:
    torch.manual_seed(seed)
    data = sslx.DataInfo(
        channels=channels, image_size=(28, 28), mean=(0.5,) * channels, std=(0.25,) * channels, num_classes=None
    )
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), data)
    info = sslx.TrainInfo(data=data, num_views=num_views, batch_size=4, total_steps=20, dataset_size=40)
    return RelativePosition(RelativePosition.Params(**{"hidden_dim": 16, **params}), encoder, info)


def tile_batch(b: int = 4, tiles: int = 9, tile: int = 5, seed: int = 1, channels: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, tiles, channels, tile, tile, generator=gen)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def coordinate_image(size: int = 33) -> np.ndarray:
    """(size, size, 3) uint8: pixel (y, x) holds (y, x, 0)."""
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([ys, xs, np.zeros_like(ys)], axis=-1).astype(np.uint8)


def tiles_of_coordinates(seeds, gap: int = 1, jigsaw_size: int = 33, tile: int = 9) -> torch.Tensor:
    """(len(seeds), 9, 3, tile, tile) tiles from the 'tiles' augmentation (every
    appearance operation off) of the coordinate image, one seed per sample;
    values are pixel coordinates again."""
    aug = TilesViews(TilesViews.Params(jigsaw_size=jigsaw_size, tile=tile, gap=gap, **IDENTITY), COORDS)
    views = []
    for seed in seeds:
        aug.seed(seed)
        views.append(aug.view(coordinate_image(jigsaw_size), 0))
    return (torch.stack(views) * 255).round().long()


# -- pairs and labels ---------------------------------------------------------------------


def test_neighbours_and_offsets_follow_the_row_order_of_the_grid():
    assert CENTRE == 4 and NEIGHBOURS == (0, 1, 2, 3, 5, 6, 7, 8)
    assert OFFSETS == ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def test_pair_up_pairs_the_centre_with_each_neighbour_of_the_same_sample():
    x = (100 * torch.arange(3)[:, None] + torch.arange(9)[None, :]).float()[:, :, None].expand(3, 9, 2)  # (3, 9, 2)
    centre, neighbour, label = pair_up(x)
    assert centre.shape == neighbour.shape == (24, 2) and label.tolist() == list(range(8)) * 3
    for i in range(24):
        b = i // 8
        assert centre[i].tolist() == [100 * b + 4] * 2
        assert neighbour[i].tolist() == [100 * b + NEIGHBOURS[int(label[i])]] * 2
    with pytest.raises(ValueError, match=r"x must be \(B, 9, \.\.\.\)"):
        pair_up(torch.zeros(2, 4, 3))


def test_the_label_matches_the_offset_between_the_patches():
    """For every pair, cut by the 'tiles' augmentation with random offsets
    (the tiles are the image's pixels at their origins): along an axis where
    the label's grid offset is +-1, the sign of (neighbour origin - centre
    origin) is that offset and the tiles are more than a tile apart; where
    it is 0, the tiles span the same band (same row or column, up to the
    jitter); and the cells that hold the two tiles differ by that offset."""
    tiles = tiles_of_coordinates(range(40))  # (40, 9, 3, 9, 9)
    centre, neighbour, label = pair_up(tiles)
    image = torch.from_numpy(coordinate_image()).permute(2, 0, 1).long()
    bounds = cell_bounds(33, 3)

    def cell(origin: int) -> int:
        (index,) = [i for i, (start, end) in enumerate(bounds) if start <= origin and origin + 9 <= end]
        return index

    origins = set()
    for c, n, lab in zip(centre, neighbour, label.tolist()):
        (cy, cx), (ny, nx) = c[:2, 0, 0].tolist(), n[:2, 0, 0].tolist()
        assert torch.equal(c, image[:, cy : cy + 9, cx : cx + 9]) and torch.equal(n, image[:, ny : ny + 9, nx : nx + 9])
        for delta, offset in zip((ny - cy, nx - cx), OFFSETS[lab]):
            if offset:
                assert np.sign(delta) == offset and abs(delta) > 9
            else:
                assert abs(delta) < 9
        assert (cell(cy), cell(cx)) == (1, 1)
        assert (cell(ny) - 1, cell(nx) - 1) == OFFSETS[lab]
        origins.add((cy, cx))
    assert len(origins) > 1  # the centre tile moves (jitter)


@pytest.mark.parametrize("jigsaw_size,tile,gap", [(33, 9, 1), (36, 9, 1), (36, 9, 2), (30, 8, 1), (33, 7, 3)])
def test_neighbouring_tiles_never_share_or_touch_pixels(jigsaw_size, tile, gap):
    """With a gap, the pixels of the centre and of every neighbour are at
    least gap + 1 apart in Chebyshev distance (max(|dy|, |dx|); touching,
    even at a corner, is 1): at least `gap` pixels lie between them."""
    tiles = tiles_of_coordinates(range(40), gap=gap, jigsaw_size=jigsaw_size, tile=tile)
    centre, neighbour, _ = pair_up(tiles)
    a = centre[:, :2].flatten(2).transpose(1, 2)  # (pairs, tile*tile, 2): the (y, x) of every pixel
    b = neighbour[:, :2].flatten(2).transpose(1, 2)
    chebyshev = (a[:, :, None, :] - b[:, None, :, :]).abs().max(dim=-1).values.flatten(1).min(dim=1).values
    assert chebyshev.min().item() == gap + 1  # never closer; the random offsets do reach the minimum


def test_without_a_gap_neighbouring_tiles_can_touch():
    """The augmentation's default gap 0 (the jigsaw paper's tiling) lets
    neighbours touch: relative_position experiments set a gap."""
    tiles = tiles_of_coordinates(range(40), gap=0, jigsaw_size=30, tile=9)
    centre, neighbour, _ = pair_up(tiles)
    a = centre[:, :2].flatten(2).transpose(1, 2)
    b = neighbour[:, :2].flatten(2).transpose(1, 2)
    chebyshev = (a[:, :, None, :] - b[:, None, :, :]).abs().max(dim=-1).values.flatten(1).min(dim=1).values
    assert chebyshev.min().item() == 1


# -- the loss -----------------------------------------------------------------------------


def test_loss_is_cross_entropy_of_the_head_on_centre_and_neighbour_features():
    obj = make_relpos()
    batch = tile_batch()
    out = obj(batch)
    tiles = batch.views[0]
    with torch.no_grad():
        features = obj.encoder(tiles.reshape(36, 1, 5, 5)).reshape(4, 9, -1)  # each tile once, one batch
        rows, targets = [], []
        for b in range(4):
            for label, cell in enumerate(NEIGHBOURS):
                rows.append(torch.cat([features[b, 4], features[b, cell]]))  # centre first
                targets.append(label)
        logits = obj.head(torch.stack(rows))
    targets = torch.tensor(targets)
    expected = -logits.log_softmax(1)[torch.arange(32), targets].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.metrics["accuracy"].item() == pytest.approx((logits.argmax(1) == targets).float().mean().item())
    torch.testing.assert_close(out.embeddings, features[:, 4])
    assert out.embeddings.shape == (4, obj.encoder.out_dim) and not out.metrics["accuracy"].requires_grad


def test_the_encoder_runs_once_per_tile():
    obj = make_relpos()
    seen = []
    obj.encoder.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    obj(tile_batch(b=3))
    assert seen == [27]


def test_positions_are_learnable_from_tiles_that_show_where_they_are():
    """Tiles of randomly shifted coordinate ramps: position is visible only
    relative to the centre; a few dozen steps go well above chance (1/8;
    about 0.8 after 40 steps)."""
    rng = np.random.default_rng(0)
    views = []
    for _ in range(8):
        ys, xs = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
        ramp = (ys + rng.integers(0, 30)) / 30.0 + 3 * (xs + rng.integers(0, 30)) / 30.0  # dy + 3 dx: 8 values
        views.append(torch.from_numpy(jigsaw_tiles(ramp.astype(np.float32), 3, 8, rng=rng))[:, None])
    batch = sslx.Batch(views=[torch.stack(views)], index=torch.arange(8), label=torch.full((8,), -1))
    obj = make_relpos(hidden_dim=32)
    optimizer = torch.optim.Adam(obj.parameters(), lr=0.01)
    for _ in range(40):
        out = obj(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert obj(batch).metrics["accuracy"].item() > 0.6


def test_conforms():
    check_component(RelativePosition, "objective")
    check_objective(lambda: make_relpos(), tile_batch())
    check_objective(lambda: make_relpos(channels=3), tile_batch(channels=3))


# -- user errors --------------------------------------------------------------------------


@pytest.mark.parametrize("views", [2, 3])
def test_needs_one_view(views):
    with pytest.raises(sslx.UserError) as err:
        make_relpos(num_views=views)
    assert str(err.value) == (
        f"objective 'relative_position' needs 1 view per sample (the 3x3 tiles of an image), but the sampler gives "
        f"{views}: set sampler.views to 1 and use augmentation 'tiles' with grid 3."
    )


@pytest.mark.parametrize("tiles", [4, 16])
def test_a_grid_other_than_3_is_a_user_error(tiles):
    with pytest.raises(sslx.UserError) as err:
        make_relpos()(tile_batch(tiles=tiles))
    assert str(err.value) == (
        f"objective 'relative_position' needs the 9 tiles of a 3x3 grid (a centre and its 8 neighbours), but the "
        f"augmentation gives {tiles} tiles per view: set augmentation.grid to 3."
    )


def test_images_instead_of_tiles_are_a_user_error():
    batch = sslx.Batch(views=[torch.randn(4, 1, 28, 28)], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(
        sslx.UserError,
        match=r"needs views that are tiles \(B, 9, C, tile, tile\), but got shape "
        r"\(4, 1, 28, 28\): use augmentation 'tiles' with grid 3",
    ):
        make_relpos()(batch)


@pytest.mark.parametrize("bad", [{"hidden_dim": 0}, {"grid": 3}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        RelativePosition.Params(**bad)


def test_defaults_descriptions_and_registration():
    assert RelativePosition.Params().hidden_dim == 512
    assert all(field.description for field in RelativePosition.Params.model_fields.values())
    assert "Doersch et al., 2015, arXiv:1505.05192" in RelativePosition.__doc__
