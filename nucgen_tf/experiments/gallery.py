"""Synthetic pairs next to real ones: one PNG that shows where a condition's data differs.

A table says whether synthetic data helped; this picture says why not. Row 1 holds crops of
real training pairs, each further row a condition's synthetic pairs, every pair shown as the
plain image and the image with its instance contours (3D: mid-slice over max projection).

    python -m nucgen_tf.commands.gallery --workdir=runs/bbbc039_2d/experiment [--n_train=20]
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from nucgen_tf import io, viz

_LABEL_WIDTH = 110


def crop_pair(
    image: np.ndarray, labels: np.ndarray, size: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random crop of at most `size` per axis, the same window in image and labels."""
    start = [int(rng.integers(0, max(1, s - c) + 1)) for s, c in zip(image.shape, size)]
    window = tuple(slice(b, b + c) for b, c in zip(start, size))
    return image[window], labels[window]


def pair_panels(image: np.ndarray, labels: np.ndarray) -> list:
    """The plain image and the image with contours, both display-scaled to [0, 1]."""
    shown = viz.display_range(image)
    plain = viz.views(shown, labels.ndim)
    return [plain, viz.overlay_contours(shown, labels)]


def folder_row(
    folder: pathlib.Path, n: int, size: Sequence[int], rng: np.random.Generator
) -> tuple[list, list[str]]:
    """Panels and titles of `n` pairs drawn from a data folder (images/ + masks/)."""
    pairs = io.list_pairs(folder)
    chosen = sorted(rng.choice(len(pairs), size=min(n, len(pairs)), replace=False))
    panels, titles = [], []
    for index in chosen:
        image, labels = io.read_pair(pairs[index])
        image, labels = crop_pair(image, labels, size, rng)
        panels += pair_panels(image, labels)
        name = pairs[index].name
        titles += [f"{name[:18]} ({int(labels.max(initial=0))} nuclei)", "contours"]
    return panels, titles


def _pad_to(panel_views: list, shape: Sequence[int]) -> list:
    """Pads 2D views (gray or RGB) with dark gray up to `shape` so that rows line up."""
    out = []
    for view in panel_views:
        view = np.asarray(view, np.float32)
        pad = [(0, max(0, t - s)) for t, s in zip(shape, view.shape[:2])] + [(0, 0)] * (view.ndim - 2)
        out.append(np.pad(view, pad, constant_values=0.25))
    return out


def _with_label(grid: np.ndarray, text: str) -> np.ndarray:
    strip = Image.new("RGB", (_LABEL_WIDTH, grid.shape[0]), (40, 40, 40))
    ImageDraw.Draw(strip).text((4, grid.shape[0] // 2 - 6), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(strip), grid], axis=1)


def gallery(
    rows: Mapping[str, pathlib.Path], n: int = 3, size: Sequence[int] = (256, 256), seed: int = 0
) -> np.ndarray:
    """One RGB grid: per named data folder a row of `n` pairs (plain image | contours).

    Args:
        rows: row name -> data folder (images/ + masks/), e.g. {"real": ..., "ours": ...}.
        n: pairs per row.
        size: crop size per axis (real images are larger than synthetic canvases).
        seed: which pairs and crops are drawn.
    """
    if not rows:
        raise ValueError("`rows` must name at least one data folder.")
    grids = []
    for name, folder in rows.items():
        panels, titles = folder_row(pathlib.Path(folder), n, size, np.random.default_rng(seed))
        ndim = len(size)
        target = tuple(size[-2:])
        panels = [_pad_to(viz.views(p, ndim) if not isinstance(p, list) else p, target) for p in panels]
        while len(panels) < 2 * n:  # a folder with fewer pairs than n: keep the columns aligned
            panels.append([np.full(target, 0.25, np.float32)] * len(panels[0]))
            titles.append("")
        grids.append(_with_label(viz.panel_grid(panels, ndim, titles), name))
    return viz.stack_rows(grids)


def experiment_rows(workdir: pathlib.Path, n_train: int) -> dict[str, pathlib.Path]:
    """"real" (the amount's training subset) and every condition's synthetic folder that exists."""
    rows = {"real": workdir / "data" / f"train_n{n_train}"}
    synthetic = workdir / "synthetic" / f"n{n_train}"
    if synthetic.is_dir():
        rows.update({d.name: d for d in sorted(synthetic.iterdir()) if (d / "images").is_dir()})
    missing = [str(p) for p in rows.values() if not (p / "images").is_dir()]
    if missing:
        raise io.DataError(missing[0], "has no images/ folder: run the experiment for this amount first")
    return rows


def write_gallery(workdir: pathlib.Path, n_train: int, n: int = 3, seed: int = 0) -> pathlib.Path:
    """Writes `<workdir>/report/gallery_n<N>.png` and returns its path."""
    rows = experiment_rows(workdir, n_train)
    ndim = io.read_image(io.list_pairs(rows["real"])[0].image_path).ndim
    size = (256, 256) if ndim == 2 else (32, 128, 128)
    out = workdir / "report" / f"gallery_n{n_train}.png"
    io.write_png(out, gallery(rows, n=n, size=size, seed=seed))
    logging.info("wrote %s (%s)", out, ", ".join(rows))
    return out
