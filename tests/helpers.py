"""Builders shared by several test modules (import as `from tests.helpers import ...`)."""

from __future__ import annotations

import numpy as np

from nucgen_tf.geometry import Boxes


def separated_boxes(
    ndim: int, rng: np.random.Generator, cell: int = 24, cells: int = 3, min_extent: int = 5
) -> tuple[Boxes, tuple[int, ...]]:
    """One box per grid cell (so their half-size ovals never touch), random odd/even extents.

    Returns:
        The boxes and the canvas shape `(cell * cells,) * ndim`.
    """
    centers, extents = [], []
    for index in np.ndindex(*(cells,) * ndim):
        extent = rng.integers(min_extent, cell - 3, size=ndim)
        start = np.asarray(index) * cell + 1 + rng.integers(0, cell - extent - 1)
        centers.append(start + (extent - 1) / 2)
        extents.append(extent)
    return Boxes(np.asarray(centers, float), np.asarray(extents, float)), (cell * cells,) * ndim


def write_disc_pairs(root, seeds, shape, cell: int = 16, keep: float = 0.6):
    """Image/mask pairs of bright nuclei (radius 3.5-6 px) on a jittered grid of `cell` px cells.

    A grid point holds a nucleus with probability `keep`; nuclei never touch, so segmenters
    trained on them in a few steps give non-trivial scores. Writes `d<seed>.tif` pairs.
    """
    import pathlib

    from nucgen_tf import io, phantoms

    root = pathlib.Path(root)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        axes = [np.arange(cell // 2, size, cell) for size in shape]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape))
        grid = grid[rng.random(len(grid)) < keep]
        centers = grid + rng.uniform(-2, 2, grid.shape)
        labels = phantoms.ellipsoid_labels(
            centers, shape, rng, radius_range=(3.5, 6.0), elongation=(1.0, 1.3)
        )
        io.write_tiff(root / "images" / f"d{seed:02d}.tif", phantoms.fluorescence_image(labels, rng))
        io.write_labels(root / "masks" / f"d{seed:02d}.tif", labels)
    return root
