"""The ``av_retrieval`` evaluator: find each test clip's frame from its sound, and its sound from its frame."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

import sslx
from sslx_audiovideo.sampler import audio_window, window_start


def retrieval_top1(queries: torch.Tensor, keys: torch.Tensor) -> float:
    """Fraction of rows ``i`` of ``queries`` (``(N, D)``) whose most similar
    row of ``keys`` (``(N, D)``, dot product) is row ``i``; ties go to the
    lowest index, as ``argmax`` breaks them."""
    best = (queries @ keys.T).argmax(dim=1)
    return float((best == torch.arange(len(queries), device=best.device)).float().mean())


class AVRetrieval(sslx.Evaluator):
    """Audio-to-video retrieval top-1 among N test clips: for each clip, the
    middle frame (frame T // 2, the one `image(i)` gives) is embedded by the
    objective's video branch and the sound window centred on that frame's
    time by its audio branch; a clip counts when its sound's most similar
    frame among the N is its own (av_retrieval_top1), or its frame's most
    similar sound is its own (av_retrieval_v2a_top1). Chance is 1/N. Needs
    an objective with embed_video and embed_audio, such as 'avc'."""

    name = "av_retrieval"

    class Params(sslx.Params):
        num_clips: int = Field(
            100, ge=2, description="Test clips retrieved among (a seeded choice; all of them when the split has fewer)."
        )
        audio_seconds: float = Field(
            0.5, gt=0, le=10, description="Length of the sound window in seconds (use the sampler's audio_seconds)."
        )

    def evaluate(self, ctx: sslx.EvalContext) -> dict[str, float]:
        objective = self._objective(ctx)
        split = self._split(ctx)
        chosen = self._clips(ctx, len(split))
        frames, sounds = self._views(ctx, split, chosen)
        modes = {m: m.training for m in objective.modules()}
        objective.eval()
        try:
            video = self._embed(ctx, objective.embed_video, frames)  # type: ignore[attr-defined]
            audio = self._embed(ctx, objective.embed_audio, sounds)  # type: ignore[attr-defined]
        finally:
            for module, training in modes.items():
                module.training = training
        return {
            "av_retrieval_top1": retrieval_top1(audio, video),
            "av_retrieval_v2a_top1": retrieval_top1(video, audio),
            "av_retrieval_clips": float(len(chosen)),
        }

    def _objective(self, ctx: sslx.EvalContext) -> sslx.Objective:
        objective = ctx.objective
        if objective is None or not (hasattr(objective, "embed_video") and hasattr(objective, "embed_audio")):
            what = "no objective" if objective is None else f"objective {getattr(objective, 'name', '?')!r}"
            raise sslx.UserError(
                f"evaluator 'av_retrieval' embeds frames and sounds with the objective's two branches (embed_video, "
                f"embed_audio), but this run has {what} without them: use objective 'avc', or remove the evaluator."
            )
        return objective

    def _split(self, ctx: sslx.EvalContext) -> sslx.ClipSplit:
        split = ctx.dataset.split("test")
        if not isinstance(split, sslx.ClipSplit) or split.sample_rate is None:
            raise sslx.UserError(
                f"evaluator 'av_retrieval' needs a test split of clips with sound, but dataset "
                f"{getattr(ctx.dataset, 'name', '?')!r} gives {type(split).__name__} without audio: use a dataset "
                f"with audio (such as 'talking_digits'), or remove the evaluator."
            )
        if len(split) < 2:
            raise sslx.UserError(
                f"evaluator 'av_retrieval' retrieves among test clips, but dataset "
                f"{getattr(ctx.dataset, 'name', '?')!r} has {len(split)} test clip(s): use more test clips (at least 2), "
                f"or remove the evaluator."
            )
        return split

    def _clips(self, ctx: sslx.EvalContext, size: int) -> np.ndarray:
        if size <= self.params.num_clips:
            return np.arange(size)
        return np.sort(np.random.default_rng(ctx.seed).choice(size, self.params.num_clips, replace=False))

    def _views(
        self, ctx: sslx.EvalContext, split: sslx.ClipSplit, chosen: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation view of each chosen clip's middle frame ``(N, C, H,
        W)`` and the sound window centred on its time ``(N, S)``."""
        rate = int(split.sample_rate)  # type: ignore[arg-type]
        length = max(1, int(round(self.params.audio_seconds * rate)))
        frames, sounds = [], []
        for i in chosen.tolist():
            clip = split.frames(i)
            middle = len(clip) // 2
            frames.append(ctx.augmentation.eval(clip[middle]))
            start = window_start(middle / split.fps, rate, length)
            sounds.append(torch.from_numpy(audio_window(split.audio(i), start, length)))
        return torch.stack(frames), torch.stack(sounds)

    @torch.no_grad()
    def _embed(self, ctx: sslx.EvalContext, embed, inputs: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in inputs.split(ctx.batch_size):
            chunk = chunk.to(ctx.device, memory_format=ctx.memory_format) if chunk.ndim == 4 else chunk.to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"):
                out.append(embed(chunk).float())
        return torch.cat(out)
