"""Relative patch position (Doersch et al., 2015, arXiv:1505.05192): given
the centre tile of a 3x3 grid and one of its 8 neighbours, predict which
neighbour it is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

import sslx
from sslx.modules import projection_mlp

__all__ = ["CENTRE", "NEIGHBOURS", "OFFSETS", "RelativePosition", "pair_up"]

GRID = 3
CENTRE = 4  # the cell in the middle of the 3x3 grid (cells numbered row by row)
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)  # the cell of each label 0..7: row order, the centre skipped
OFFSETS = tuple((cell // GRID - 1, cell % GRID - 1) for cell in NEIGHBOURS)
"""``OFFSETS[label] = (dy, dx)``: the grid position of neighbour ``label``
relative to the centre, each in ``{-1, 0, 1}`` (y down, x right): label 0 is
up-left ``(-1, -1)``, 1 up, 2 up-right, 3 left, 4 right, 5 down-left, 6 down,
7 down-right."""


def pair_up(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (centre, neighbour) pair of a batch of 3x3 grids.

    Args:
        x: ``(B, 9, ...)``: per sample, one entry per cell in row order (the
            tiles themselves, or their features).

    Returns:
        ``(centre, neighbour, label)``, each with ``8 * B`` rows, sample-major
        (rows ``8b .. 8b + 7`` are sample ``b``'s pairs): ``centre[i]`` is the
        centre cell's entry, ``neighbour[i]`` the entry of cell
        ``NEIGHBOURS[label[i]]`` of the same sample, ``label[i]`` in ``0..7``.
    """
    if x.ndim < 2 or x.shape[1] != GRID * GRID:
        raise ValueError(f"x must be (B, 9, ...): one entry per cell of a 3x3 grid, got {tuple(x.shape)}")
    b = x.shape[0]
    index = torch.tensor(NEIGHBOURS, device=x.device)
    neighbour = x[:, index].flatten(0, 1)  # (B*8, ...)
    centre = x[:, CENTRE : CENTRE + 1].expand(b, len(NEIGHBOURS), *x.shape[2:]).flatten(0, 1)
    label = torch.arange(len(NEIGHBOURS), device=x.device).repeat(b)
    return centre, neighbour, label


class RelativePositionParams(sslx.Params):
    hidden_dim: int = Field(
        512,
        ge=1,
        description="Hidden width of the MLP head (Linear, BatchNorm, ReLU, Linear to "
        "8 logits) on the concatenated features of the centre tile and a "
        "neighbour (fc7 and fc8 in the paper, 4096 wide).",
    )


class RelativePosition(sslx.Objective):
    """Relative patch position (Doersch et al., 2015, arXiv:1505.05192): the
    centre tile of a 3x3 grid (augmentation 'tiles' with grid 3, tiles in
    cell order) is paired with each of its 8 neighbours; every tile goes once
    through the shared encoder, the centre's and the neighbour's features
    are concatenated (centre first) and an MLP head predicts which of the 8
    neighbours it is (labels 0..7 in row order, the centre skipped;
    cross-entropy over all 8 pairs of every image). The gap and jitter
    between tiles come from the augmentation (random offsets inside each
    cell; set augmentation.gap >= 1 so that no tile touches its neighbour)
    so the network cannot solve the task by continuing edges across tiles.
    Needs 1 view per sample. Logs the position accuracy of the batch as
    train.accuracy."""

    name = "relative_position"
    Params = RelativePositionParams

    def __init__(self, params: RelativePositionParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(1, " (the 3x3 tiles of an image)", " and use augmentation 'tiles' with grid 3")
        self.head = projection_mlp(2 * encoder.out_dim, params.hidden_dim, len(NEIGHBOURS))

    def _tiles(self, batch: sslx.Batch) -> torch.Tensor:
        tiles = batch.views[0]
        if tiles.ndim != 5:
            raise sslx.UserError(
                f"objective 'relative_position' needs views that are tiles (B, 9, C, tile, tile), but got shape "
                f"{tuple(tiles.shape)}: use augmentation 'tiles' with grid 3 (and sampler.views 1)."
            )
        if tiles.shape[1] != GRID * GRID:
            raise sslx.UserError(
                f"objective 'relative_position' needs the 9 tiles of a 3x3 grid (a centre and its 8 neighbours), "
                f"but the augmentation gives {tiles.shape[1]} tiles per view: set augmentation.grid to 3."
            )
        return tiles

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        tiles = self._tiles(batch)
        b, t = tiles.shape[:2]
        features = self.encoder(tiles.flatten(0, 1)).reshape(b, t, -1)  # each tile once
        centre, neighbour, labels = pair_up(features)
        logits = self.head(torch.cat([centre, neighbour], dim=1))
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        embeddings = features[:, CENTRE].detach().float()  # the centre tile's encoder features
        return sslx.ObjectiveOutput(loss=loss, embeddings=embeddings, metrics={"accuracy": accuracy})
