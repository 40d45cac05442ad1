"""PIRL: pretext-invariant representations. An image and the shuffled jigsaw
tiles of the same image are pulled towards one memory-bank entry."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from sslx_memorybank.loss import nce_log_z
from torch import nn

import sslx
from sslx import distributed
from sslx.modules import MemoryBank
from sslx_pirl.loss import pirl_loss


class PIRLParams(sslx.Params):
    loss: Literal["softmax", "nce"] = Field(
        "softmax",
        description="softmax: cross-entropy over the bank entry (the positive) and the sampled rows (no Z to "
        "estimate); nce: NPID's noise-contrastive estimation with uniform noise, the Z of each branch estimated "
        "once from the first batch.",
    )
    embedding_dim: int = Field(
        128,
        ge=1,
        description="Size of the L2-normalised embeddings f (image) and g (jigsaw), "
        "of each tile's projection, and of the bank rows (128 in PIRL).",
    )
    num_negatives: int = Field(
        4096,
        ge=1,
        description="Bank rows sampled uniformly (with replacement) per batch as "
        "negatives, shared by both branches and the whole batch (32000 "
        "in PIRL on ImageNet; a few thousand suits small datasets).",
    )
    temperature: float = Field(0.07, gt=0, le=10, description="Temperature tau of the similarities (0.07 in PIRL).")
    jigsaw_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="lambda of eq. 5: weight of the jigsaw term; the image term gets 1 - lambda (0.5 in PIRL).",
    )
    bank_momentum: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Weight of the old bank entry when it is updated with "
        "the image embedding f after each step (0.5 in PIRL; 0 "
        "replaces it).",
    )
    grid: int = Field(
        3,
        ge=2,
        le=8,
        description="Tiles per side of the jigsaw view (3, nine tiles, in PIRL); must equal augmentation.grid.",
    )


class PIRL(sslx.Objective):
    """PIRL (Misra & van der Maaten, 2020, arXiv:1912.01991): view 0 (the
    image) goes through the encoder and a linear head f; view 1 (its
    grid*grid shuffled jigsaw tiles, from augmentation 'pirl') goes tile by
    tile through the same encoder, a per-tile linear projection, and, the
    tile features concatenated in the shuffled order, a linear head g. Both
    L2-normalised embeddings are matched against the image's memory-bank
    entry, with negatives sampled from the bank: L = lambda * L(m_I, g) +
    (1 - lambda) * L(m_I, f) (eq. 5). The bank entry moves towards f after
    each optimizer step. The bank (and NCE's Z) is part of the checkpoint;
    under DDP every process writes every process's embeddings. Needs 2 views."""

    name = "pirl"
    Params = PIRLParams

    def __init__(self, params: PIRLParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2, " (the image and its jigsaw tiles)", " and use augmentation 'pirl'")
        self.require_one_sample_per_item("its memory bank keeps one entry per item")
        d = params.embedding_dim
        tiles = params.grid * params.grid
        self.image_head = nn.Linear(encoder.out_dim, d)  # f
        self.tile_projection = nn.Linear(encoder.out_dim, d)  # each tile's features, before concatenation
        self.jigsaw_head = nn.Linear(tiles * d, d)  # g, on the concatenated tile projections
        self.bank = MemoryBank(info.dataset_size, d)
        if params.loss == "nce":  # log Z of each branch (jigsaw, image): NaN until estimated from the first batch
            self.register_buffer("nce_log_z", torch.full((2,), float("nan")))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def _check_views(self, batch: sslx.Batch) -> None:
        image, jigsaw = batch.views
        if image.ndim != 4 or jigsaw.ndim != 5:
            raise sslx.UserError(
                f"objective 'pirl' needs view 0 to be images (B, C, H, W) and view 1 jigsaw tiles (B, tiles, C, tile, "
                f"tile), but got shapes {tuple(image.shape)} and {tuple(jigsaw.shape)}: use augmentation 'pirl' "
                f"(with sampler.views 2), which makes these two views."
            )
        tiles = self.params.grid**2
        if jigsaw.shape[1] != tiles:
            raise sslx.UserError(
                f"objective 'pirl' has grid {self.params.grid} and so expects {tiles} tiles per jigsaw view, but the "
                f"augmentation gives {jigsaw.shape[1]}: set objective.grid equal to augmentation.grid."
            )

    def embed(self, batch: sslx.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The L2-normalised jigsaw and image embeddings ``(g(v_It), f(v_I))``, each ``(B, D)``."""
        self._check_views(batch)
        image, jigsaw = batch.views
        b, t = jigsaw.shape[:2]
        f = self.image_head(self.encoder(image))
        tile_features = self.tile_projection(self.encoder(jigsaw.flatten(0, 1)))  # (B*T, D), tiles of a sample together
        g = self.jigsaw_head(tile_features.reshape(b, t * tile_features.shape[1]))  # concatenated in the shuffled order
        return F.normalize(g, dim=1), F.normalize(f, dim=1)

    def _estimate_log_z(self, g: torch.Tensor, f: torch.Tensor, negatives: torch.Tensor) -> None:
        """Fix NCE's log Z of each branch from the first batch (the mean of every process's estimate)."""
        t, n = self.params.temperature, self.bank.size
        local = torch.stack([nce_log_z(g, negatives, t, n), nce_log_z(f, negatives, t, n)])[None]  # (1, 2)
        gathered = distributed.gather_no_grad(local)  # (processes, 2)
        self.nce_log_z.copy_(torch.logsumexp(gathered, dim=0) - math.log(gathered.shape[0]))

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        p = self.params
        g, f = self.embed(batch)
        positive = self.bank.get(batch.index)  # the bank as it was before this batch
        negatives = self.bank.get(self.bank.sample(p.num_negatives))
        if p.loss == "nce":
            if torch.isnan(self.nce_log_z).any():
                self._estimate_log_z(g, f, negatives)
            log_z = (self.nce_log_z[0], self.nce_log_z[1])
            loss = pirl_loss(g, f, positive, negatives, p.temperature, p.jigsaw_weight, log_z, self.bank.size)
        else:
            loss = pirl_loss(g, f, positive, negatives, p.temperature, p.jigsaw_weight)
        image_embeddings = f.detach().float()
        self._pending = (batch.index, image_embeddings)  # written after the optimizer step
        metrics = {
            "jigsaw_similarity": (g.detach().float() * positive.float()).sum(dim=1).mean(),
            "image_similarity": (image_embeddings * positive.float()).sum(dim=1).mean(),
        }
        return sslx.ObjectiveOutput(loss=loss, embeddings=image_embeddings, metrics=metrics)

    def on_step_end(self, step: int) -> None:
        if self._pending is not None:
            index, features = self._pending
            self.bank.update(index, features, self.params.bank_momentum)
            self._pending = None
