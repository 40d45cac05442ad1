"""The ``reid`` evaluator: re-identification top-1 of tracked objects."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.engine.data import derive_seed
from sslx_tracks.patches import clip_tracks, crop_box, cut, frame_pairs


class ReID(sslx.Evaluator):
    """Re-identification top-1: for each object of up to ``num_clips`` test
    clips, a query patch at one frame and a gallery patch at least ``gap``
    frames later; a query is right when its most cosine-similar gallery patch
    (among those of every object of every chosen clip) is of the same object.
    Crops use the object's box enlarged by ``context`` and disturbed by
    ``box_jitter`` (a detector's imprecise boxes). Needs a test split with
    object tracks; reports ``reid_top1`` in [0, 1] and ``reid_gallery``, the
    gallery size."""

    name = "reid"

    class Params(sslx.Params):
        num_clips: int = Field(
            200, ge=1, description="Test clips used (a seeded choice; all when the split has fewer)."
        )
        gap: int = Field(
            8, ge=1, description="Smallest distance in frames from an object's query patch to its gallery patch."
        )
        min_visible: float = Field(
            0.5, ge=0, le=1, description="Use only frames where this fraction of the object shows."
        )
        context: float = Field(
            1.2, gt=0, le=4, description="Side of the square crop as a multiple of the object box's longer side."
        )
        box_jitter: float = Field(
            0.15,
            ge=0,
            lt=1,
            description="Random scale and shift of each crop, as a fraction of its side (0: exact ground-truth boxes).",
        )
        patch_size: int = Field(
            32,
            ge=4,
            le=1024,
            description="Side in pixels the crops are resized to before the "
            "augmentation's evaluation view (use the sampler's patch_size).",
        )

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        queries, gallery, ids = self.patches(ctx.dataset.split("test"), ctx.augmentation, ctx.seed)
        q = F.normalize(embed(ctx, queries), dim=1)
        g = F.normalize(embed(ctx, gallery), dim=1)
        return {"reid_top1": reid_top1(q, g, ids.to(q.device)), "reid_gallery": float(len(gallery))}

    def patches(
        self, split: sslx.ImageSplit, augmentation: sslx.Augmentation, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query and gallery views ``(N, C, h, w)`` (row ``n`` of both is the
        same object) and the objects' track ids ``(N,)``, drawn with ``seed``."""
        p = self.params
        rng = np.random.default_rng(derive_seed(seed, 7))  # 7: this evaluator's own stream of the run's seed
        clips = np.sort(rng.choice(len(split), size=min(p.num_clips, len(split)), replace=False))
        queries, gallery, ids = [], [], []
        for index in clips:
            tracks = clip_tracks(split, int(index), f"evaluator {self.name!r}")
            frames = split.frames(int(index))  # type: ignore[attr-defined]
            for k in range(tracks.visible.shape[1]):
                pairs = frame_pairs(tracks.visible[:, k], p.min_visible, p.gap, None)
                pairs = pairs[pairs[:, 1] > pairs[:, 0]]  # the gallery patch comes later
                if not len(pairs):
                    continue
                t_query, t_gallery = pairs[rng.integers(len(pairs))]
                queries.append(self.view(frames[t_query], tracks.boxes[t_query, k], augmentation, rng))
                gallery.append(self.view(frames[t_gallery], tracks.boxes[t_gallery, k], augmentation, rng))
                ids.append(int(tracks.ids[k]))
        if not ids:
            raise sslx.UserError(
                f"evaluator 'reid' found no object at least {p.min_visible} visible in two frames {p.gap} or more apart "
                f"in {len(clips)} test clips: lower the reid evaluator's gap or min_visible, or use longer clips."
            )
        return torch.stack(queries), torch.stack(gallery), torch.as_tensor(ids)

    def view(
        self, frame: np.ndarray, box: np.ndarray, augmentation: sslx.Augmentation, rng: np.random.Generator
    ) -> torch.Tensor:
        """The evaluation view of the object in ``box``: its enlarged, jittered
        crop resized to ``patch_size``, through ``augmentation.eval``."""
        p = self.params
        return augmentation.eval(cut(frame, crop_box(box, p.context, p.box_jitter, rng), p.patch_size))


@torch.no_grad()
def embed(ctx: sslx.EvalContext, views: torch.Tensor) -> torch.Tensor:
    """The encoder's float32 features of ``views`` on ``ctx.device``, in
    batches of ``ctx.batch_size``, in eval mode (the encoder's mode is
    restored afterwards)."""
    encoder = ctx.encoder
    was_training = encoder.training
    encoder.eval()
    try:
        out = []
        for x in views.split(ctx.batch_size):
            x = x.to(ctx.device, memory_format=ctx.memory_format)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"):
                out.append(encoder(x).float())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def reid_top1(queries: torch.Tensor, gallery: torch.Tensor, ids: torch.Tensor) -> float:
    """Fraction of queries whose most similar gallery row (dot product of the
    L2-normalised ``(N, D)`` features; ties go to the first row) has the same
    id; row ``n`` of ``queries`` and of ``gallery`` belong to object ``ids[n]``."""
    best = (queries @ gallery.T).argmax(dim=1)
    return int((ids[best] == ids).sum()) / len(ids)
