"""The ``tracks`` pair sampler: an object's patches in two frames of a clip."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

import sslx
from sslx_tracks.patches import clip_tracks, crop_box, cut, frame_pairs


class TrackPatches(sslx.PairSampler):
    """Patches of object tracks: each clip gives ``objects`` samples, one per
    distinct object of the clip; a sample is the object's patch in two frames
    at most ``max_gap`` frames apart where it is at least ``min_visible``
    visible. Patches of one object are positives; patches of the clip's other
    objects, and of other clips, are negatives. Needs a video dataset with
    object tracks (such as 'moving_digits').

    Each patch is a square around the object's box, ``context`` times its
    longer side, shifted and scaled at random by up to ``jitter`` (zero
    outside the frame), resized to ``patch_size`` and passed through the
    augmentation. Samples carry the object's class as label and, in their
    meta, ``track_id``, ``frames`` (2,), ``boxes`` (2, 4) of the crops cut and
    ``clip``."""

    name = "tracks"

    class Params(sslx.Params):
        objects: int = Field(
            2,
            ge=1,
            le=64,
            description="Distinct objects drawn from each clip (samples per item); every "
            "clip must have at least this many objects visible enough in two frames.",
        )
        max_gap: int = Field(
            8, ge=1, description="Largest distance in frames between the two patches of a positive pair."
        )
        min_gap: int = Field(
            1, ge=1, description="Smallest distance in frames between the two patches of a positive pair."
        )
        min_visible: float = Field(
            0.5,
            ge=0,
            le=1,
            description="Use only frames where this fraction of the object shows "
            "(the rest is occluded or outside the frame).",
        )
        context: float = Field(
            1.2,
            gt=0,
            le=4,
            description="Side of the square crop as a multiple of the object box's "
            "longer side (above 1 keeps some surroundings).",
        )
        jitter: float = Field(
            0.1, ge=0, lt=1, description="Random scale and shift of each crop, as a fraction of its side."
        )
        patch_size: int = Field(
            32,
            ge=4,
            le=1024,
            description="Side in pixels of the square patch handed to the "
            "augmentation; set augmentation.size to the views' side.",
        )

        @model_validator(mode="after")
        def _gaps_in_order(self) -> TrackPatches.Params:
            if self.min_gap > self.max_gap:
                raise ValueError(f"min_gap ({self.min_gap}) is above max_gap ({self.max_gap}): set min_gap <= max_gap")
            return self

    @property
    def num_views(self) -> int:
        return 2

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return self.params.objects

    def sample_group(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[sslx.Sample]:
        p = self.params
        tracks = clip_tracks(split, index, f"sampler {self.name!r}")
        pairs = self._pairs_per_object(tracks, index)
        objects = self.rng.choice(sorted(pairs), size=p.objects, replace=False)
        frames = split.frames(index)  # type: ignore[attr-defined]
        samples = []
        for k in objects:
            times = pairs[k][self.rng.integers(len(pairs[k]))]
            boxes = np.stack([crop_box(tracks.boxes[t, k], p.context, p.jitter, self.rng) for t in times])
            patches = [cut(frames[t], box, p.patch_size) for t, box in zip(times, boxes)]
            views = [augmentation.view(patch, v) for v, patch in enumerate(patches)]
            meta = {"track_id": int(tracks.ids[k]), "frames": times.astype(np.int64), "boxes": boxes, "clip": index}
            samples.append(sslx.Sample(views, label=int(tracks.classes[k]), meta=meta))
        return samples

    def _pairs_per_object(self, tracks: sslx.Tracks, index: int) -> dict[int, np.ndarray]:
        """The usable frame pairs of each object of the clip that has any; a
        ``UserError`` when fewer than ``objects`` objects have one."""
        p = self.params
        num_objects = tracks.visible.shape[1]
        if num_objects < p.objects:
            raise sslx.UserError(
                f"sampler 'tracks' draws {p.objects} distinct objects from each clip (sampler.objects), but clip {index} "
                f"has {num_objects}: set sampler.objects to at most {num_objects}, or use clips with more objects."
            )
        pairs = {k: frame_pairs(tracks.visible[:, k], p.min_visible, p.min_gap, p.max_gap) for k in range(num_objects)}
        pairs = {k: v for k, v in pairs.items() if len(v)}
        if len(pairs) < p.objects:
            raise sslx.UserError(
                f"sampler 'tracks' needs {p.objects} objects per clip that are at least {p.min_visible} visible in two "
                f"frames {p.min_gap} to {p.max_gap} apart, but clip {index} has {len(pairs)}: lower sampler.min_visible, "
                f"sampler.min_gap or sampler.objects, or raise sampler.max_gap."
            )
        return pairs
