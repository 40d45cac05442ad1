"""Jigsaw puzzles (Noroozi & Favaro, 2016, arXiv:1603.09246): the tiles of
an image are shuffled by one of a fixed set of permutations and the network
predicts which one, from the features of every tile."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

import sslx
from sslx.distributed import local_part, world_size
from sslx.modules import projection_mlp
from sslx_jigsaw.permutations import all_permutations, hamming_distances, max_hamming_permutations

__all__ = ["Jigsaw", "all_permutations", "hamming_distances", "max_hamming_permutations", "shuffle_tiles"]


def shuffle_tiles(tiles: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Reorder the tiles of every sample: ``out[b, k] = tiles[b, order[b, k]]``
    (the convention of ``jigsaw_tiles``: position ``k`` holds the tile of
    cell ``order[b, k]``).

    Args:
        tiles: ``(B, T, ...)`` tiles in cell order.
        order: ``(B, T)`` integer permutations of ``range(T)``.
    """
    if order.shape != tiles.shape[:2]:
        raise ValueError(f"order must be (B, T) = {tuple(tiles.shape[:2])}, got {tuple(order.shape)}")
    rows = torch.arange(tiles.shape[0], device=tiles.device)[:, None]
    return tiles[rows, order.to(tiles.device)]


class JigsawParams(sslx.Params):
    grid: int = Field(
        3,
        ge=2,
        le=3,
        description="Tiles per side (3, nine tiles, in the paper); must equal "
        "augmentation.grid. At most 3: the permutation set is chosen among "
        "all (grid*grid)! permutations.",
    )
    num_permutations: int = Field(
        100,
        ge=2,
        description="Size of the permutation set, the number of classes (the "
        "paper used 1000 on ImageNet and also compared 100; 100 suits "
        "small runs). At most (grid*grid)!.",
    )
    permutation_seed: int = Field(
        0,
        ge=0,
        description="Seed of the greedy maximal-Hamming-distance selection of the "
        "permutation set (its first permutation and tie breaks).",
    )
    tile_dim: int = Field(
        128,
        ge=1,
        description="Output size of the per-tile linear layer (with ReLU) applied to "
        "each tile's encoder features before concatenation (fc6, 512 in "
        "the paper).",
    )
    hidden_dim: int = Field(
        512,
        ge=1,
        description="Hidden width of the MLP head (Linear, BatchNorm, ReLU, Linear) "
        "on the concatenated tile features (fc7, 4096 in the paper).",
    )

    @model_validator(mode="after")
    def _set_size(self) -> JigsawParams:
        total = math.factorial(self.grid * self.grid)
        if self.num_permutations > total:
            raise ValueError(
                f"num_permutations ({self.num_permutations}) must be at most {total}, the number of "
                f"permutations of {self.grid * self.grid} tiles"
            )
        return self


class Jigsaw(sslx.Objective):
    """Jigsaw puzzles (Noroozi & Favaro, 2016, arXiv:1603.09246): the
    grid*grid tiles of an image (from augmentation 'tiles', in cell order)
    are shuffled by a permutation drawn uniformly from a fixed set chosen
    greedily for large Hamming distance; every tile goes through the shared
    encoder and a per-tile linear layer, the tile features are concatenated
    in the shuffled order and an MLP head predicts the permutation's index
    (cross-entropy). The permutation set is a buffer, so checkpoints carry
    it. Needs 1 view per sample. Logs the puzzle accuracy of the batch as
    train.accuracy."""

    name = "jigsaw"
    Params = JigsawParams

    def __init__(self, params: JigsawParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(1, " (the tiles of an image)", " and use augmentation 'tiles'")
        tiles = params.grid * params.grid
        permutations = max_hamming_permutations(tiles, params.num_permutations, params.permutation_seed)
        self.register_buffer("permutations", torch.tensor(permutations, dtype=torch.long))  # (classes, tiles)
        self.tile_layer = nn.Sequential(nn.Linear(encoder.out_dim, params.tile_dim), nn.ReLU(inplace=True))
        self.head = projection_mlp(tiles * params.tile_dim, params.hidden_dim, params.num_permutations)

    def _tiles(self, batch: sslx.Batch) -> torch.Tensor:
        tiles = batch.views[0]
        expected = self.params.grid**2
        if tiles.ndim != 5:
            raise sslx.UserError(
                f"objective 'jigsaw' needs views that are tiles (B, tiles, C, tile, tile), but got shape "
                f"{tuple(tiles.shape)}: use augmentation 'tiles' (with sampler.views 1)."
            )
        if tiles.shape[1] != expected:
            raise sslx.UserError(
                f"objective 'jigsaw' has grid {self.params.grid} and so expects {expected} tiles per view, but the "
                f"augmentation gives {tiles.shape[1]}: set objective.grid equal to augmentation.grid."
            )
        return tiles

    def shuffle(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a permutation index per sample uniformly from the set (global
        torch RNG; under DDP this process's part of the draws for the global
        batch) and shuffle the tiles by it: returns ``(shuffled, labels)``
        with ``shuffled[b, k] = tiles[b, permutations[labels[b], k]]``."""
        draws = torch.randint(len(self.permutations), (tiles.shape[0] * world_size(),), device=self.permutations.device)
        labels = local_part(draws)
        return shuffle_tiles(tiles, self.permutations[labels]), labels.to(tiles.device)

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        tiles = self._tiles(batch)
        b, t = tiles.shape[:2]
        shuffled, labels = self.shuffle(tiles)
        features = self.tile_layer(self.encoder(shuffled.flatten(0, 1)))  # (B*T, tile_dim), a sample's tiles together
        joint = features.reshape(b, t * features.shape[1])  # concatenated in the shuffled order
        logits = self.head(joint)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return sslx.ObjectiveOutput(loss=loss, embeddings=joint.detach().float(), metrics={"accuracy": accuracy})
