"""``image_folder``: real photos (scikit-image's astronaut, chelsea, coffee
and crops of them) written as PNG and JPEG into class folders; labels,
pixels, grayscale loading, and the errors for unusable folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image
from skimage import data as photos
from sslx_datasets.images import IMAGENET_MEAN, IMAGENET_STD, ImageFolder

import sslx

# relative path -> (the array written, its class index when labeled)
TRAIN = {
    "cat/chelsea.png": (lambda: photos.chelsea(), 0),
    "cat/chelsea_face.jpg": (lambda: photos.chelsea()[40:160, 100:190], 0),
    "coffee/coffee_crop.png": (lambda: photos.coffee()[50:250, 100:400], 1),
    "coffee/sub/coffee_small.png": (lambda: photos.coffee()[::8, ::8], 1),
    "person/astronaut.jpg": (lambda: photos.astronaut(), 2),
    "person/face.png": (lambda: photos.astronaut()[30:130, 170:270], 2),
}
TEST = {
    "cat/ear.png": (lambda: photos.chelsea()[:64, :48], 0),
    "coffee/cup.png": (lambda: photos.coffee()[100:164, 200:264], 1),
    "person/helmet.jpg": (lambda: photos.astronaut()[:100, :100], 2),
}
TOP_LEVEL = "loose.png"  # an image outside any class folder


def write_tree(root: Path, files: dict) -> dict[str, np.ndarray]:
    written = {}
    for rel, (make, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(make())
        options = {"quality": 95} if path.suffix == ".jpg" else {}
        Image.fromarray(array).save(path, **options)
        written[rel] = array
    return written


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("photos")
    train = write_tree(base / "train", TRAIN)
    train.update(write_tree(base / "train", {TOP_LEVEL: (lambda: photos.coffee()[:50, :70], None)}))
    (base / "train" / "notes.txt").write_text("not an image")
    test = write_tree(base / "test", TEST)
    return {"train_root": base / "train", "test_root": base / "test", "train": train, "test": test}


def relative(split, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in split.files]


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, the formula of PIL's "L" conversion."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def test_labeled_split_labels_by_sorted_class_folder(tree):
    dataset = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), labeled=True))
    split = dataset.split("train")
    names = relative(split, tree["train_root"])
    assert sorted(names) == sorted(TRAIN)  # every image in a class folder (nested too); no loose file, no .txt
    assert split.labels.dtype == np.int64
    assert [int(label) for label in split.labels] == [TRAIN[n][1] for n in names]
    assert split.info == sslx.DataInfo(channels=3, image_size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=3)


def test_png_images_come_back_exactly_and_jpeg_closely(tree):
    split = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), labeled=True)).split("train")
    for i, name in enumerate(relative(split, tree["train_root"])):
        image, written = split.image(i), tree["train"][name]
        assert image.dtype == np.uint8 and image.shape == written.shape and image.shape[2] == 3
        if name.endswith(".png"):
            np.testing.assert_array_equal(image, written)
        else:
            assert np.abs(image.astype(float) - written).mean() < 4  # JPEG at quality 95


def test_grayscale_loads_one_channel_luma(tree):
    dataset = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), labeled=True, grayscale=True))
    split = dataset.split("train")
    assert split.info.channels == 1 and split.info.mean == (0.5,) and split.info.std == (0.25,)
    for i, name in enumerate(relative(split, tree["train_root"])):
        image, written = split.image(i), tree["train"][name]
        assert image.dtype == np.uint8 and image.shape == (*written.shape[:2], 1)
        if name.endswith(".png"):
            assert np.abs(image[..., 0].astype(float) - luma(written.astype(float))).max() <= 1


def test_unlabeled_split_takes_every_image_below_root(tree):
    split = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]))).split("train")
    assert split.labels is None and split.info.num_classes is None
    names = relative(split, tree["train_root"])
    assert names == sorted(names) and sorted(names) == sorted([*TRAIN, TOP_LEVEL])
    np.testing.assert_array_equal(split.image(names.index(TOP_LEVEL)), tree["train"][TOP_LEVEL])


def test_test_split_uses_the_train_class_indices(tree):
    dataset = ImageFolder(
        ImageFolder.Params(root=str(tree["train_root"]), test_root=str(tree["test_root"]), labeled=True)
    )
    dataset.split("train")
    split = dataset.split("test")
    names = relative(split, tree["test_root"])
    assert [int(label) for label in split.labels] == [TEST[n][1] for n in names]
    assert split.info.num_classes == 3
    for i, name in enumerate(names):
        if name.endswith(".png"):
            np.testing.assert_array_equal(split.image(i), tree["test"][name])


def test_custom_normalisation_is_passed_on(tree):
    params = ImageFolder.Params(root=str(tree["train_root"]), mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    info = ImageFolder(params).split("train").info
    assert info.mean == (0.1, 0.2, 0.3) and info.std == (0.4, 0.5, 0.6)


# -- errors ---------------------------------------------------------------------


def test_test_split_needs_test_root(tree):
    with pytest.raises(sslx.UserError, match="test_root"):
        ImageFolder(ImageFolder.Params(root=str(tree["train_root"]))).split("test")


def test_missing_folder(tmp_path):
    missing = tmp_path / "no such folder"
    with pytest.raises(sslx.UserError) as err:
        ImageFolder(ImageFolder.Params(root=str(missing))).split("train")
    assert str(missing) in str(err.value) and "dataset.root" in str(err.value)


def test_missing_test_folder(tree, tmp_path):
    missing = tmp_path / "absent"
    dataset = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), test_root=str(missing)))
    with pytest.raises(sslx.UserError) as err:
        dataset.split("test")
    assert str(missing) in str(err.value) and "dataset.test_root" in str(err.value)


def test_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("no images here")
    with pytest.raises(sslx.UserError) as err:
        ImageFolder(ImageFolder.Params(root=str(tmp_path))).split("train")
    assert str(tmp_path) in str(err.value) and "no images" in str(err.value)


def test_labeled_without_class_folders(tmp_path):
    Image.fromarray(photos.chelsea()[:32, :32]).save(tmp_path / "one.png")
    with pytest.raises(sslx.UserError) as err:
        ImageFolder(ImageFolder.Params(root=str(tmp_path), labeled=True)).split("train")
    assert str(tmp_path) in str(err.value) and "class subfolders" in str(err.value)
    assert ImageFolder(ImageFolder.Params(root=str(tmp_path))).split("train").labels is None  # fine unlabeled


def test_test_classes_must_match_train_classes(tree, tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.fromarray(photos.chelsea()[:32, :32]).save(tmp_path / cls / "x.png")
    dataset = ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), test_root=str(tmp_path), labeled=True))
    with pytest.raises(sslx.UserError) as err:
        dataset.split("test")  # scanned before the train split: classes still come from root
    message = str(err.value)
    assert "dataset.test_root" in message and str(tmp_path) in message
    assert "(cat, dog)" in message and "person" in message


def broken_folder(root: Path) -> list[Path]:
    """Two good photos and the three bad files a user found one run at a time:
    an empty .jpg, a JPEG cut in half, a text file named .png."""
    write_tree(root, {"good1.png": TRAIN["cat/chelsea.png"], "good2.jpg": TRAIN["person/astronaut.jpg"]})
    (root / "empty.jpg").write_bytes(b"")
    whole = (root / "good2.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notes.png").write_text("a text file with an image's name")
    return [root / "empty.jpg", root / "notes.png", root / "truncated.jpg"]


def test_every_unreadable_file_is_reported_at_once_before_training(tmp_path):
    bad = broken_folder(tmp_path)
    with pytest.raises(sslx.UserError) as err:
        ImageFolder(ImageFolder.Params(root=str(tmp_path))).split("train")
    message = str(err.value)
    assert "3 of the 5 image files" in message and "dataset.skip_unreadable" in message
    for path in bad:
        assert str(path) in message
    assert "good1.png" not in message and "good2.jpg" not in message


def test_unreadable_files_can_be_skipped_and_are_counted(tmp_path):
    broken_folder(tmp_path)
    dataset = ImageFolder(ImageFolder.Params(root=str(tmp_path), skip_unreadable=True))
    split = dataset.split("train")
    assert [p.name for p in split.files] == ["good1.png", "good2.jpg"]
    assert split.image(1).shape == photos.astronaut().shape
    report = dataset.report()
    assert report["skipped_files"] == {"train": 3}
    assert set(report["skipped_examples"]["train"]) == {str(p) for p in broken_folder(tmp_path)}


def test_a_file_broken_after_the_scan_still_names_itself(tmp_path):
    write_tree(tmp_path, {"a.png": TRAIN["cat/chelsea.png"]})
    split = ImageFolder(ImageFolder.Params(root=str(tmp_path))).split("train")
    (tmp_path / "a.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(sslx.UserError) as err:
        split.image(0)
    assert str(tmp_path / "a.png") in str(err.value)


@pytest.mark.parametrize(
    "params", [{"mean": (0.5,)}, {"std": (0.2, 0.2)}, {"grayscale": True, "mean": (0.5, 0.5, 0.5)}]
)
def test_normalisation_needs_one_value_per_channel(tree, params):
    with pytest.raises(sslx.UserError, match="one per channel"):
        ImageFolder(ImageFolder.Params(root=str(tree["train_root"]), **params)).split("train")


def test_unknown_split_and_missing_root(tree):
    with pytest.raises(sslx.UserError, match="'val'"):
        ImageFolder(ImageFolder.Params(root=str(tree["train_root"]))).split("val")
    with pytest.raises(pydantic.ValidationError):
        ImageFolder.Params()
