"""Jigsaw tiling, and the augmentations built on it.

:func:`jigsaw_tiles` cuts an image into a ``grid x grid`` set of square
tiles, each taken at a random offset inside its cell (so neighbouring tiles
are separated by a gap of random width: no shortcut through matching edges;
``gap`` guarantees a minimum), and puts them in the order of a given
permutation. Jigsaw pretext tasks (Noroozi & Favaro, 2016), relative patch
position (Doersch et al., 2015) and PIRL (Misra & van der Maaten, 2020) use it.

:class:`TileCutter` is the tile pipeline both augmentations here share: a
random resized crop cut into tiles, each tile colour-jittered independently.

:class:`PIRLViews` is the ``pirl`` augmentation: view 0 is the ordinary
MoCo v2-style view of :class:`sslx_augmentations.views.Views`, view 1 the shuffled
tiles of a random resized crop, as one ``(grid*grid, C, tile, tile)`` tensor.

:class:`TilesViews` is the ``tiles`` augmentation: every view is the tiles of
a random resized crop in cell order (not shuffled), for objectives that
shuffle or pair the tiles themselves (``jigsaw``, ``relative_position``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import Field, model_validator

import sslx
from sslx_augmentations.views import MoCoV2Params, Pair, Pipeline, Views, _check_range


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
    gap: int = 0,
) -> np.ndarray:
    """Cut an image into ``grid x grid`` tiles of side ``tile`` and shuffle them.

    The image is divided into ``grid x grid`` cells (:func:`cell_bounds` along
    each side); cells are numbered row by row, ``c = row * grid + col``. From
    cell ``c`` one ``tile x tile`` square is taken at an offset drawn uniformly
    from ``[0, cell_height - tile] x [0, cell_width - tile]`` (with ``rng``;
    without it, the square is centred in its cell, rounding down).

    With ``gap = 0`` two neighbouring tiles may touch (each at the facing
    border of its cell). ``gap > 0`` keeps every tile ``gap // 2`` pixels away
    from the top and left borders of its cell and ``gap - gap // 2`` from the
    bottom and right ones: the offsets are drawn from ``[gap // 2, cell - tile
    - (gap - gap // 2)]`` along each axis, so neighbouring tiles are at least
    ``gap`` pixels apart (and their edges never continue into each other).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array; every cell must hold a tile
            and the gap (``tile + gap <= min(H, W) // grid``).
        grid: tiles per side, >= 1.
        tile: side of each tile in pixels, >= 1.
        permutation: a permutation of ``range(grid * grid)``; output position
            ``k`` holds the tile of cell ``permutation[k]`` (``None``: the
            identity, cells in row order).
        rng: the generator of the offsets (one ``(dy, dx)`` per cell, drawn in
            cell order).
        gap: the least number of pixels between two neighbouring tiles, >= 0.

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
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    h, w = image.shape[:2]
    if tile + gap > min(h, w) // grid:
        with_gap = f" with a gap of {gap} px" if gap else ""
        raise ValueError(
            f"tiles of {tile} px{with_gap} do not fit in the cells of a {h}x{w} image cut {grid}x{grid} "
            f"(at most {min(h, w) // grid - gap} px)"
        )
    n = grid * grid
    order = np.arange(n) if permutation is None else np.asarray(permutation)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(
            f"permutation must be a permutation of range({n}), got {list(np.asarray(permutation).ravel())}"
        )
    rows, cols = cell_bounds(h, grid), cell_bounds(w, grid)
    starts = np.array([(rows[c // grid][0], cols[c % grid][0]) for c in range(n)])
    slack = np.array(
        [
            (rows[c // grid][1] - rows[c // grid][0] - tile, cols[c % grid][1] - cols[c % grid][0] - tile)
            for c in range(n)
        ]
    )  # the room each tile has to move within its cell
    low, high = gap // 2, slack - (gap - gap // 2)  # the range of offsets that keeps the gap
    offsets = low + (high - low) // 2 if rng is None else rng.integers(low, high + 1)
    corners = starts + offsets
    return np.stack([image[y : y + tile, x : x + tile] for y, x in corners[order]])


class PIRLParams(MoCoV2Params):
    grid: int = Field(
        3,
        ge=2,
        le=8,
        description="Tiles per side of the jigsaw view (3, nine tiles, in PIRL); the pirl objective's grid must match.",
    )
    jigsaw_size: int | None = Field(
        None,
        ge=4,
        description="Side in pixels of the random resized crop that is cut "
        "into tiles (null: the side of view 0). PIRL cuts 255 px "
        "crops; about 30 suits 28 px images.",
    )
    tile: int | None = Field(
        None,
        ge=2,
        description="Side of each tile in pixels, at most jigsaw_size // grid; the "
        "rest of each cell is the random gap between tiles (null: 3/4 of "
        "a cell, as PIRL's 64 px tiles in 85 px cells). Keep tiles large "
        "enough for the encoder (9 px for 28 px images).",
    )


class TileCutter:
    """The tile pipeline of the ``pirl`` and ``tiles`` augmentations: a random
    resized crop of ``jigsaw_size`` (the params' crop scale, ratio and flip),
    cut into ``grid x grid`` tiles of ``tile`` px by :func:`jigsaw_tiles` with
    random offsets (at least ``gap`` px apart), each tile colour-jittered and,
    for colour images, grayscaled independently (the params' jitter settings).

    ``owner`` (the augmentation's name) and ``size`` (the side of its ordinary
    views, the default ``jigsaw_size``) make the messages and defaults.
    """

    def __init__(self, params, owner: str, size: int, color: bool, gap: int = 0):
        import albumentations as A  # with OpenCV: imported when a pipeline is built
        import cv2

        self.grid = params.grid
        self.jigsaw_size = params.jigsaw_size or size
        self.gap = gap
        cell = self.jigsaw_size // self.grid
        self.tile = params.tile or max(1, min(3 * cell // 4, cell - gap))
        if self.tile + gap > cell:
            with_gap = f" and gaps of {gap} px" if gap else ""
            raise sslx.UserError(
                f"augmentation {owner!r}: tiles of {self.tile} px{with_gap} do not fit in the {cell} px cells of a "
                f"{self.jigsaw_size} px crop cut {self.grid}x{self.grid}: lower augmentation.tile to at most "
                f"{cell - gap} or raise augmentation.jigsaw_size to at least {self.grid * (self.tile + gap)}."
            )
        self.crop = A.Compose(
            [
                A.RandomResizedCrop(
                    size=(self.jigsaw_size, self.jigsaw_size),
                    scale=params.crop_scale,
                    ratio=params.crop_ratio,
                    interpolation=cv2.INTER_LINEAR,
                ),
                A.HorizontalFlip(p=params.flip_prob),
            ]
        )
        tile_ops = [
            A.ColorJitter(
                brightness=params.brightness,
                contrast=params.contrast,
                saturation=params.saturation if color else 0.0,
                hue=params.hue if color else 0.0,
                p=params.jitter_prob,
            )
        ]
        if color:
            tile_ops.append(A.ToGray(p=params.grayscale_prob))
        self.tile_pipeline = A.Compose(tile_ops)
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        crop, tiles, offsets = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
        self.crop.set_random_seed(crop)
        self.tile_pipeline.set_random_seed(tiles)
        self.rng = np.random.default_rng(offsets)  # tile offsets (and pirl's permutations)

    def __call__(self, image: np.ndarray, shuffle: bool) -> list[np.ndarray]:
        """The jittered tiles of a random resized crop of ``image``: in a
        random order (a permutation drawn from ``rng`` before the offsets)
        when ``shuffle``, else in cell order (row by row)."""
        crop = self.crop(image=image)["image"]
        permutation = self.rng.permutation(self.grid * self.grid) if shuffle else None
        tiles = jigsaw_tiles(crop, self.grid, self.tile, permutation, self.rng, self.gap)
        return [self.tile_pipeline(image=t)["image"] for t in tiles]


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
        self.cutter = TileCutter(params, self.name, self.size, self.color)
        self.grid, self.jigsaw_size, self.tile = self.cutter.grid, self.cutter.jigsaw_size, self.cutter.tile

    def seed(self, seed: int) -> None:
        super().seed(seed)
        self.cutter.seed(seed)

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        """View 1 is the jigsaw view ``(grid*grid, C, tile, tile)``; every other
        view number is an ordinary ``(C, size, size)`` view."""
        if view != 1:
            return super().view(image, view)
        return self.jigsaw(image)

    def jigsaw(self, image: np.ndarray) -> torch.Tensor:
        """The shuffled, independently jittered tiles of a random resized crop."""
        return torch.stack([self._to_tensor(t) for t in self.cutter(image, shuffle=True)])


class TilesParams(sslx.Params):
    size: int | None = Field(
        None,
        ge=8,
        description="Side of the evaluation view in pixels, and the default "
        "jigsaw_size (null: the dataset's image size; required when "
        "its images vary in size).",
    )
    crop_scale: Pair = Field(
        (0.2, 1.0),
        description="Range of the area of the crop that is cut into tiles, as a "
        "fraction of the image (RandomResizedCrop).",
    )
    crop_ratio: Pair = Field((3 / 4, 4 / 3), description="Range of the crop's aspect ratio.")
    flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of flipping the crop horizontally.")
    jitter_prob: float = Field(0.8, ge=0, le=1, description="Probability of colour jitter, drawn for each tile.")
    brightness: float = Field(0.4, ge=0, description="Brightness jitter of each tile: factor drawn from [1-b, 1+b].")
    contrast: float = Field(0.4, ge=0, description="Contrast jitter of each tile: factor drawn from [1-c, 1+c].")
    saturation: float = Field(0.4, ge=0, description="Saturation jitter of each tile (colour images only).")
    hue: float = Field(0.1, ge=0, le=0.5, description="Hue jitter of each tile (colour images only).")
    grayscale_prob: float = Field(
        0.2, ge=0, le=1, description="Probability of converting a tile to grayscale (colour images only)."
    )
    mean: tuple[float, ...] | None = Field(None, description="Per-channel normalisation mean (null: the dataset's).")
    std: tuple[float, ...] | None = Field(None, description="Per-channel normalisation std (null: the dataset's).")
    grid: int = Field(
        3,
        ge=2,
        le=8,
        description="Tiles per side (3, nine tiles, for jigsaw and relative_position); "
        "the jigsaw objective's grid must match.",
    )
    jigsaw_size: int | None = Field(
        None,
        ge=4,
        description="Side in pixels of the random resized crop that is cut "
        "into tiles (null: size). About 30 suits 28 px images.",
    )
    tile: int | None = Field(
        None,
        ge=2,
        description="Side of each tile in pixels, at most jigsaw_size // grid - gap; "
        "the rest of each cell is the random jitter and gap between "
        "tiles (null: 3/4 of a cell, at most cell - gap). Keep tiles "
        "large enough for the encoder (9 px for 28 px images).",
    )
    gap: int = Field(
        0,
        ge=0,
        description="Least number of pixels between neighbouring tiles (0: tiles may touch, as "
        "in the jigsaw paper). Relative position (Doersch et al.) needs a gap so "
        "that lines do not run on from one tile into the next.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> TilesParams:
        _check_range("crop_scale", self.crop_scale, fraction=True)
        _check_range("crop_ratio", self.crop_ratio)
        return self


class TilesViews(Pipeline):
    """Tiles in cell order for pretext tasks on patches (jigsaw, Noroozi &
    Favaro, 2016, arXiv:1603.09246; relative position, Doersch et al., 2015,
    arXiv:1505.05192): every view is a random resized crop cut into grid x
    grid tiles at random offsets inside their cells (random gaps, at least
    'gap' px), each tile colour-jittered independently, returned in cell
    order (row by row, not shuffled) as one (grid*grid, C, tile, tile) tensor
    normalised like the other augmentations' views; the objective shuffles
    or pairs them. The evaluation view is the whole image."""

    name = "tiles"
    Params = TilesParams

    def __init__(self, params: TilesParams, data: sslx.DataInfo):
        super().__init__(params, data, params.size, "size")
        self.cutter = TileCutter(params, self.name, self.size, self.color, gap=params.gap)
        self.grid, self.jigsaw_size, self.tile = self.cutter.grid, self.cutter.jigsaw_size, self.cutter.tile

    def seed(self, seed: int) -> None:
        self.cutter.seed(seed)

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        """The tiles ``(grid*grid, C, tile, tile)`` of a new random crop, cell
        ``k`` (row ``k // grid``, column ``k % grid``) at position ``k``;
        every view number is alike."""
        return torch.stack([self._to_tensor(t) for t in self.cutter(image, shuffle=False)])
