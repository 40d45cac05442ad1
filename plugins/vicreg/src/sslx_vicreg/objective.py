"""VICReg: variance-invariance-covariance regularisation of two views' embeddings."""

from __future__ import annotations

import torch
from pydantic import Field

import sslx
from sslx.modules import projection_mlp
from sslx_vicreg.loss import vicreg_loss, vicreg_terms

__all__ = ["VICReg", "vicreg_loss", "vicreg_terms"]


class VICRegParams(sslx.Params):
    sim_weight: float = Field(
        25.0,
        ge=0,
        description="lambda, weight of the invariance term (mean squared distance between the two views' embeddings; 25 in the paper).",
    )
    var_weight: float = Field(
        25.0,
        ge=0,
        description="mu, weight of the variance term (hinge keeping each dimension's std above gamma, summed over both views; "
        "25 in the paper). 0 removes it: with cov_weight 0 too the embeddings collapse (an ablation, not a setting to train with).",
    )
    cov_weight: float = Field(
        1.0,
        ge=0,
        description="nu, weight of the covariance term (squared off-diagonal covariances / D, summed over both views; "
        "1 in the paper). 0 removes it: dimensions may then become redundant.",
    )
    gamma: float = Field(
        1.0,
        gt=0,
        description="Target standard deviation of each embedding dimension in the variance hinge (1 in the paper).",
    )
    eps: float = Field(
        1e-4,
        gt=0,
        le=1,
        description="Added to the variance under the square root, for a stable gradient near zero variance (1e-4 in the paper).",
    )
    proj_hidden_dim: int = Field(
        1024,
        ge=1,
        description="Width of the expander's hidden layers (8192 in the paper; 1024-2048 suits small encoders on a CPU).",
    )
    proj_dim: int = Field(
        1024,
        ge=2,
        description="Output size D of the expander, where the loss is computed (8192 in the paper, which found wider better; "
        "1024-2048 suits small encoders on a CPU).",
    )
    proj_layers: int = Field(
        3,
        ge=1,
        le=4,
        description="Linear layers in the expander (3 in the paper); all but the last are followed by BatchNorm and ReLU.",
    )


class VICReg(sslx.Objective):
    """VICReg (Bardes et al., 2022, arXiv:2105.04906): both views go through
    the encoder and an expander MLP; the loss pulls the two views' embeddings
    together (invariance) while keeping every dimension's standard deviation
    above gamma (variance) and the dimensions decorrelated (covariance), each
    branch on its own. Variance and covariance are over the global batch under
    DDP. No negatives, no momentum encoder. Needs 2 views. Logs
    train.invariance, train.variance and train.covariance (unweighted)."""

    name = "vicreg"
    Params = VICRegParams

    def __init__(self, params: VICRegParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        # As in the paper, the last layer has no bias (and no BatchNorm: the variance
        # term must see the raw scale).
        self.projector = projection_mlp(
            encoder.out_dim, params.proj_hidden_dim, params.proj_dim, params.proj_layers, last_bias=False
        )

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        p = self.params
        z = self.projector(self.encoder(torch.cat(batch.views)))
        z1, z2 = z.chunk(2)
        terms = vicreg_terms(z1, z2, p.gamma, p.eps)
        loss = p.sim_weight * terms.invariance + p.var_weight * terms.variance + p.cov_weight * terms.covariance
        return sslx.ObjectiveOutput(
            loss=loss,
            embeddings=z1.detach(),
            metrics={name: value.detach() for name, value in terms._asdict().items()},
        )
