"""BYOL: an online network predicts a moving-average target network's
projection of the other view."""

from __future__ import annotations

import copy

import torch
from pydantic import Field, model_validator

import sslx
from sslx.modules import cosine_momentum, ema_update, projection_mlp
from sslx_byol.loss import byol_loss

__all__ = ["BYOL", "byol_loss"]


class BYOLParams(sslx.Params):
    momentum: float = Field(
        0.99,
        ge=0,
        le=1,
        description="EMA momentum of the target network at step 0 (0.996 in the paper's 1000-epoch ImageNet runs; "
        "0.99 suits runs of a few thousand steps: higher values make the target follow too slowly).",
    )
    momentum_end: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Momentum at the last step: it rises from momentum along a cosine over the run (1.0 in the paper). "
        "Set it equal to momentum for a constant momentum.",
    )
    proj_hidden_dim: int = Field(
        512,
        ge=1,
        description="Hidden width of the projector MLP (4096 in the paper; 512 suits small encoders on a CPU).",
    )
    proj_dim: int = Field(
        128,
        ge=1,
        description="Output size of the projector and the predictor, where the loss is computed (256 in the paper; 128 works for small encoders).",
    )
    pred_hidden_dim: int = Field(
        512,
        ge=1,
        description="Hidden width of the predictor MLP (4096 in the paper; 512 suits small encoders on a CPU). "
        "The predictor is what keeps BYOL from collapsing: do not make it tiny.",
    )

    @model_validator(mode="after")
    def _momentum_order(self) -> BYOLParams:
        if self.momentum_end < self.momentum:
            raise ValueError(
                f"momentum_end ({self.momentum_end}) must be >= momentum ({self.momentum}): the schedule only rises"
            )
        return self


class BYOL(sslx.Objective):
    """BYOL (Grill et al., 2020, arXiv:2006.07733): an online encoder,
    projector and predictor regress the target network's projection of the
    other view (2 - 2 cos, both directions summed); the target encoder and
    projector are exponential moving averages of the online ones, never
    trained by gradient, with the momentum rising from momentum to
    momentum_end along a cosine over the run. No negatives. The target
    network is part of the checkpoint (the momentum follows from the step).
    Needs 2 views."""

    name = "byol"
    Params = BYOLParams

    def __init__(self, params: BYOLParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        self.projector = projection_mlp(encoder.out_dim, params.proj_hidden_dim, params.proj_dim)
        self.predictor = projection_mlp(params.proj_dim, params.pred_hidden_dim, params.proj_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)

    def momentum_at(self, step: int) -> float:
        """The target's EMA momentum after optimizer step ``step``."""
        return cosine_momentum(self.params.momentum, self.params.momentum_end, step, self.info.total_steps)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        x = torch.cat(batch.views)
        z = self.projector(self.encoder(x))
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_encoder(x)).chunk(2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return sslx.ObjectiveOutput(loss=loss, embeddings=z.chunk(2)[0].detach())

    def on_step_end(self, step: int) -> None:
        m = self.momentum_at(step)
        ema_update(self.target_encoder, self.encoder, m)
        ema_update(self.target_projector, self.projector, m)
