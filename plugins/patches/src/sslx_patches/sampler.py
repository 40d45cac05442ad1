"""The patches pair sampler (CPC style): square patches of one image on a
grid of cells; a patch and a near patch of the same image are positives,
far patches of the same image and patches of other images are negatives.

Cells are numbered ``(row, col)`` on a ``grid`` x ``grid`` grid; the patch of
cell ``(r, c)`` has its top-left corner at pixel ``(round(r * step_y),
round(c * step_x))`` with ``step = (side - patch_size) / (grid - 1)``, so the
grid spreads evenly over the image (patches overlap when ``grid *
patch_size`` exceeds the side). Distances between cells are Chebyshev
distances ``max(|r - r'|, |c - c'|)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pydantic import Field, model_validator

import sslx

__all__ = ["Patches", "cell_corners", "cell_distances", "draw_layout", "find_layout"]

SEARCH_TRIES = 2000  # random placements tried when the parameters are checked
SAMPLE_TRIES = 100  # random placements tried per item before the checked one is reused


def cell_corners(side: int, patch_size: int, grid: int) -> np.ndarray:
    """Pixel offset of each of ``grid`` cells along one image axis of
    ``side`` pixels: ``round(i * (side - patch_size) / (grid - 1))`` (Python's
    ``round``, halves to even)."""
    step = (side - patch_size) / (grid - 1)
    return np.array([round(i * step) for i in range(grid)], dtype=np.int64)


@lru_cache(maxsize=16)
def cell_distances(grid: int) -> np.ndarray:
    """``(grid**2, grid**2)`` Chebyshev distances between cells numbered row by
    row (cell ``n`` is row ``n // grid``, column ``n % grid``)."""
    row, col = np.divmod(np.arange(grid * grid), grid)
    return np.maximum(np.abs(row[:, None] - row[None, :]), np.abs(col[:, None] - col[None, :]))


def draw_layout(grid: int, near: int, far: int, pairs: int, rng: np.random.Generator) -> np.ndarray | None:
    """One random placement of ``pairs`` samples: ``(pairs, 2)`` cell numbers
    ``(anchor, positive)`` with ``1 <= dist(anchor, positive) <= near`` and
    every cell of one sample at least ``far`` from every cell of another.

    Samples are placed one after another: the anchor uniformly among the
    free cells that have a free cell within ``near``, the positive uniformly
    among those; a cell is free while it is at least ``far`` from every cell
    placed so far. Returns None when the cells run out before ``pairs``
    samples are placed (the caller tries again)."""
    distances = cell_distances(grid)
    within_near = (distances >= 1) & (distances <= near)
    free = np.ones(grid * grid, dtype=bool)
    layout = np.empty((pairs, 2), dtype=np.int64)
    for k in range(pairs):
        candidates = within_near & free[:, None] & free[None, :]
        anchors = np.flatnonzero(candidates.any(axis=1))
        if len(anchors) == 0:
            return None
        anchor = rng.choice(anchors)
        positive = rng.choice(np.flatnonzero(candidates[anchor]))
        layout[k] = anchor, positive
        free &= (distances[anchor] >= far) & (distances[positive] >= far)
    return layout


@lru_cache(maxsize=64)
def find_layout(grid: int, near: int, far: int, pairs: int) -> np.ndarray | None:
    """A valid placement found by up to ``SEARCH_TRIES`` seeded random
    placements (:func:`draw_layout`), or None when none was found."""
    rng = np.random.default_rng(0)
    for _ in range(SEARCH_TRIES):
        layout = draw_layout(grid, near, far, pairs, rng)
        if layout is not None:
            return layout
    return None


def _transform(layout: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """``layout`` under one of the grid's 8 symmetries (transpose, flips),
    drawn at random, with its samples shuffled: distances are unchanged."""
    row, col = np.divmod(layout, grid)
    if rng.random() < 0.5:
        row, col = col, row
    if rng.random() < 0.5:
        row = grid - 1 - row
    if rng.random() < 0.5:
        col = grid - 1 - col
    return (row * grid + col)[rng.permutation(len(layout))]


class PatchesParams(sslx.Params):
    grid: int = Field(
        4,
        ge=2,
        le=16,
        description="Cells per side of the grid of patch positions; patches are spread "
        "evenly over the image and overlap when grid * patch_size exceeds "
        "its side.",
    )
    patch_size: int = Field(
        14,
        ge=1,
        description="Side of the square patches in pixels, before the augmentation "
        "resizes them to its view size (augmentation.size).",
    )
    near: int = Field(
        1,
        ge=1,
        description="Largest grid distance (Chebyshev, in cells) between the two patches of a "
        "positive pair; the positive is drawn uniformly among the cells at "
        "distance 1..near from the anchor.",
    )
    far: int = Field(
        2,
        ge=2,
        description="Smallest grid distance between any two patches of different samples of "
        "the same image (they are each other's negatives); must exceed near.",
    )
    pairs: int = Field(
        2,
        ge=1,
        le=32,
        description="Samples (anchor and positive) drawn per image: the sampler's "
        "group size; trainer.batch_size must be a multiple of it.",
    )

    @model_validator(mode="after")
    def _placeable(self) -> PatchesParams:
        if self.far <= self.near:
            raise ValueError(
                f"far ({self.far}) must exceed near ({self.near}): patches of different samples must lie farther "
                f"apart than the patches of a positive pair. Raise far or lower near."
            )
        if find_layout(self.grid, self.near, self.far, self.pairs) is None:
            raise ValueError(
                f"a {self.grid}x{self.grid} grid has no room found for {self.pairs} samples (a pair of patches within "
                f"{self.near} cells each) whose patches all lie at least {self.far} cells from those of the other "
                f"samples ({SEARCH_TRIES} random placements tried). Lower pairs or far, or raise grid."
            )
        return self


class Patches(sslx.PairSampler):
    """Patches of one image (CPC style): each image gives `pairs` samples of
    two square patches on a grid of cells, an anchor and a positive at most
    `near` cells away; the patches of different samples of an image lie at
    least `far` cells apart, so the in-batch negatives of a sample are far
    patches of its own image and the patches of other images. Each patch is
    cropped from the image, then augmented (augmentation.view, views 0 and
    1). Meta: anchor_cell, positive_cell (row, col) and anchor_box,
    positive_box (x0, y0, x1, y1 in pixels, exclusive)."""

    name = "patches"
    Params = PatchesParams

    def __init__(self, params: PatchesParams):
        super().__init__(params)
        self.fallback = find_layout(params.grid, params.near, params.far, params.pairs)

    @property
    def num_views(self) -> int:
        return 2

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return self.params.pairs

    def corners(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-left pixel of each grid row and column for ``height`` x
        ``width`` images; a UserError when the patches do not fit."""
        p = self.params
        if p.patch_size > min(height, width):
            raise sslx.UserError(
                f"sampler 'patches': patch_size ({p.patch_size} px) is larger than the {height}x{width} images of "
                f"the dataset: set sampler.patch_size to at most {min(height, width)}."
            )
        if min(height, width) - p.patch_size < p.grid - 1:
            raise sslx.UserError(
                f"sampler 'patches': a {p.grid}x{p.grid} grid of {p.patch_size} px patches on {height}x{width} "
                f"images puts different cells on the same pixels (each step must move at least 1 px): lower "
                f"sampler.grid to at most {min(height, width) - p.patch_size + 1} or sampler.patch_size to at most "
                f"{min(height, width) - p.grid + 1}."
            )
        return cell_corners(height, p.patch_size, p.grid), cell_corners(width, p.patch_size, p.grid)

    def layout(self) -> np.ndarray:
        """The ``(pairs, 2)`` cells ``(anchor, positive)`` of one image, drawn
        from ``self.rng``; when random placement keeps failing (crowded
        settings), the placement found at construction under a random
        symmetry of the grid."""
        p = self.params
        for _ in range(SAMPLE_TRIES):
            layout = draw_layout(p.grid, p.near, p.far, p.pairs, self.rng)
            if layout is not None:
                return layout
        return _transform(self.fallback, p.grid, self.rng)

    def sample_group(self, split: sslx.ImageSplit, index: int, augmentation: sslx.Augmentation) -> list[sslx.Sample]:
        image = split.image(index)
        rows, cols = self.corners(image.shape[0], image.shape[1])
        size = self.params.patch_size
        samples = []
        for cells in self.layout():
            views, meta = [], {}
            for v, (cell, role) in enumerate(zip(cells, ("anchor", "positive"))):
                r, c = divmod(int(cell), self.params.grid)
                y0, x0 = int(rows[r]), int(cols[c])
                patch = np.ascontiguousarray(image[y0 : y0 + size, x0 : x0 + size])
                views.append(augmentation.view(patch, v))
                meta[f"{role}_cell"] = np.array([r, c], dtype=np.int64)
                meta[f"{role}_box"] = np.array([x0, y0, x0 + size, y0 + size], dtype=np.int64)
            samples.append(sslx.Sample(views, meta=meta))
        return samples
