"""The ``audio_video`` pair sampler: a clip's frame and its own sound at the
same time are positives; other clips' sound, and the same clip's sound at
another time, are negatives.

Time convention (as :class:`sslx.ClipSplit` defines it): frame ``f`` of a
clip is at ``f / fps`` seconds and audio sample ``s`` at ``s / sample_rate``
seconds, both counted from the clip's first frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

import sslx


def window_start(time: float, sample_rate: int, length: int) -> int:
    """First sample of the ``length``-sample window centred on ``time``
    seconds: the window covers samples ``[c - length // 2, c - length // 2 +
    length)`` with ``c`` the sample nearest to ``time``, so its centre is
    within half a sample of ``time``."""
    return int(math.floor(time * sample_rate + 0.5)) - length // 2


def audio_window(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """Samples ``start .. start + length - 1`` of ``audio`` as float32, with
    zeros where the window runs past either end of the clip."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, len(audio))
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def spaced_frames(rng: np.random.Generator, first: int, last: int, count: int, min_gap: int) -> np.ndarray | None:
    """``count`` sorted frame indices in ``[first, last]``, consecutive ones at
    least ``min_gap`` apart, drawn uniformly among all such sets; ``None``
    when no such set exists.

    The bijection behind it: sorted ``z_0 < ... < z_{count-1}`` from
    ``range(slack + count)`` give frames ``first + z_i + i * (min_gap - 1)``,
    with ``slack = last - first - (count - 1) * min_gap``.
    """
    slack = last - first - (count - 1) * min_gap
    if slack < 0:
        return None
    z = np.sort(rng.choice(slack + count, size=count, replace=False))
    return first + z + np.arange(count) * (min_gap - 1)


class AudioVideo(sslx.PairSampler):
    """Audio-visual correspondence: each clip gives ``pairs`` samples at times
    at least ``min_shift`` seconds apart; a sample is [the frame at time t
    through the augmentation, the clip's waveform window of ``audio_seconds``
    centred on t (zero-padded at the clip's ends), with a random gain]. A
    frame and its own sound are positives; the sound of other clips and of
    the same clip at another time (shifted by at least ``min_shift``) are
    negatives. Needs clips with audio (a ClipSplit with a sample rate)."""

    name = "audio_video"

    class Params(sslx.Params):
        audio_seconds: float = Field(
            0.5, gt=0, le=10, description="Length of the audio view in seconds, centred on the frame's time."
        )
        pairs: int = Field(
            2,
            ge=1,
            le=16,
            description="Samples (times) drawn from each clip; the other samples of a "
            "clip are its sound shifted in time, hard negatives.",
        )
        min_shift: float = Field(
            0.75,
            ge=0,
            description="Seconds between any two times drawn from one clip, so the "
            "other samples' audio really is a shifted, different sound "
            "(keep it above audio_seconds for non-overlapping windows).",
        )
        gain_db: float = Field(
            6.0,
            ge=0,
            le=40,
            description="The audio view is scaled by a gain drawn uniformly in +-gain_db decibels (0: unchanged).",
        )

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return self.params.pairs

    @property
    def num_views(self) -> int:
        return 2

    def sample_group(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[sslx.Sample]:
        rate = self._sample_rate(split)
        frames = split.frames(index)  # type: ignore[attr-defined]
        audio = split.audio(index)  # type: ignore[attr-defined]
        length = max(1, int(round(self.params.audio_seconds * rate)))
        chosen = self._times(index, len(frames), float(split.fps), rate, len(audio), length)  # type: ignore[attr-defined]
        samples = []
        for f in chosen:
            time = f / split.fps  # type: ignore[attr-defined]
            start = window_start(time, rate, length)
            gain = 10.0 ** (self.rng.uniform(-self.params.gain_db, self.params.gain_db) / 20.0)
            sound = torch.from_numpy(audio_window(audio, start, length) * np.float32(gain))
            video = augmentation.view(frames[f], 0)
            meta = {
                "time": time,
                "audio_start": start / rate,
                "frame_index": int(f),
                "clip": index,
                "sample_rate": rate,
                "gain": gain,
            }
            samples.append(sslx.Sample([video, sound], meta=meta))
        return samples

    def _sample_rate(self, split: sslx.ImageSplit) -> int:
        rate = getattr(split, "sample_rate", None)
        if not isinstance(split, sslx.ClipSplit) or rate is None:
            what = "image items, not clips" if not isinstance(split, sslx.ClipSplit) else "clips without audio"
            raise sslx.UserError(
                f"sampler 'audio_video' needs video clips with sound, but the dataset's split "
                f"({type(split).__name__}) holds {what}: use a dataset with audio, such as 'talking_digits', or "
                f"'video_folder' with audio set to true."
            )
        return int(rate)

    def _times(self, index: int, num_frames: int, fps: float, rate: int, num_samples: int, length: int) -> np.ndarray:
        """The frame indices of the clip's samples: ``pairs`` frames at least
        ``min_shift`` apart, among those whose audio window lies inside the
        clip's sound when enough do, else among all frames."""
        p = self.params
        min_gap = max(1, math.ceil(p.min_shift * fps - 1e-9))
        fits = [f for f in range(num_frames) if 0 <= window_start(f / fps, rate, length) <= num_samples - length]
        if fits:
            chosen = spaced_frames(self.rng, fits[0], fits[-1], p.pairs, min_gap)
            if chosen is not None:
                return chosen
        chosen = spaced_frames(self.rng, 0, num_frames - 1, p.pairs, min_gap)
        if chosen is None:
            raise sslx.UserError(
                f"sampler 'audio_video' draws {p.pairs} times at least {p.min_shift} s apart from each clip, but clip "
                f"{index} has only {num_frames} frames ({num_frames / fps:.3g} s at {fps:g} fps): lower sampler.pairs or "
                f"sampler.min_shift, or use longer clips."
            )
        return chosen
