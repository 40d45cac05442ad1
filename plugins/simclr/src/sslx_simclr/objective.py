"""SimCLR: a projection head and the NT-Xent loss over two views."""

from __future__ import annotations

import torch
from pydantic import Field

import sslx
from sslx.modules import projection_mlp
from sslx_simclr.loss import nt_xent


class SimCLR(sslx.Objective):
    """SimCLR (Chen et al., 2020, arXiv:2002.05709): both views go through the
    encoder and a projection MLP; NT-Xent pulls the two views of an image
    together against every other view of the batch (gathered from all
    processes under DDP). Needs a sampler with 2 views."""

    name = "simclr"

    class Params(sslx.Params):
        temperature: float = Field(
            0.5,
            gt=0,
            le=10,
            description="Softmax temperature (0.5 in the paper's CIFAR runs, 0.1 on ImageNet with large batches).",
        )
        proj_hidden_dim: int | None = Field(
            None, ge=1, description="Hidden width of the projection MLP (null: the encoder's output size)."
        )
        proj_dim: int = Field(128, ge=1, description="Output size of the projection MLP (where the loss is computed).")
        proj_layers: int = Field(2, ge=1, le=4, description="Linear layers in the projection MLP.")
        gather_distributed: bool = Field(
            True, description="Take negatives from every process's batch under DDP (no effect in one process)."
        )

    def __init__(self, params: Params, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(2)
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = projection_mlp(encoder.out_dim, hidden, params.proj_dim, params.proj_layers)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        z = self.projector(self.encoder(torch.cat(batch.views)))
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, self.params.temperature, gather=self.params.gather_distributed)
        return sslx.ObjectiveOutput(loss=loss, embeddings=z1.detach())
