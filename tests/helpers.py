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
