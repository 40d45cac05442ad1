"""Barlow Twins: the cross-correlation of two views' embeddings made close to
the identity matrix."""

from __future__ import annotations

import torch
from pydantic import Field

import sslx
from sslx.modules import projection_mlp
from sslx_barlowtwins.loss import barlow_twins_loss, barlow_twins_terms

__all__ = ["BarlowTwins", "barlow_twins_loss", "barlow_twins_terms"]


class BarlowTwinsParams(sslx.Params):
    off_diagonal_weight: float = Field(
        5e-3,
        ge=0,
        description="lambda, the weight of the redundancy-reduction term sum_{i != j} c_ij^2 against the invariance term "
        "sum_i (1 - c_ii)^2 (0.0051 in the paper with proj_dim 8192; 5e-3 also works for proj_dim 1024-2048; 0 leaves only invariance).",
    )
    proj_hidden_dim: int = Field(
        1024,
        ge=1,
        description="Width of the projector's hidden layers (8192 in the paper; 1024-2048 suits small encoders on a CPU).",
    )
    proj_dim: int = Field(
        1024,
        ge=2,
        description="Output size D of the projector, where the D x D cross-correlation is computed (8192 in the paper, "
        "which found wider better; 1024-2048 suits small encoders on a CPU).",
    )
    proj_layers: int = Field(
        3,
        ge=1,
        le=4,
        description="Linear layers in the projector (3 in the paper); all but the last are followed by BatchNorm and ReLU.",
    )


class BarlowTwins(sslx.Objective):
    """Barlow Twins (Zbontar et al., 2021, arXiv:2103.03230): both views go
    through the encoder and a projector MLP; each embedding dimension is
    standardised over the batch and the cross-correlation matrix of the two
    views is pushed towards the identity (diagonal to 1: invariance; off
    diagonal to 0: no redundancy between dimensions). Statistics are over the
    global batch under DDP. No negatives, no momentum encoder. Needs 2 views.
    Logs train.on_diagonal and train.off_diagonal (the unweighted sums)."""

    name = "barlow_twins"
    Params = BarlowTwinsParams

    def __init__(self, params: BarlowTwinsParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        # The paper's last layer has neither bias nor BatchNorm: the loss standardises
        # every dimension, so a bias would get no gradient.
        self.projector = projection_mlp(
            encoder.out_dim, params.proj_hidden_dim, params.proj_dim, params.proj_layers, last_bias=False
        )

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        z = self.projector(self.encoder(torch.cat(batch.views)))
        z1, z2 = z.chunk(2)
        terms = barlow_twins_terms(z1, z2)
        loss = terms.on_diagonal + self.params.off_diagonal_weight * terms.off_diagonal
        return sslx.ObjectiveOutput(
            loss=loss,
            embeddings=z1.detach(),
            metrics={"on_diagonal": terms.on_diagonal.detach(), "off_diagonal": terms.off_diagonal.detach()},
        )
