"""TensorBoard scalars and image panels, plus the same panels as PNG files in the workdir."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from nucgen_tf import io, viz


def to_display(x: np.ndarray) -> np.ndarray:
    """Network range [-1, 1] -> display range [0, 1]."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


class Summaries:
    """Writes scalars and panels of one run to `<workdir>/tensorboard` and `<workdir>/panels`."""

    def __init__(self, workdir: str | pathlib.Path):
        self.workdir = pathlib.Path(workdir)
        self.writer = tf.summary.create_file_writer(str(self.workdir / "tensorboard"))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        self.writer.flush()

    def panel(
        self,
        step: int,
        name: str,
        rows: Sequence[Sequence[np.ndarray]],
        titles: Sequence[str],
        ndim: int,
    ) -> pathlib.Path:
        """(input | output | target ...) grids, one row per example, 3D as mid-slice over max projection."""
        grids = [
            viz.panel_grid([to_display(p) for p in row], ndim, titles=titles if i == 0 else None)
            for i, row in enumerate(rows)
        ]
        grid = viz.stack_rows(grids)
        with self.writer.as_default(step=step):
            tf.summary.image(name, grid[None], max_outputs=1)
        self.writer.flush()
        path = self.workdir / "panels" / f"{name}_{step:07d}.png"
        io.write_png(path, grid)
        return path

    def close(self) -> None:
        self.writer.close()
