"""RotNet: the rotation helpers against numpy and a hand-checked corner, the
labels of both modes, the loss as cross-entropy of the head on the rotated
images, conformance, and user errors (views, shapes)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from sslx_encoders.models import SmallCNN
from sslx_rotation.objective import Rotation, rotate_batch, rotated_inputs, rotation_labels
from torch import nn

import sslx
from sslx.testing import check_component, check_objective, random_batch

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)


def make_rotation(seed: int = 0, num_views: int = 1, channels: int = 1, **params) -> Rotation:
    torch.manual_seed(seed)
    data = sslx.DataInfo(
        channels=channels, image_size=(8, 8), mean=(0.5,) * channels, std=(0.25,) * channels, num_classes=None
    )
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), data)
    info = sslx.TrainInfo(data=data, num_views=num_views, batch_size=4, total_steps=20, dataset_size=40)
    return Rotation(Rotation.Params(**params), encoder, info)


def asymmetric(h: int = 5, w: int = 5, seed: int = 0) -> np.ndarray:
    """An image without any rotational symmetry: distinct random values."""
    return np.random.default_rng(seed).permutation(h * w).reshape(h, w).astype(np.float32)


# -- rotate_batch and its convention ------------------------------------------------------


@pytest.mark.parametrize("size", [2, 5, 8])
def test_rotate_batch_matches_numpy_rot90_per_image(size):
    images = np.stack([asymmetric(size, size, seed=s) for s in range(8)])  # (8, size, size)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = rotate_batch(torch.from_numpy(images)[:, None], k)  # (8, 1, size, size)
    for b in range(8):
        np.testing.assert_array_equal(out[b, 0].numpy(), np.rot90(images[b], int(k[b])))
    assert not np.array_equal(np.rot90(images[0], 1), images[0])  # the image is not symmetric


def test_label_1_is_a_quarter_turn_counter_clockwise_as_displayed():
    """Checked by hand, independently of numpy: with row 0 at the top, a
    counter-clockwise quarter turn moves the top-right corner to the top-left
    corner, the top-left to the bottom-left, and the top row to the left
    column read from the bottom up; two turns swap opposite corners."""
    x = torch.arange(12.0).view(1, 1, 3, 4)[..., :3]  # a 3x3 crop: [[0,1,2],[4,5,6],[8,9,10]]
    one = rotate_batch(x, torch.tensor([1]))[0, 0]
    assert one[0, 0] == x[0, 0, 0, 2] and one[2, 0] == x[0, 0, 0, 0] and one[2, 2] == x[0, 0, 2, 0]
    assert one[:, 0].flip(0).tolist() == x[0, 0, 0].tolist()
    two = rotate_batch(x, torch.tensor([2]))[0, 0]
    assert two[0, 0] == x[0, 0, 2, 2] and two[2, 2] == x[0, 0, 0, 0]
    three = rotate_batch(x, torch.tensor([3]))[0, 0]
    assert three[0, 0] == x[0, 0, 2, 0]  # clockwise: the bottom-left corner comes to the top-left
    assert torch.equal(rotate_batch(one[None, None], torch.tensor([3]))[0, 0], x[0, 0])  # 1 + 3 turns: identity


def test_rotate_batch_keeps_channels_together_and_passes_gradients():
    x = torch.randn(3, 3, 6, 6, requires_grad=True)
    k = torch.tensor([1, 2, 3])
    out = rotate_batch(x, k)
    for b in range(3):
        for c in range(3):
            np.testing.assert_array_equal(out[b, c].detach().numpy(), np.rot90(x[b, c].detach().numpy(), int(k[b])))
    (out * torch.arange(36.0).view(6, 6)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_rotate_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="square images, got 4x6"):
        rotate_batch(torch.zeros(2, 1, 4, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="rotation labels must lie in 0..3"):
        rotate_batch(torch.zeros(2, 1, 4, 4), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="one rotation per image"):
        rotate_batch(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1, 2]))


# -- labels -------------------------------------------------------------------------------


def test_all_rotations_feeds_the_four_rotations_of_every_image_rotation_major():
    x = torch.from_numpy(np.stack([asymmetric(seed=s) for s in range(3)]))[:, None]  # (3, 1, 5, 5)
    images, labels = rotated_inputs(x, all_rotations=True)
    assert images.shape == (12, 1, 5, 5) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for i in range(12):
        r, b = divmod(i, 3)
        np.testing.assert_array_equal(images[i, 0].numpy(), np.rot90(x[b, 0].numpy(), r))
    assert torch.equal(rotation_labels(3, True), labels)


def test_one_random_rotation_per_image_from_the_global_rng():
    x = torch.from_numpy(np.stack([asymmetric(seed=s) for s in range(64)]))[:, None]
    torch.manual_seed(3)
    images, labels = rotated_inputs(x, all_rotations=False)
    torch.manual_seed(3)
    assert torch.equal(torch.randint(4, (64,)), labels)  # the first draw after the seed
    assert images.shape == x.shape and set(labels.tolist()) == {0, 1, 2, 3}
    for b in range(64):
        np.testing.assert_array_equal(images[b, 0].numpy(), np.rot90(x[b, 0].numpy(), int(labels[b])))
    counts = torch.bincount(rotation_labels(40000, False), minlength=4).float() / 40000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.01)  # uniform


# -- the objective ------------------------------------------------------------------------


@pytest.mark.parametrize("all_rotations", [True, False])
@pytest.mark.parametrize("hidden_dim", [0, 16])
def test_loss_is_cross_entropy_of_the_head_on_the_rotated_images(all_rotations, hidden_dim):
    obj = make_rotation(all_rotations=all_rotations, hidden_dim=hidden_dim)
    batch = random_batch(num_views=1, batch_size=6)
    torch.manual_seed(7)
    out = obj(batch)
    torch.manual_seed(7)  # the same random rotations
    x = batch.views[0]
    labels = torch.arange(4).repeat_interleave(6) if all_rotations else torch.randint(4, (6,))
    images = x.repeat(4, 1, 1, 1) if all_rotations else x
    rotated = torch.stack([torch.rot90(images[i], int(labels[i]), dims=(-2, -1)) for i in range(len(labels))])
    with torch.no_grad():
        features = obj.encoder(rotated)
        logits = obj.head(features)
    expected = -logits.log_softmax(dim=1)[torch.arange(len(labels)), labels].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.metrics["accuracy"].item() == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    torch.testing.assert_close(out.embeddings, features[:6])  # the upright images when all rotations are fed
    assert not out.embeddings.requires_grad and not out.metrics["accuracy"].requires_grad
    linear = isinstance(obj.head, nn.Linear)
    assert linear == (hidden_dim == 0)


def test_rotations_are_learnable_and_the_accuracy_rises():
    """A few dozen steps on fixed, non-symmetric images: the loss falls and
    the rotation accuracy ends near 1 (a head that ignored the rotation, or
    labels that did not match it, would stay at chance, 0.25)."""
    obj = make_rotation(hidden_dim=32)
    batch = random_batch(num_views=1, batch_size=8)
    optimizer = torch.optim.Adam(obj.parameters(), lr=0.01)
    first = None
    for _ in range(60):
        out = obj(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < 0.3 * first
    assert out.metrics["accuracy"].item() >= 0.9


def test_rotations_of_a_rotation_invariant_image_cannot_be_told_apart():
    """The control of the test above: the same training on constant images,
    whose four rotations are identical, stays at chance (accuracy 0.25, loss
    near log 4): what the network learns above comes from the rotations."""
    obj = make_rotation(hidden_dim=32)
    batch = sslx.Batch(views=[torch.ones(8, 1, 8, 8)], index=torch.arange(8), label=torch.full((8,), -1))
    optimizer = torch.optim.Adam(obj.parameters(), lr=0.01)
    for _ in range(60):
        out = obj(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.metrics["accuracy"].item() == pytest.approx(0.25)
    assert out.loss.item() == pytest.approx(np.log(4), abs=0.02)


def test_conforms():
    check_component(Rotation, "objective")
    for params in ({}, {"all_rotations": False}, {"hidden_dim": 0}):
        check_objective(lambda params=params: make_rotation(**params), random_batch(num_views=1, batch_size=6))
    check_objective(lambda: make_rotation(channels=3), random_batch(num_views=1, batch_size=4, channels=3))


# -- user errors --------------------------------------------------------------------------


@pytest.mark.parametrize("views", [2, 3])
def test_needs_one_view(views):
    with pytest.raises(sslx.UserError) as err:
        make_rotation(num_views=views)
    assert str(err.value) == (
        f"objective 'rotation' needs 1 view per sample (an image, rotated inside the objective), but the sampler "
        f"gives {views}: set sampler.views to 1 and use an ordinary augmentation such as 'mocov2'."
    )


def test_non_square_views_are_a_user_error():
    obj = make_rotation()
    batch = sslx.Batch(views=[torch.randn(4, 1, 8, 6)], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(sslx.UserError) as err:
        obj(batch)
    assert str(err.value).startswith(
        "objective 'rotation' needs square views (a quarter turn must keep the shape), but got 8x6 views"
    )


def test_tile_views_are_a_user_error():
    obj = make_rotation()
    batch = sslx.Batch(views=[torch.randn(4, 9, 1, 4, 4)], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(
        sslx.UserError,
        match=r"needs views that are images \(B, C, H, W\), but got shape "
        r"\(4, 9, 1, 4, 4\): use an ordinary augmentation",
    ):
        obj(batch)


@pytest.mark.parametrize("bad", [{"hidden_dim": -1}, {"all_rotations": "sometimes"}, {"temperature": 0.1}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        Rotation.Params(**bad)


def test_defaults_descriptions_and_registration():
    p = Rotation.Params()
    assert (p.all_rotations, p.hidden_dim) == (True, 256)
    assert all(field.description for field in Rotation.Params.model_fields.values())
    assert "Gidaris et al., 2018, arXiv:1803.07728" in Rotation.__doc__
