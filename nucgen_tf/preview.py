"""`nucgen preview`: look at the paper's representations of your own data before training.

For every image/mask pair of a folder (``<data>/images/*.tif`` + ``<data>/masks/*.tif``) it writes
one PNG: image with mask contours | seed points | stage-1 box map (Eq. 1) | stage-2 colored
ellipses | stage-2 colored mask + boundary (a dark rim). 3D volumes show the mid-slice over the max
projection. Without ``--data`` it renders a built-in parametric example, so it needs no data.

    nucgen preview --out previews/                 # built-in 2D example
    nucgen preview --ndim=3 --out previews/        # built-in 3D example
    nucgen preview --data my_data/train --out previews/
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import numpy as np
from absl import logging

from nucgen_tf import geometry, io, phantoms, viz
from nucgen_tf.config import RenderConfig

_TITLES = (
    "image + contours",
    "seed points",
    "box map (Eq. 1)",
    "colored ellipses",
    "colored mask + boundary",
)


@dataclasses.dataclass(frozen=True)
class Representations:
    """Every representation of one labelled sample, in the stored [0, 1] range."""

    seed_map: np.ndarray
    box_map: np.ndarray
    ellipses: np.ndarray
    mask: np.ndarray


def render_all(labels: np.ndarray, config: RenderConfig = RenderConfig()) -> Representations:
    """Render the seed map, box map, colored ellipses and colored mask of a label image."""
    lut = geometry.color_labels(labels, config.color_margin, oriented=config.oriented)
    maps = geometry.render_representations(None, config, labels=labels, lut=lut)
    return Representations(
        seed_map=maps["seed_map"][..., 0],
        box_map=maps["box_map"][..., 0],
        ellipses=maps["ellipses"],
        mask=maps["mask"],
    )


def preview_panel(image: np.ndarray, labels: np.ndarray, config: RenderConfig = RenderConfig()) -> np.ndarray:
    """The RGB uint8 preview grid of one image/mask pair (2D or 3D)."""
    reps = render_all(labels, config)
    shown = viz.overlay_contours(viz.display_range(image), labels)
    panels = [shown, reps.seed_map, reps.box_map, reps.ellipses, reps.mask]
    return viz.panel_grid(panels, labels.ndim, titles=_TITLES)


def _samples(
    data: str | None, ndim: int, seed: int, max_files: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    if data is None:
        image, labels = phantoms.example(ndim=ndim, seed=seed)
        yield f"example_{ndim}d_seed{seed}", image, labels
        return
    pairs = io.list_pairs(data)
    for pair in pairs[:max_files] if max_files > 0 else pairs:
        image, labels = io.read_pair(pair)
        yield pair.name, image, labels


def write_previews(
    out: str | pathlib.Path,
    data: str | None = None,
    ndim: int = 2,
    seed: int = 0,
    max_files: int = 0,
    config: RenderConfig = RenderConfig(),
) -> list[pathlib.Path]:
    """Write one preview PNG per sample into `out` and return their paths."""
    out = pathlib.Path(out)
    written = []
    for name, image, labels in _samples(data, ndim, seed, max_files):
        path = out / f"{pathlib.Path(name).stem}.png"
        io.write_png(path, preview_panel(image, labels, config))
        logging.info("wrote %s (%d nuclei, shape %s)", path, int(labels.max()), labels.shape)
        written.append(path)
    return written
