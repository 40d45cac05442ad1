"""The objective 'example': alignment and uniformity on the hypersphere
(Wang & Isola, 2020, arXiv:2005.10242).

Made with `sslx new-plugin example --kind objective`. The objective's
contract is in sslx's docs/plugins.md; `python -m pytest` checks it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.distributed import gather
from sslx.modules import projection_mlp


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The alignment loss (alpha = 2): the mean squared distance between the
    two views' embeddings of each sample, ``(B, D)`` unit vectors each; 0
    when every pair coincides."""
    return (z1 - z2).pow(2).sum(dim=1).mean()


def uniformity(z: torch.Tensor, t: float) -> torch.Tensor:
    """The uniformity loss: the log of the mean Gaussian potential
    ``exp(-t |z_i - z_j|^2)`` over all pairs ``i < j`` of the rows of ``z``
    (``(N, D)`` unit vectors, N >= 2). It is lowest when the points spread
    evenly over the sphere; two opposite points give ``-4 t``."""
    squared = 2 - 2 * z @ z.T  # |a - b|^2 of unit vectors
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    return torch.logsumexp(-t * squared[i, j], dim=0) - math.log(len(i))


class ExampleObjective(sslx.Objective):
    """Alignment and uniformity on the hypersphere (Wang & Isola, 2020,
    arXiv:2005.10242): both views go through the encoder and a projection
    MLP onto the unit sphere; the loss pulls the two views of each sample
    together (alignment) and spreads all embeddings evenly over the sphere
    (uniformity, over the global batch under DDP). Needs a sampler with 2
    views; logs both terms as train.alignment and train.uniformity."""

    name = "example"

    class Params(sslx.Params):
        uniformity_weight: float = Field(
            1.0, ge=0, description="Weight of the uniformity term (the paper's lambda, 1 in most of its experiments)."
        )
        t: float = Field(
            2.0, gt=0, description="Sharpness t of the uniformity term's Gaussian potential (the paper uses 2)."
        )
        hidden_dim: int | None = Field(
            None, ge=1, description="Hidden width of the projection MLP (null: the encoder's output size)."
        )
        dim: int = Field(128, ge=2, description="Size of the embeddings on the unit sphere.")

    def __init__(self, params: Params, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        self.projector = projection_mlp(encoder.out_dim, params.hidden_dim or encoder.out_dim, params.dim)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        z = self.projector(self.encoder(torch.cat(batch.views)))
        with torch.autocast(z.device.type, enabled=False):  # the loss in float32, also when training in bf16
            z1, z2 = F.normalize(z.float(), dim=1).chunk(2)
            align = alignment(z1, z2)
            t = self.params.t
            uniform = (uniformity(gather(z1), t) + uniformity(gather(z2), t)) / 2
            loss = align + self.params.uniformity_weight * uniform
        return sslx.ObjectiveOutput(
            loss=loss, embeddings=z1.detach(), metrics={"alignment": align.detach(), "uniformity": uniform.detach()}
        )


@sslx.hookimpl
def sslx_register_objectives(register):
    register(ExampleObjective)
