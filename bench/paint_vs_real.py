"""Real images next to `nucgen paint` of their own masks, one row per field, to look at.

    .venv/bin/python bench/paint_vs_real.py --real ../shared/data/bbbc039/train \
        --painted new=runs/paint_new --painted old=runs/paint_old --out docs/stage3_paint_vs_real.png

Every painted set holds images/<name>.tif of the real masks' names (what `nucgen paint --masks
<real>` writes). Each row shows a 256 x 256 window around the nuclei of one field: the real
image, then each painted one, all on the REAL image's display range (so brightness compares),
and the real image with its contours.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags
from PIL import Image

from nucgen_tf import io, viz

flags.DEFINE_string("real", None, "Real folder with images/ and masks/.")
flags.DEFINE_multi_string("painted", [], "NAME=FOLDER of a painted set (images/<name>.tif).")
flags.DEFINE_string("out", None, "PNG to write.")
flags.DEFINE_integer("n", 10, "Fields (the first in name order).")
flags.DEFINE_integer("size", 256, "Window per axis.")


def window(labels: np.ndarray, size: int) -> tuple[slice, ...]:
    """A size x size window around the median nucleus pixel, inside the field."""
    center = np.median(np.argwhere(labels > 0), axis=0) if labels.any() else np.asarray(labels.shape) / 2
    start = [int(np.clip(c - size // 2, 0, max(0, n - size))) for c, n in zip(center, labels.shape)]
    return tuple(slice(s, s + size) for s in start)


def row(real: np.ndarray, labels: np.ndarray, painted: list[np.ndarray], size: int) -> list[np.ndarray]:
    cut = window(labels, size)
    lo, hi = np.percentile(real, [1.0, 99.8])
    span = max(hi - lo, 1.0)
    shown = [np.clip((np.asarray(x, np.float32)[cut] - lo) / span, 0, 1) for x in (real, *painted)]
    return [*shown, viz.overlay_contours(shown[0], labels[cut])]


def main(argv: list[str]) -> None:
    f = flags.FLAGS
    sets = [entry.split("=", 1) for entry in f.painted]
    pairs = io.list_pairs(f.real)[: f.n]
    grids = []
    for pair in pairs:
        real, labels = io.read_pair(pair, 2)
        paths = [pathlib.Path(folder) / "images" / f"{pair.name}.tif" for _, folder in sets]
        painted = [io.read_image(path, 2) for path in paths]
        titles = [f"real {pair.name[:18]}", *[f"painted: {name}" for name, _ in sets], "real + contours"]
        grids.append(viz.panel_grid(row(real, labels, painted, f.size), 2, titles))
    Image.fromarray(viz.stack_rows(grids)).save(f.out)
    print(f"wrote {f.out}: {len(grids)} fields")


if __name__ == "__main__":
    flags.mark_flags_as_required(["real", "out"])
    app.run(main)
