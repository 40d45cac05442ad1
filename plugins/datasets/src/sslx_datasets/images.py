"""Fashion-MNIST from its idx files, and folders of your own images."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

import sslx

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST format: a big-endian header, then uint8 data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupted gzip stream
        raise sslx.UserError(f"{path}: cannot read this idx file ({exc}). Reinstall the dataset files.") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise sslx.UserError(f"{path}: not an idx file of unsigned bytes (bad header). Reinstall the dataset files.")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise sslx.UserError(f"{path}: truncated idx file (its header is cut short). Reinstall it.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise sslx.UserError(f"{path}: truncated idx file ({body.size} values for shape {shape}). Reinstall it.")
    return body.reshape(shape)


class FashionMNIST(sslx.Dataset):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test
    images of clothing, 28x28 grayscale, 10 balanced classes.

    Read from the idx files of Debian's ``dataset-fashion-mnist`` package
    (``/usr/share/datasets/fashion-mnist``), from ``$SSLX_FASHION_MNIST_DIR``,
    or from ``root``. Labels are used only by evaluators.
    """

    name = "fashion_mnist"

    class Params(sslx.Params):
        root: str | None = Field(
            None,
            description="Folder with the four idx .gz files (null: $SSLX_FASHION_MNIST_DIR, else "
            "/usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist).",
        )
        train_size: int | None = Field(
            None, ge=1, le=60000, description="Use only the first N training images (null: all 60,000)."
        )
        test_size: int | None = Field(
            None, ge=1, le=10000, description="Use only the first N test images (null: all 10,000)."
        )

    # Per-channel statistics of the training images.
    MEAN = (0.2860,)
    STD = (0.3530,)
    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

    def __init__(self, params: Params):
        super().__init__(params)
        self._splits: dict[str, sslx.ArraySplit] = {}

    def folder(self) -> tuple[Path, str]:
        if self.params.root:
            return Path(self.params.root), "the dataset's `root` parameter"
        if os.environ.get("SSLX_FASHION_MNIST_DIR"):
            return Path(os.environ["SSLX_FASHION_MNIST_DIR"]), "$SSLX_FASHION_MNIST_DIR"
        return Path(DEBIAN_FASHION_MNIST), "the Debian package location"

    def split(self, name: str) -> sslx.ArraySplit:
        if name not in FASHION_MNIST_FILES:
            raise sslx.UserError(f"fashion_mnist has the splits 'train' and 'test', not {name!r}.")
        if name not in self._splits:
            folder, origin = self.folder()
            image_file, label_file = (folder / f for f in FASHION_MNIST_FILES[name])
            missing = [p.name for p in (image_file, label_file) if not p.exists()]
            if missing:
                raise sslx.UserError(
                    f"Fashion-MNIST files not found: looked in {folder} ({origin}) for {', '.join(missing)}. "
                    f"Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make setup` does "
                    f"this), or download the four idx .gz files from https://github.com/zalandoresearch/fashion-mnist "
                    f"into a folder and set SSLX_FASHION_MNIST_DIR (or dataset.root) to it."
                )
            images = read_idx(image_file)
            labels = read_idx(label_file).astype(np.int64)
            if images.ndim != 3 or len(images) != len(labels):
                raise sslx.UserError(
                    f"{image_file}: expected N 28x28 images matching {label_file.name}, got {images.shape}."
                )
            limit = self.params.train_size if name == "train" else self.params.test_size
            if limit:
                images, labels = images[:limit], labels[:limit]
            info = sslx.DataInfo(channels=1, image_size=(28, 28), mean=self.MEAN, std=self.STD, num_classes=10)
            self._splits[name] = sslx.ArraySplit(np.ascontiguousarray(images[..., None]), labels, info)
        return self._splits[name]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class FileSplit(sslx.ImageSplit):
    """Images read from files on demand."""

    def __init__(self, files: list[Path], labels: np.ndarray | None, info: sslx.DataInfo, mode: str):
        self.files = files
        self.labels = labels
        self.info = info
        self.mode = mode

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            with Image.open(path) as im:
                array = np.asarray(im.convert(self.mode))
        except (OSError, UnidentifiedImageError) as exc:
            raise sslx.UserError(f"{path}: cannot read this image ({exc}). Remove or replace the file.") from None
        return array[..., None] if array.ndim == 2 else array


def unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image (decoded whole: a truncated
    file fails here, not halfway through training), or None."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:  # SyntaxError: PIL's broken-header error
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def check_files(files: list[Path], what: str) -> dict[Path, str]:
    """Every file of ``files`` that cannot be read, with the reason; decoded
    on a few threads (PIL decodes without the GIL), with a progress bar for
    large folders."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        reasons = list(
            tqdm(
                pool.map(unreadable, files),
                total=len(files),
                desc=f"checking {what}",
                leave=False,
                disable=len(files) < 2000,
                mininterval=1.0,
            )
        )
    return {path: reason for path, reason in zip(files, reasons, strict=True) if reason is not None}


class ImageFolder(sslx.Dataset):
    """Your own images in a folder: unlabeled (any tree of image files) or
    labeled (one subfolder per class, torchvision's ImageFolder layout).

    Images may differ in size; the augmentation crops and resizes them. Labels
    (when ``labeled``) are used only by evaluators. Every file is decoded once
    when its split is first loaded (before training starts), and all the
    unreadable ones are reported together, or skipped and counted with
    ``skip_unreadable``.
    """

    name = "image_folder"

    class Params(sslx.Params):
        root: str = Field(description="Folder of training images (searched recursively).")
        test_root: str | None = Field(
            None, description="Folder of test images in the same layout (needed by evaluators)."
        )
        labeled: bool = Field(False, description="Treat each subfolder of root (and test_root) as a class.")
        grayscale: bool = Field(False, description="Load images as 1-channel grayscale instead of RGB.")
        mean: tuple[float, ...] | None = Field(
            None, description="Per-channel mean for normalisation (null: ImageNet's, or 0.5 for grayscale)."
        )
        std: tuple[float, ...] | None = Field(
            None, description="Per-channel std for normalisation (null: ImageNet's, or 0.25 for grayscale)."
        )
        skip_unreadable: bool = Field(
            False,
            description="Skip the files that cannot be read as images (empty, truncated, "
            "not an image) and count them in the run's info (data."
            "skipped_files), instead of stopping before training with a "
            "list of them.",
        )

    def __init__(self, params: Params):
        super().__init__(params)
        self._splits: dict[str, FileSplit] = {}
        self._classes: list[str] | None = None
        self._skipped: dict[str, dict[str, str]] = {}  # split -> {file: reason}

    def report(self) -> dict[str, object]:
        if not self._skipped:
            return {}
        return {
            "skipped_files": {split: len(files) for split, files in self._skipped.items()},
            "skipped_examples": {split: dict(list(files.items())[:5]) for split, files in self._skipped.items()},
        }

    def split(self, name: str) -> FileSplit:
        if name not in ("train", "test"):
            raise sslx.UserError(f"image_folder has the splits 'train' and 'test', not {name!r}.")
        if name not in self._splits:
            root = self.params.root if name == "train" else self.params.test_root
            if name == "test" and self.params.labeled and "train" not in self._splits:
                self.split("train")  # class indices always come from root
            if root is None:
                raise sslx.UserError(
                    "image_folder has no test split: set dataset.test_root to a folder of test images "
                    "(evaluators such as knn need one)."
                )
            self._splits[name] = self._scan(Path(root), name)
        return self._splits[name]

    def _scan(self, root: Path, split: str) -> FileSplit:
        key = "root" if split == "train" else "test_root"
        if not root.is_dir():
            raise sslx.UserError(f"dataset.{key}: {root} is not a folder. Point it at a folder of images.")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise sslx.UserError(f"dataset.{key}: no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}.")
        bad = check_files(files, f"dataset.{key}")
        if bad and not self.params.skip_unreadable:
            shown = "\n".join(f"  {path}: {reason}" for path, reason in list(bad.items())[:50])
            more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
            raise sslx.UserError(
                f"dataset.{key}: {len(bad)} of the {len(files)} image files under {root} cannot be read:\n{shown}{more}\n"
                f"Remove or replace them, or set dataset.skip_unreadable to true to train without them (the run's "
                f"info then counts them under data.skipped_files)."
            )
        if bad:
            self._skipped[split] = {str(path): reason for path, reason in bad.items()}
            files = [p for p in files if p not in bad]
            if not files:
                raise sslx.UserError(f"dataset.{key}: none of the image files under {root} can be read.")
        labels = None
        num_classes = None
        if self.params.labeled:
            classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
            if not classes:
                raise sslx.UserError(
                    f"dataset.{key}: labeled is true but {root} has no class subfolders; put each class's "
                    f"images in root/<class>/, or set labeled to false."
                )
            if self._classes is None:
                self._classes = classes
            elif classes != self._classes:
                raise sslx.UserError(
                    f"dataset.test_root: the classes of {root} ({', '.join(classes)}) differ from those of "
                    f"dataset.root ({', '.join(self._classes)}); both need the same class subfolders."
                )
            index = {c: i for i, c in enumerate(self._classes)}
            files = [p for p in files if len(p.relative_to(root).parts) > 1]
            labels = np.array([index[p.relative_to(root).parts[0]] for p in files], dtype=np.int64)
            num_classes = len(self._classes)
        channels = 1 if self.params.grayscale else 3
        mean = self.params.mean or ((0.5,) if channels == 1 else IMAGENET_MEAN)
        std = self.params.std or ((0.25,) if channels == 1 else IMAGENET_STD)
        if len(mean) != channels or len(std) != channels:
            raise sslx.UserError(f"dataset.mean and dataset.std need {channels} values (one per channel).")
        info = sslx.DataInfo(
            channels=channels, image_size=None, mean=tuple(mean), std=tuple(std), num_classes=num_classes
        )
        return FileSplit(files, labels, info, "L" if channels == 1 else "RGB")
