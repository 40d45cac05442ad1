"""The jigsaw objective: the label decodes back to the permutation applied
to the tiles, labels are uniform over the set and drawn from the global RNG,
the loss is cross-entropy of the head on the tile features concatenated in
the shuffled order, the set is a buffer that checkpoints carry,
conformance, and user errors."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch
from sslx_encoders.models import SmallCNN
from sslx_jigsaw.objective import Jigsaw, shuffle_tiles
from sslx_jigsaw.permutations import max_hamming_permutations

import sslx
from sslx.testing import check_component, check_objective

DATA = sslx.DataInfo(channels=1, image_size=(28, 28), mean=(0.5,), std=(0.25,), num_classes=None)


def make_jigsaw(seed: int = 0, num_views: int = 1, **params) -> Jigsaw:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=20, dataset_size=40)
    return Jigsaw(Jigsaw.Params(**{"num_permutations": 10, "tile_dim": 6, "hidden_dim": 16, **params}), encoder, info)


def tile_batch(b: int = 4, tiles: int = 9, tile: int = 5, seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, tiles, 1, tile, tile, generator=gen)]
    return sslx.Batch(views=views, index=torch.arange(b), label=torch.full((b,), -1))


def known_tiles(b: int, tiles: int, tile: int = 3) -> torch.Tensor:
    """(b, tiles, 1, tile, tile): tile k of sample i is filled with 100 * i + k."""
    values = 100 * torch.arange(b)[:, None] + torch.arange(tiles)[None, :]
    return values[:, :, None, None, None].float().expand(b, tiles, 1, tile, tile).contiguous()


# -- shuffling and labels -----------------------------------------------------------------


def test_shuffle_tiles_puts_the_tile_of_cell_order_k_at_position_k():
    tiles = known_tiles(2, 4)
    order = torch.tensor([[2, 0, 3, 1], [1, 2, 3, 0]])
    out = shuffle_tiles(tiles, order)
    assert out[:, :, 0, 0, 0].tolist() == [[2, 0, 3, 1], [101, 102, 103, 100]]
    with pytest.raises(ValueError, match=r"order must be \(B, T\) = \(2, 4\)"):
        shuffle_tiles(tiles, order[:, :3])


@pytest.mark.parametrize("grid,count", [(3, 100), (3, 10), (2, 24)])
def test_the_label_decodes_back_to_the_applied_permutation(grid, count):
    """Tiles with distinct known contents, shuffled by the objective: for every
    sample, shuffled[b, k] == tiles[b, set[label[b]][k]], with the set
    recomputed independently of the objective's buffer."""
    t = grid * grid
    obj = make_jigsaw(grid=grid, num_permutations=count)
    reference = max_hamming_permutations(t, count, 0)
    assert obj.permutations.tolist() == reference.tolist()
    tiles = known_tiles(64, t)
    torch.manual_seed(2)
    shuffled, labels = obj.shuffle(tiles)
    assert shuffled.shape == tiles.shape and labels.shape == (64,) and labels.dtype == torch.long
    for b in range(64):
        order = reference[int(labels[b])]
        for k in range(t):
            assert torch.equal(shuffled[b, k], tiles[b, order[k]])
        assert shuffled[b, :, 0, 0, 0].tolist() == [100 * b + int(c) for c in order]
    assert len(set(labels.tolist())) > 1


def test_labels_are_uniform_over_the_set_and_come_from_the_global_rng():
    obj = make_jigsaw(num_permutations=10)
    tiles = known_tiles(5000, 9, tile=1)
    torch.manual_seed(4)
    _, labels = obj.shuffle(tiles)
    torch.manual_seed(4)
    assert torch.equal(torch.randint(10, (5000,)), labels)
    counts = torch.bincount(labels, minlength=10).float() / 5000
    assert torch.allclose(counts, torch.full((10,), 0.1), atol=0.02)


# -- the loss -----------------------------------------------------------------------------


def test_loss_is_cross_entropy_of_the_head_on_the_shuffled_concatenated_tile_features():
    obj = make_jigsaw()
    batch = tile_batch()
    torch.manual_seed(9)
    out = obj(batch)
    torch.manual_seed(9)
    labels = torch.randint(10, (4,))
    tiles = batch.views[0]
    with torch.no_grad():
        # every tile of every sample through the encoder as one batch (train-mode BatchNorm sees all B*T tiles)
        shuffled = torch.stack([tiles[b, obj.permutations[labels[b]]] for b in range(4)])
        features = obj.tile_layer(obj.encoder(shuffled.reshape(36, 1, 5, 5)))
        joint = torch.stack([torch.cat([features[b * 9 + k] for k in range(9)]) for b in range(4)])
        logits = obj.head(joint)
    expected = -sum(logits[b].log_softmax(0)[labels[b]] for b in range(4)) / 4
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(out.embeddings, joint)
    assert out.metrics["accuracy"].item() == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert not out.metrics["accuracy"].requires_grad


def test_the_head_sees_the_order_of_the_tiles():
    """Swapping two tiles of one sample before the shuffle changes that
    sample's logits (the concatenation follows the order)."""
    obj = make_jigsaw()
    batch = tile_batch()
    swapped = tile_batch()
    swapped.views[0][0, [0, 5]] = swapped.views[0][0, [5, 0]]
    outs = []
    for b in (batch, swapped):
        torch.manual_seed(3)
        outs.append(obj(b).embeddings)
    assert not torch.allclose(outs[0][0], outs[1][0], atol=1e-4)
    torch.testing.assert_close(outs[0][1:], outs[1][1:])


def test_puzzles_are_learnable():
    """Fixed random tiles, a few dozen Adam steps: the accuracy rises well
    above chance (0.1) on freshly drawn permutations."""
    obj = make_jigsaw(tile_dim=16, hidden_dim=64)
    batch = tile_batch(b=8)
    optimizer = torch.optim.Adam(obj.parameters(), lr=0.01)
    torch.manual_seed(0)
    losses = []
    for _ in range(40):
        out = obj(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    accuracy = np.mean([obj(batch).metrics["accuracy"].item() for _ in range(10)])
    assert accuracy > 0.6 and np.mean(losses[-10:]) < 0.5 * math.log(10)


def test_the_permutation_set_is_a_buffer_that_checkpoints_carry():
    obj = make_jigsaw(permutation_seed=3)
    assert "permutations" in dict(obj.named_buffers()) and obj.permutations.dtype == torch.long
    state = obj.state_dict()
    other = make_jigsaw(permutation_seed=4)
    assert not torch.equal(other.permutations, obj.permutations)
    other.load_state_dict(state)
    assert torch.equal(other.permutations, obj.permutations)


def test_conforms():
    check_component(Jigsaw, "objective")
    check_objective(lambda: make_jigsaw(), tile_batch())
    check_objective(lambda: make_jigsaw(grid=2, num_permutations=24), tile_batch(tiles=4))


# -- user errors --------------------------------------------------------------------------


@pytest.mark.parametrize("views", [2, 3])
def test_needs_one_view(views):
    with pytest.raises(sslx.UserError) as err:
        make_jigsaw(num_views=views)
    assert str(err.value) == (
        f"objective 'jigsaw' needs 1 view per sample (the tiles of an image), but the sampler gives {views}: "
        f"set sampler.views to 1 and use augmentation 'tiles'."
    )


def test_images_instead_of_tiles_are_a_user_error():
    obj = make_jigsaw()
    batch = sslx.Batch(views=[torch.randn(4, 1, 28, 28)], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(sslx.UserError) as err:
        obj(batch)
    assert str(err.value) == (
        "objective 'jigsaw' needs views that are tiles (B, tiles, C, tile, tile), but got "
        "shape (4, 1, 28, 28): use augmentation 'tiles' (with sampler.views 1)."
    )


def test_a_tile_count_that_does_not_match_the_grid_is_a_user_error():
    obj = make_jigsaw(grid=3)
    with pytest.raises(sslx.UserError) as err:
        obj(tile_batch(tiles=4))
    assert str(err.value) == (
        "objective 'jigsaw' has grid 3 and so expects 9 tiles per view, but the augmentation "
        "gives 4: set objective.grid equal to augmentation.grid."
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"grid": 4},
        {"grid": 1},
        {"num_permutations": 1},
        {"grid": 2, "num_permutations": 25},
        {"tile_dim": 0},
        {"hidden_dim": 0},
        {"permutation_seed": -1},
    ],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        Jigsaw.Params(**bad)


def test_defaults_descriptions_and_registration():
    p = Jigsaw.Params()
    assert (p.grid, p.num_permutations, p.permutation_seed) == (3, 100, 0)
    assert "1000" in Jigsaw.Params.model_fields["num_permutations"].description
    assert all(field.description for field in Jigsaw.Params.model_fields.values())
    assert "Noroozi & Favaro, 2016, arXiv:1603.09246" in Jigsaw.__doc__
