"""Jigsaw tiling, and PIRL's pair of views built on it.

:func:`jigsaw_tiles` cuts an image into a ``grid x grid`` set of square
tiles, each taken at a random offset inside its cell (so neighbouring tiles
are separated by a gap of random width: no shortcut through matching edges),
and puts them in the order of a given permutation. Jigsaw pretext tasks
(Noroozi & Favaro, 2016) and PIRL (Misra & van der Maaten, 2020) use it.

:class:`PIRLViews` is the ``pirl`` augmentation: view 0 is the ordinary
MoCo v2-style view of :class:`sslx_augmentations.Views`, view 1 the shuffled
tiles of a random resized crop, as one ``(grid*grid, C, tile, tile)`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from pydantic import Field

import sslx
from sslx_augmentations import MoCoV2Params, Views


def cell_bounds(size: int, grid: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` pixel ranges of the ``grid`` cells along a side of
    ``size`` pixels: cell ``i`` spans ``floor(i*size/grid)`` to
    ``floor((i+1)*size/grid)`` (cells differ by at most one pixel)."""
    return [(i * size // grid, (i + 1) * size // grid) for i in range(grid)]


def jigsaw_tiles(
    image: np.ndarray,
    grid: int,
    tile: int,
    permutation: Sequence[int] | np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cut an image into ``grid x grid`` tiles of side ``tile`` and shuffle them.

    The image is divided into ``grid x grid`` cells (:func:`cell_bounds` along
    each side); cells are numbered row by row, ``c = row * grid + col``. From
    cell ``c`` one ``tile x tile`` square is taken at an offset drawn uniformly
    from ``[0, cell_height - tile] x [0, cell_width - tile]`` (with ``rng``;
    without it, the square is centred in its cell, rounding down).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array; every cell must hold a tile
            (``tile <= min(H, W) // grid``).
        grid: tiles per side, >= 1.
        tile: side of each tile in pixels, >= 1.
        permutation: a permutation of ``range(grid * grid)``; output position
            ``k`` holds the tile of cell ``permutation[k]`` (``None``: the
            identity, cells in row order).
        rng: the generator of the offsets (one ``(dy, dx)`` per cell, drawn in
            cell order).

    Returns:
        ``(grid*grid, tile, tile)`` or ``(grid*grid, tile, tile, C)``, a new
        contiguous array of the image's dtype: ``out[k] = tiles[permutation[k]]``.

    Example:
        >>> image = np.arange(30 * 30).reshape(30, 30)
        >>> out = jigsaw_tiles(image, grid=3, tile=9, permutation=[2, 0, 1, 3, 4, 5, 6, 7, 8],
        ...                    rng=np.random.default_rng(0))
        >>> out.shape  # out[0] is from the top-right cell, out[1] from the top-left
        (9, 9, 9)
    """
    if grid < 1 or tile < 1:
        raise ValueError(f"grid and tile must be >= 1, got grid={grid}, tile={tile}")
    h, w = image.shape[:2]
    if tile > min(h, w) // grid:
        raise ValueError(f"tiles of {tile} px do not fit in the cells of a {h}x{w} image cut {grid}x{grid} "
                         f"(at most {min(h, w) // grid} px)")
    n = grid * grid
    order = np.arange(n) if permutation is None else np.asarray(permutation)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"permutation must be a permutation of range({n}), got {list(np.asarray(permutation).ravel())}")
    rows, cols = cell_bounds(h, grid), cell_bounds(w, grid)
    starts = np.array([(rows[c // grid][0], cols[c % grid][0]) for c in range(n)])
    slack = np.array([(rows[c // grid][1] - rows[c // grid][0] - tile, cols[c % grid][1] - cols[c % grid][0] - tile)
                      for c in range(n)])  # the room each tile has to move within its cell
    offsets = slack // 2 if rng is None else rng.integers(0, slack + 1)
    corners = starts + offsets
    return np.stack([image[y : y + tile, x : x + tile] for y, x in corners[order]])


class PIRLParams(MoCoV2Params):
    grid: int = Field(3, ge=2, le=8, description="Tiles per side of the jigsaw view (3, nine tiles, in PIRL); the "
                                                 "pirl objective's grid must match.")
    jigsaw_size: int | None = Field(None, ge=4, description="Side in pixels of the random resized crop that is cut "
                                                           "into tiles (null: the side of view 0). PIRL cuts 255 px "
                                                           "crops; about 30 suits 28 px images.")
    tile: int | None = Field(None, ge=2, description="Side of each tile in pixels, at most jigsaw_size // grid; the "
                                                     "rest of each cell is the random gap between tiles (null: 3/4 of "
                                                     "a cell, as PIRL's 64 px tiles in 85 px cells). Keep tiles large "
                                                     "enough for the encoder (9 px for 28 px images).")


class PIRLViews(Views):
    """PIRL's views (Misra & van der Maaten, 2020, arXiv:1912.01991): view 0
    is the MoCo v2 view of the image; view 1 is a random resized crop (crop
    scale, ratio and flip as view 0) cut into grid x grid tiles with random
    gaps, each tile colour-jittered and grayscaled independently (view 0's
    jitter settings), shuffled by a random permutation and returned as one
    (grid*grid, C, tile, tile) tensor normalised like view 0."""

    name = "pirl"
    Params = PIRLParams

    def __init__(self, params: PIRLParams, data: sslx.DataInfo):
        super().__init__(params, data)
        self.grid = params.grid
        self.jigsaw_size = params.jigsaw_size or self.size
        cell = self.jigsaw_size // self.grid
        self.tile = params.tile or max(1, 3 * cell // 4)
        if self.tile > cell:
            raise sslx.UserError(
                f"augmentation 'pirl': tiles of {self.tile} px do not fit in the {cell} px cells of a "
                f"{self.jigsaw_size} px crop cut {self.grid}x{self.grid}: lower augmentation.tile to at most {cell} "
                f"or raise augmentation.jigsaw_size to at least {self.grid * self.tile}."
            )
        color = data.channels == 3
        self.jigsaw_crop = A.Compose([
            A.RandomResizedCrop(size=(self.jigsaw_size, self.jigsaw_size), scale=params.crop_scale,
                                ratio=params.crop_ratio, interpolation=cv2.INTER_LINEAR),
            A.HorizontalFlip(p=params.flip_prob),
        ])
        tile_ops = [A.ColorJitter(brightness=params.brightness, contrast=params.contrast,
                                  saturation=params.saturation if color else 0.0, hue=params.hue if color else 0.0,
                                  p=params.jitter_prob)]
        if color:
            tile_ops.append(A.ToGray(p=params.grayscale_prob))
        self.tile_pipeline = A.Compose(tile_ops)
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        super().seed(seed)
        crop, tiles, shuffle = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
        self.jigsaw_crop.set_random_seed(crop)
        self.tile_pipeline.set_random_seed(tiles)
        self.rng = np.random.default_rng(shuffle)  # tile offsets and permutations

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        """View 1 is the jigsaw view ``(grid*grid, C, tile, tile)``; every other
        view number is an ordinary ``(C, size, size)`` view."""
        if view != 1:
            return super().view(image, view)
        return self.jigsaw(image)

    def jigsaw(self, image: np.ndarray) -> torch.Tensor:
        """The shuffled, independently jittered tiles of a random resized crop."""
        crop = self.jigsaw_crop(image=image)["image"]
        permutation = self.rng.permutation(self.grid * self.grid)
        tiles = jigsaw_tiles(crop, self.grid, self.tile, permutation, self.rng)
        return torch.stack([self._to_tensor(self.tile_pipeline(image=t)["image"]) for t in tiles])
