"""The frames pair sampler: two frames close in time in one video clip are
positives; frames far apart in time in the same clip, and frames of other
clips, are negatives (temporal coherence, as in slow-feature and
time-contrastive learning)."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

import sslx

__all__ = ["Frames", "draw_times", "frames_needed"]


def frames_needed(pairs: int, min_offset: int, gap: int) -> int:
    """The shortest clip that holds ``pairs`` samples of two frames
    ``min_offset`` apart, each sample ``gap`` frames from the next: the
    samples packed tightly one after another."""
    return pairs * min_offset + (pairs - 1) * gap + 1


def draw_times(length: int, window: int, min_offset: int, gap: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Random frame indices ``(pairs, 2)`` in a clip of ``length`` frames:
    row ``k`` holds the two frames of sample ``k`` (``|t - t'|`` between
    ``min_offset`` and ``window``), and every frame of one sample lies at
    least ``gap`` frames from every frame of another.

    How: each sample's offset ``t' - t`` is drawn within what the clip can
    still hold, the samples laid out in time order with at least ``gap``
    frames between them and the spare frames spread at random before,
    between and after them; then the samples are shuffled and each pair is
    put in a random order. Needs ``length >= frames_needed(pairs,
    min_offset, gap)``."""
    spare = length - frames_needed(pairs, min_offset, gap)
    if spare < 0:
        raise ValueError(
            f"a clip of {length} frames cannot hold {pairs} samples with min_offset {min_offset} and gap {gap}"
        )
    offsets = np.empty(pairs, dtype=np.int64)
    for k in range(pairs):
        extra = int(rng.integers(0, min(window - min_offset, spare) + 1))
        offsets[k] = min_offset + extra
        spare -= extra
    offsets = offsets[rng.permutation(pairs)]
    shifts = np.sort(rng.integers(0, spare + 1, size=pairs))  # spare frames before each sample, cumulated
    starts = shifts + np.concatenate([[0], np.cumsum(offsets[:-1] + gap)])
    times = np.stack([starts, starts + offsets], axis=1)
    swap = rng.random(pairs) < 0.5
    times[swap] = times[swap, ::-1]
    return times[rng.permutation(pairs)]


class FramesParams(sslx.Params):
    window: int = Field(
        2,
        ge=0,
        description="Largest distance in frames between the two frames of a positive pair "
        "(0: both views come from the same frame).",
    )
    min_offset: int = Field(
        1,
        ge=0,
        description="Smallest distance in frames between the two frames of a positive "
        "pair; the distance is drawn uniformly in [min_offset, window] "
        "where the clip has room.",
    )
    gap: int = Field(
        6,
        ge=1,
        description="Smallest distance in frames between any frame of one sample and any frame "
        "of another sample of the same clip (they are each other's negatives); "
        "must exceed window.",
    )
    pairs: int = Field(
        2,
        ge=1,
        le=32,
        description="Samples (pairs of frames) drawn per clip: the sampler's group "
        "size; trainer.batch_size must be a multiple of it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FramesParams:
        if self.min_offset > self.window:
            raise ValueError(
                f"min_offset ({self.min_offset}) must not exceed window ({self.window}): lower "
                f"min_offset or raise window."
            )
        if self.gap <= self.window:
            raise ValueError(
                f"gap ({self.gap}) must exceed window ({self.window}): frames of different samples are "
                f"negatives and must lie farther apart than the frames of a positive pair. Raise gap or "
                f"lower window."
            )
        return self


class Frames(sslx.PairSampler):
    """Frames of a video (temporal coherence): each clip gives `pairs`
    samples of two frames between min_offset and window frames apart; the
    frames of different samples of a clip lie at least `gap` frames apart,
    so the in-batch negatives of a sample are distant moments of its own
    clip and the frames of other clips. Each frame is augmented
    (augmentation.view, views 0 and 1). Needs a video dataset (a clip
    split). Meta: frames (the two frame indices, view 0 first) and clip (the
    clip's index)."""

    name = "frames"
    Params = FramesParams

    @property
    def num_views(self) -> int:
        return 2

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return self.params.pairs

    def _clip(self, split: sslx.ImageSplit, index: int) -> np.ndarray:
        """The frames of clip ``index``; UserErrors for splits without clips
        and clips too short for the parameters."""
        if not isinstance(split, sslx.ClipSplit):
            raise sslx.UserError(
                f"sampler 'frames' draws frames of video clips, but the dataset's split ({type(split).__name__}) "
                f"holds still images: use a video dataset such as 'moving_digits' or "
                f"'video_folder', or an image sampler such as 'crops'."
            )
        clip = split.frames(index)
        p = self.params
        need = frames_needed(p.pairs, p.min_offset, p.gap)
        if len(clip) < need:
            raise sslx.UserError(
                f"sampler 'frames': clip {index} of the dataset ({type(split).__name__}) has {len(clip)} frames, but "
                f"{p.pairs} samples of two frames at least {p.min_offset} apart (min_offset), each at least {p.gap} "
                f"frames from the others (gap), need {need}: lower sampler.pairs, sampler.gap or sampler.min_offset, "
                f"or use longer clips (the dataset's clip length)."
            )
        return clip

    def sample_group(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[sslx.Sample]:
        clip = self._clip(split, index)
        p = self.params
        times = draw_times(len(clip), p.window, p.min_offset, p.gap, p.pairs, self.rng)
        return [
            sslx.Sample(
                [augmentation.view(clip[int(t)], v) for v, t in enumerate(pair)],
                meta={"frames": pair.copy(), "clip": index},
            )
            for pair in times
        ]
