"""Fashion-MNIST from the real idx files: contents, size limits, where the
files are looked for, and the errors for missing or damaged files; plus
``read_idx`` on hand-written idx files."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pydantic
import pytest
from sslx_datasets.images import DEBIAN_FASHION_MNIST, FASHION_MNIST_FILES, FashionMNIST, read_idx

import sslx

# the real files: where `make setup` put them (Debian's package, or $SSLX_FASHION_MNIST_DIR)
REAL = Path(os.environ.get("SSLX_FASHION_MNIST_DIR") or DEBIAN_FASHION_MNIST)
ALL_FILES = [f for pair in FASHION_MNIST_FILES.values() for f in pair]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The idx format: 0, 0, type code, ndim, big-endian uint32 sizes, then the data."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def parse_idx_gz(path: Path) -> np.ndarray:
    """An independent reader for the reference values (struct, not read_idx)."""
    raw = gzip.decompress(path.read_bytes())
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and type_code == 0x08
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(shape)


def write_fake_dataset(folder: Path, n_train: int = 5, n_test: int = 3) -> None:
    """Four small gzipped idx files whose image i is filled with the value i."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
        labels = (np.arange(n) % 10).astype(np.uint8)
        image_file, label_file = FASHION_MNIST_FILES[split]
        (folder / image_file).write_bytes(gzip.compress(idx_bytes(images)))
        (folder / label_file).write_bytes(gzip.compress(idx_bytes(labels)))


def link_real_files(folder: Path, skip: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        if name not in skip:
            (folder / name).symlink_to(REAL / name)
    return folder


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("SSLX_FASHION_MNIST_DIR", raising=False)


@pytest.fixture(scope="module")
def full() -> FashionMNIST:
    return FashionMNIST(FashionMNIST.Params(root=str(REAL)))


# -- the real files ------------------------------------------------------------


def test_train_split_is_the_real_data(full):
    split = full.split("train")
    assert split.images.shape == (60000, 28, 28, 1) and split.images.dtype == np.uint8
    assert split.labels.shape == (60000,) and split.labels.dtype == np.int64
    assert np.bincount(split.labels).tolist() == [6000] * 10
    assert split.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    np.testing.assert_array_equal(split.images[..., 0], parse_idx_gz(REAL / "train-images-idx3-ubyte.gz"))
    assert len(split) == 60000 and split.image(123).shape == (28, 28, 1)
    np.testing.assert_array_equal(split.image(123), split.images[123])
    assert split.info == sslx.DataInfo(
        channels=1, image_size=(28, 28), mean=FashionMNIST.MEAN, std=FashionMNIST.STD, num_classes=10
    )


def test_declared_mean_and_std_are_those_of_the_training_images(full):
    counts = np.bincount(full.split("train").images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert mean == pytest.approx(FashionMNIST.MEAN[0], abs=5e-4)
    assert std == pytest.approx(FashionMNIST.STD[0], abs=5e-4)


def test_test_split_is_the_real_data(full):
    split = full.split("test")
    assert split.images.shape == (10000, 28, 28, 1) and split.images.dtype == np.uint8
    assert np.bincount(split.labels).tolist() == [1000] * 10
    assert split.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    np.testing.assert_array_equal(split.images[..., 0], parse_idx_gz(REAL / "t10k-images-idx3-ubyte.gz"))
    assert full.split("test") is split  # read once


@pytest.mark.parametrize("train_size,test_size", [(1, 1), (100, 50), (60000, 10000)])
def test_size_limits_take_the_first_items(full, train_size, test_size):
    small = FashionMNIST(FashionMNIST.Params(root=str(REAL), train_size=train_size, test_size=test_size))
    for name, n in (("train", train_size), ("test", test_size)):
        split, whole = small.split(name), full.split(name)
        assert len(split) == n and len(split.labels) == n
        np.testing.assert_array_equal(split.images, whole.images[:n])
        np.testing.assert_array_equal(split.labels, whole.labels[:n])


@pytest.mark.parametrize("bad", [{"train_size": 0}, {"train_size": 60001}, {"test_size": 10001}, {"path": "/x"}])
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        FashionMNIST.Params(**bad)


def test_unknown_split_is_a_user_error(full):
    with pytest.raises(sslx.UserError, match="'val'"):
        full.split("val")


# -- where the files are looked for ---------------------------------------------


@pytest.mark.skipif(
    not Path(DEBIAN_FASHION_MNIST, "t10k-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (the files come from $SSLX_FASHION_MNIST_DIR)",
)
def test_default_location_is_the_debian_package(no_env):
    dataset = FashionMNIST(FashionMNIST.Params(test_size=10))
    assert dataset.folder() == (Path(DEBIAN_FASHION_MNIST), "the Debian package location")
    assert len(dataset.split("test")) == 10


def test_env_var_points_at_a_folder_of_the_files(monkeypatch, tmp_path):
    linked = link_real_files(tmp_path / "linked")
    monkeypatch.setenv("SSLX_FASHION_MNIST_DIR", str(linked))
    dataset = FashionMNIST(FashionMNIST.Params(test_size=20))
    assert dataset.folder() == (linked, "$SSLX_FASHION_MNIST_DIR")
    assert dataset.split("test").images.shape == (20, 28, 28, 1)

    write_fake_dataset(tmp_path / "fake", n_train=5, n_test=3)
    monkeypatch.setenv("SSLX_FASHION_MNIST_DIR", str(tmp_path / "fake"))
    fake = FashionMNIST(FashionMNIST.Params()).split("train")  # read from there, not from the Debian folder
    assert len(fake) == 5 and [int(fake.image(i).max()) for i in range(5)] == [0, 1, 2, 3, 4]


def test_root_param_wins_over_the_env_var(monkeypatch, tmp_path):
    write_fake_dataset(tmp_path / "fake", n_train=4, n_test=2)
    monkeypatch.setenv("SSLX_FASHION_MNIST_DIR", str(link_real_files(tmp_path / "linked")))
    dataset = FashionMNIST(FashionMNIST.Params(root=str(tmp_path / "fake")))
    assert dataset.folder() == (tmp_path / "fake", "the dataset's `root` parameter")
    assert len(dataset.split("train")) == 4 and len(dataset.split("test")) == 2
    assert dataset.split("test").labels.tolist() == [0, 1]


# -- missing and damaged files --------------------------------------------------


def test_missing_files_via_root_name_the_folder_and_the_fixes(tmp_path):
    with pytest.raises(sslx.UserError) as err:
        FashionMNIST(FashionMNIST.Params(root=str(tmp_path))).split("train")
    message = str(err.value)
    assert str(tmp_path) in message and "`root`" in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "SSLX_FASHION_MNIST_DIR" in message


def test_missing_files_via_env_var_name_the_folder(monkeypatch, tmp_path):
    empty = tmp_path / "nothing here"
    monkeypatch.setenv("SSLX_FASHION_MNIST_DIR", str(empty))
    with pytest.raises(sslx.UserError) as err:
        FashionMNIST(FashionMNIST.Params()).split("test")
    message = str(err.value)
    assert str(empty) in message and "$SSLX_FASHION_MNIST_DIR" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_only_the_missing_file_is_named(tmp_path):
    folder = link_real_files(tmp_path, skip=("t10k-labels-idx1-ubyte.gz",))
    dataset = FashionMNIST(FashionMNIST.Params(root=str(folder)))
    with pytest.raises(sslx.UserError) as err:
        dataset.split("test")
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value) and "t10k-images" not in str(err.value)
    assert len(dataset.split("train")) == 60000  # the other split is still fine


def _corrupt(data: bytes) -> dict[str, bytes]:
    half = data[: len(data) // 2]
    return {
        "truncated gzip": half,
        "damaged gzip stream": data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:],
        "not gzip": b"definitely not an idx file",
    }


@pytest.mark.parametrize("kind", ["truncated gzip", "damaged gzip stream", "not gzip"])
def test_damaged_file_is_a_user_error_naming_it(tmp_path, kind):
    label_name = "t10k-labels-idx1-ubyte.gz"
    folder = link_real_files(tmp_path, skip=(label_name,))
    (folder / label_name).write_bytes(_corrupt((REAL / label_name).read_bytes())[kind])
    with pytest.raises(sslx.UserError) as err:
        FashionMNIST(FashionMNIST.Params(root=str(folder))).split("test")
    assert str(folder / label_name) in str(err.value)


def test_image_and_label_counts_must_agree(tmp_path):
    write_fake_dataset(tmp_path, n_train=5)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(sslx.UserError) as err:
        FashionMNIST(FashionMNIST.Params(root=str(tmp_path))).split("train")
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in str(err.value)


# -- read_idx -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (3, 28, 28)])
def test_read_idx_of_a_hand_written_file(tmp_path, shape, gz):
    array = (np.arange(int(np.prod(shape))) * 7 % 256).astype(np.uint8).reshape(shape)
    data = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_read_idx_known_bytes(tmp_path):
    """A 2x2 file spelled out byte by byte."""
    path = tmp_path / "tiny.idx"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 255]))
    assert read_idx(path).tolist() == [[1, 2], [3, 255]]


@pytest.mark.parametrize(
    "data,reason",
    [
        (bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3]), "truncated"),  # 3 of 4 values
        (bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3]), "truncated"),  # one value too many
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated"),  # header cut short
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "bad header"),  # float data
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "bad header"),
        (bytes([0, 0, 8]), "bad header"),
    ],
    ids=["short-body", "long-body", "short-header", "float-type", "bad-magic", "tiny"],
)
def test_read_idx_rejects_malformed_files(tmp_path, data, reason):
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(sslx.UserError, match=reason) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(sslx.UserError, match="cannot read"):
        read_idx(tmp_path / "absent.idx")
