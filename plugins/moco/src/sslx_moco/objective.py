"""MoCo v2: a momentum (EMA) key encoder and a queue of keys as negatives."""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

import sslx
from sslx.modules import FeatureQueue, cosine_momentum, ema_update, projection_mlp
from sslx_moco.loss import moco_infonce


class MoCoParams(sslx.Params):
    temperature: float = Field(0.2, gt=0, le=10, description="Softmax temperature (0.2 in MoCo v2).")
    queue_size: int = Field(
        65536,
        ge=1,
        description="Negative keys kept in the queue (65536 on ImageNet; a few thousand suits small datasets).",
    )
    momentum: float = Field(0.99, ge=0, le=1, description="EMA momentum of the key encoder at the start of training.")
    momentum_end: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Momentum at the end of training (the cosine schedule rises from momentum to this).",
    )
    momentum_schedule: Literal["cosine", "constant"] = Field(
        "cosine",
        description="cosine: momentum rises to momentum_end (BYOL/MoCo v3); constant: stays at momentum (MoCo v2 used 0.999).",
    )
    proj_hidden_dim: int | None = Field(
        None, ge=1, description="Hidden width of the projection MLP (null: the encoder's output size)."
    )
    proj_dim: int = Field(
        128, ge=1, description="Output size of the projection MLP; the queue holds vectors of this size."
    )
    symmetric: bool = Field(
        False,
        description="Also use view 2 as query and view 1 as key, averaging the two losses (costs a second key pass).",
    )

    @model_validator(mode="after")
    def _momentum_order(self) -> MoCoParams:
        if self.momentum_schedule == "cosine" and self.momentum_end < self.momentum:
            raise ValueError(
                f"momentum_end ({self.momentum_end}) must be >= momentum ({self.momentum}) for the cosine schedule"
            )
        return self


class MoCo(sslx.Objective):
    """MoCo v2 (He et al., 2020, arXiv:1911.05722; Chen et al., 2020,
    arXiv:2003.04297): queries from the encoder and an MLP head, keys from
    an EMA copy of both; keys of past batches wait in a queue as negatives.
    The queue and the key encoder are part of the checkpoint (the momentum
    follows from the step); under DDP every process enqueues every process's
    keys. Needs 2 views."""

    name = "moco"
    Params = MoCoParams

    def __init__(self, params: MoCoParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = projection_mlp(encoder.out_dim, hidden, params.proj_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in [*self.key_encoder.parameters(), *self.key_projector.parameters()]:
            p.requires_grad_(False)
        self.queue = FeatureQueue(params.queue_size, params.proj_dim)
        self._new_keys: torch.Tensor | None = None

    def momentum_at(self, step: int) -> float:
        p = self.params
        if p.momentum_schedule == "constant":
            return p.momentum
        return cosine_momentum(p.momentum, p.momentum_end, step, self.info.total_steps)

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.key_projector(self.key_encoder(x)).float(), dim=1)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        x1, x2 = batch.views
        queue = self.queue.features
        if self.params.symmetric:
            q = self.projector(self.encoder(torch.cat([x1, x2])))
            q1, q2 = q.chunk(2)
            k = self._keys(torch.cat([x2, x1]))
            k1, k2 = k.chunk(2)  # k1 is the key of q1 (view 2), k2 of q2 (view 1)
            t = self.params.temperature
            loss = 0.5 * (moco_infonce(q1, k1, queue, t) + moco_infonce(q2, k2, queue, t))
        else:
            q1 = self.projector(self.encoder(x1))
            k = self._keys(x2)
            loss = moco_infonce(q1, k, queue, self.params.temperature)
        self._new_keys = k  # enqueued after the optimizer step: the loss's graph still reads the queue
        return sslx.ObjectiveOutput(loss=loss, embeddings=q1.detach())

    def on_step_end(self, step: int) -> None:
        if self._new_keys is not None:
            self.queue.enqueue(self._new_keys)
            self._new_keys = None
        m = self.momentum_at(step)
        ema_update(self.key_encoder, self.encoder, m)
        ema_update(self.key_projector, self.projector, m)
