"""Instance discrimination with a memory bank (NPID): every training image is
its own class, represented by a slowly updated entry of a memory bank."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import sslx
from sslx import distributed
from sslx.modules import MemoryBank
from sslx_memorybank.loss import bank_softmax, nce_log_z, npid_nce


class NPIDParams(sslx.Params):
    loss: Literal["nce", "softmax"] = Field(
        "nce",
        description="nce: the paper's noise-contrastive estimation (uniform noise 1/n, Z estimated once from the first "
        "batch); softmax: cross-entropy over the positive and the sampled rows (no Z to estimate; the form PIRL and "
        "CMC use, at least as good in practice).",
    )
    embedding_dim: int = Field(
        128,
        ge=1,
        description="Size of the L2-normalised embedding (a linear projection of "
        "the encoder's features) and of the bank rows (128 in the paper).",
    )
    num_negatives: int = Field(
        4096,
        ge=1,
        description="Bank rows sampled uniformly (with replacement) per batch as "
        "negatives, shared by the batch (4096 in the paper; a few "
        "thousand suits small datasets).",
    )
    temperature: float = Field(
        0.07,
        gt=0,
        le=10,
        description="Temperature tau of the non-parametric softmax (0.07 in "
        "the paper; much higher values learn little).",
    )
    bank_momentum: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Weight of the old bank entry when it is updated with "
        "the new embedding (0.5 in the paper; 0 replaces it).",
    )


class NPID(sslx.Objective):
    """NPID, instance discrimination with a memory bank (Wu et al., 2018,
    arXiv:1805.01978): the encoder and a linear projection give an
    L2-normalised embedding; each image's positive is its own entry of a
    memory bank of the training set (one row per image), the negatives are
    rows sampled uniformly from the bank; NCE or a sampled softmax. Every
    view of a sample is a query against that sample's entry, which is updated
    after the optimizer step with the mean embedding of its views (momentum
    bank_momentum). The bank (and NCE's Z, with loss nce) is part of the
    checkpoint; under DDP every process writes every process's embeddings.
    Works with 1 view."""

    name = "npid"
    Params = NPIDParams

    def __init__(self, params: NPIDParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.head = nn.Linear(encoder.out_dim, params.embedding_dim)
        self.require_one_sample_per_item("its memory bank keeps one entry per item")
        self.bank = MemoryBank(info.dataset_size, params.embedding_dim)
        if params.loss == "nce":  # log Z of the NCE loss: NaN until estimated from the first batch, then fixed
            self.register_buffer("nce_log_z", torch.tensor(float("nan")))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        for v, x in enumerate(batch.views):
            if x.ndim != 4:
                raise sslx.UserError(
                    f"objective 'npid' needs image views (B, C, H, W), but view {v} has shape {tuple(x.shape)}: "
                    f"use an augmentation such as 'mocov2' or 'simclr'."
                )
        p = self.params
        num_views, b = len(batch.views), len(batch)
        z = self.head(self.encoder(torch.cat(batch.views)))  # (V*B, D), view after view
        positive = self.bank.get(batch.index).repeat(num_views, 1)  # the bank as it was before this batch
        negatives = self.bank.get(self.bank.sample(p.num_negatives))
        if p.loss == "nce":
            if torch.isnan(self.nce_log_z):  # the first batch of the run fixes Z (kept in checkpoints)
                local = nce_log_z(z, negatives, p.temperature, self.bank.size).reshape(1)
                gathered = distributed.gather_no_grad(local)  # one estimate per process, equal sample counts
                self.nce_log_z.copy_(torch.logsumexp(gathered, dim=0) - math.log(len(gathered)))
            loss = npid_nce(z, positive, negatives, p.temperature, self.nce_log_z, self.bank.size)
        else:
            loss = bank_softmax(z, positive, negatives, p.temperature)
        embeddings = F.normalize(z.detach().float(), dim=1)
        # written after the optimizer step: the loss above read the bank as it was
        self._pending = (batch.index, embeddings.view(num_views, b, -1).mean(dim=0))
        similarity = (embeddings * positive.float()).sum(dim=1).mean()
        return sslx.ObjectiveOutput(loss=loss, embeddings=z[:b].detach(), metrics={"positive_similarity": similarity})

    def on_step_end(self, step: int) -> None:
        if self._pending is not None:
            index, features = self._pending
            self.bank.update(index, features, self.params.bank_momentum)
            self._pending = None
