"""RotNet: learn features by predicting by how many quarter turns an image
was rotated (Gidaris et al., 2018, arXiv:1803.07728).

Rotation convention: label ``k`` means ``k`` quarter turns (``k * 90``
degrees) counter-clockwise as the image is displayed (row 0 at the top):
``torch.rot90(x, k, dims=(-2, -1))``, the same as ``np.rot90(image, k)`` on an
``(H, W)`` array. For ``k = 1`` the top-right corner goes to the top-left
and the top row becomes the left column, read from the bottom up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import sslx
from sslx.distributed import local_part, world_size
from sslx.modules import projection_mlp

NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees


def rotate_batch(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate image ``b`` of ``x`` (``(B, ..., H, W)``, square) by ``k[b]``
    quarter turns counter-clockwise: ``out[b] = torch.rot90(x[b], k[b],
    dims=(-2, -1))``.

    Args:
        x: ``(B, ..., H, W)`` images with ``H == W``.
        k: ``(B,)`` integer rotation labels in ``0..3``.

    Returns:
        A new ``(B, ..., H, W)`` tensor; gradients flow back to ``x``.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
        >>> rotate_batch(x, torch.tensor([1]))[0, 0]  # the top-right 1 is now top-left
        tensor([[1., 3.],
                [0., 2.]])
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotations by 90 degrees need square images, got {x.shape[-2]}x{x.shape[-1]}")
    if k.shape != x.shape[:1]:
        raise ValueError(f"k must hold one rotation per image, shape ({x.shape[0]},), got {tuple(k.shape)}")
    k = k.to(x.device)
    if ((k < 0) | (k >= NUM_ROTATIONS)).any():
        raise ValueError(f"rotation labels must lie in 0..{NUM_ROTATIONS - 1}, got {k.tolist()}")
    out = torch.empty_like(x)
    for r in range(NUM_ROTATIONS):
        chosen = k == r
        if chosen.any():
            out[chosen] = torch.rot90(x[chosen], r, dims=(-2, -1))
    return out


def rotation_labels(batch_size: int, all_rotations: bool, device: torch.device | str | None = None) -> torch.Tensor:
    """The rotation label of every image fed to the network.

    ``all_rotations``: ``4 * batch_size`` labels, rotation-major: ``[0]*B +
    [1]*B + [2]*B + [3]*B``, for the batch repeated four times
    (``x.repeat(4, 1, 1, 1)``: rows ``r*B .. r*B + B - 1`` are the batch
    rotated ``r`` times). Otherwise one label per image drawn uniformly from
    ``0..3`` with the global torch RNG; under DDP they are this process's
    part of the draws for the global batch, so the labels do not depend on
    the number of processes.
    """
    if all_rotations:
        return torch.arange(NUM_ROTATIONS, device=device).repeat_interleave(batch_size)
    return local_part(torch.randint(NUM_ROTATIONS, (batch_size * world_size(),), device=device))


def rotated_inputs(x: torch.Tensor, all_rotations: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input and targets for a batch of images ``x`` (``(B, C,
    H, W)``): ``(rotate_batch(images, labels), labels)`` where ``images`` is
    ``x`` repeated four times (``all_rotations``) or ``x`` itself, and
    ``labels`` comes from :func:`rotation_labels`."""
    labels = rotation_labels(x.shape[0], all_rotations, x.device)
    images = x.repeat(NUM_ROTATIONS, *([1] * (x.ndim - 1))) if all_rotations else x
    return rotate_batch(images, labels), labels


class RotationParams(sslx.Params):
    all_rotations: bool = Field(
        True,
        description="Feed all four rotations of every image (4 x batch_size images per "
        "step, as RotNet does); false: one rotation per image, drawn "
        "uniformly with the global torch RNG.",
    )
    hidden_dim: int = Field(
        256,
        ge=0,
        description="Hidden width of the rotation head on the encoder's features: "
        "Linear, BatchNorm, ReLU, Linear to 4 logits; 0: a single linear "
        "layer. (RotNet classifies with the upper layers of the network "
        "itself; with a separate head those stay in the encoder.)",
    )


class Rotation(sslx.Objective):
    """RotNet (Gidaris et al., 2018, arXiv:1803.07728): every image is rotated
    by 0, 90, 180 and 270 degrees (all four, or one drawn at random) and the
    encoder's features go through a small head (an MLP, or a linear layer
    with hidden_dim 0) that classifies the rotation, trained with
    cross-entropy. Needs 1 square view per sample (sampler 'crops' with views
    1 and an ordinary augmentation such as 'mocov2'); label k is k quarter
    turns counter-clockwise, as torch.rot90(x, k, dims=(-2, -1)) and
    np.rot90. Logs the rotation accuracy of the batch as train.accuracy."""

    name = "rotation"
    Params = RotationParams

    def __init__(self, params: RotationParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        self.require_views(
            1, " (an image, rotated inside the objective)", " and use an ordinary augmentation such as 'mocov2'"
        )
        d = encoder.out_dim
        self.head = (
            nn.Linear(d, NUM_ROTATIONS)
            if params.hidden_dim == 0
            else projection_mlp(d, params.hidden_dim, NUM_ROTATIONS)
        )

    def _images(self, batch: sslx.Batch) -> torch.Tensor:
        x = batch.views[0]
        if x.ndim != 4:
            raise sslx.UserError(
                f"objective 'rotation' needs views that are images (B, C, H, W), but got shape {tuple(x.shape)}: use "
                f"an ordinary augmentation such as 'mocov2' or 'simclr' (not 'tiles' or 'pirl')."
            )
        if x.shape[-1] != x.shape[-2]:
            raise sslx.UserError(
                f"objective 'rotation' needs square views (a quarter turn must keep the shape), but got "
                f"{x.shape[-2]}x{x.shape[-1]} views: make the augmentation's views square (augmentation.size, "
                f"square crops)."
            )
        return x

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        x = self._images(batch)
        rotated, labels = rotated_inputs(x, self.params.all_rotations)
        features = self.encoder(rotated)  # (4B or B, D); with all rotations the first B rows are upright
        logits = self.head(features)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        embeddings = features[: x.shape[0]].detach().float()
        return sslx.ObjectiveOutput(loss=loss, embeddings=embeddings, metrics={"accuracy": accuracy})
