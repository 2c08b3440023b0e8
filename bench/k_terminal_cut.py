"""Cost of the iterative k-terminal cut against component size and number of terminals.

    /work/venv/bin/python bench/k_terminal_cut.py [--quick]

Each row is one same-color blob of K touching discs (2D) or balls (3D) of equal size, the
case the stage-2 decoder hands to the cut (features = one palette color + N(0, 0.02)
noise, so only the geometry of the necks separates the nuclei): K in a row, except K >= 4
in 2D, which sit on a ring (around a small hole). Terminals are the true centres and the
seeds the box-map ovals (semi-axes = box size / 4), as in `decode_colored_mask`. The truth
is the power diagram of the discs (the contact of two overlapping discs is their radical
line); `IoU cut` / `IoU wshed` are the worst region's IoU. Every cut runs with
max_work=None (no fallback).

Columns (milliseconds; best of `--repeats` for scipy and the watershed, one run otherwise):
  scipy crop     the default: graph on the blob's bounding box + 1 px, compiled Dinic
  watershed      the fallback above the work budget (k_terminal_cut(max_work=0))
  nx-BK crop     the same graph solved by networkx.minimum_cut(flow_func=boykov_kolmogorov)
  nx-PP crop     ... flow_func=preflow_push (not with --quick)
  scipy canvas   the generic formulation: every pixel of the canvas (256 x 256 in 2D,
                 32 x 64 x 64 in 3D) in the graph, background included (3D: K = 2 only
                 with --quick)
  nx-BK canvas   the baseline: networkx's min cut on the full 2D canvas, K = 2 only
                 (10-30 s per max-flow)
  same           the scipy and networkx crop results are identical label arrays
The number of max-flows per cut is 1 for K = 2 and K (K + 1) / 2 - 2 for K >= 3.

`rows(quick)` returns the table as dicts and `format_table(rows)` renders it, so that
bench/synthesize.py can include it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import networkx as nx
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nucgen_tf.geometry import PALETTE, boxes_from_labels  # noqa: E402
from nucgen_tf.geometry.boxes import box_semi_axes  # noqa: E402
from nucgen_tf.postprocess import k_terminal_cut  # noqa: E402

CANVAS = {2: (256, 256), 3: (32, 64, 64)}


def blob(ndim: int, n_pixels: int, k: int, seed: int = 0):
    """K equal balls in a row (or a ring for K >= 4, 2D), centres 1.6 radii apart, on a crop.

    Returns (labels, features, centres): labels = power-diagram truth 1..K, features =
    (*shape, 3) one palette color + noise on the blob, 0 elsewhere.
    """
    unit = np.pi if ndim == 2 else 4.0 / 3.0 * np.pi
    # Overlapping balls cover ~0.9 of K separate ones at 1.6 radii spacing.
    radius = (n_pixels / (0.9 * k * unit)) ** (1.0 / ndim)
    step = 1.6 * radius
    if ndim == 2 and k >= 4:
        ring = step / (2.0 * np.sin(np.pi / k))
        angles = 2.0 * np.pi * np.arange(k) / k
        offsets = np.stack([ring * np.sin(angles), ring * np.cos(angles)], 1)
    else:
        offsets = np.zeros((k, ndim))
        offsets[:, -1] = step * (np.arange(k) - (k - 1) / 2.0)
    margin = radius + 3
    lo = offsets.min(0) - margin
    shape = tuple(int(np.ceil(s)) for s in offsets.max(0) + margin - lo)
    centres = offsets - lo
    grid = np.indices(shape, dtype=np.float64)
    power = np.stack([sum((grid[d] - c[d]) ** 2 for d in range(ndim)) - radius**2 for c in centres])
    labels = np.where((power <= 0).any(0), power.argmin(0) + 1, 0).astype(np.int32)
    rng = np.random.default_rng(seed)
    features = np.zeros(shape + (3,))
    features[labels > 0] = PALETTE[0]
    features += rng.normal(0.0, 0.02, features.shape) * (labels > 0)[..., None]
    return labels, features, centres


def _embed(array: np.ndarray, canvas: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Place a crop in the middle of a canvas; returns (canvas array, origin)."""
    if any(a > c for a, c in zip(array.shape, canvas)):
        raise ValueError(f"crop {array.shape[: len(canvas)]} does not fit the canvas {canvas}")
    origin = np.array([(c - a) // 2 for a, c in zip(array.shape, canvas)])
    out = np.zeros(canvas + array.shape[len(canvas) :], array.dtype)
    out[tuple(slice(o, o + a) for o, a in zip(origin, array.shape))] = array
    return out, origin


def _time(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best, result


def _min_iou(labels: np.ndarray, out: np.ndarray) -> float:
    ious = []
    for k in range(1, int(labels.max()) + 1):
        a, b = labels == k, out == k
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    return float(min(ious))


def row(ndim: int, n_pixels: int, k: int, quick: bool, repeats: int = 3) -> dict:
    labels, features, centres = blob(ndim, n_pixels, k)
    region = labels > 0
    boxes = boxes_from_labels(labels)
    common = dict(seed_semi_axes=box_semi_axes(boxes.extents), max_work=None)

    def cut(mask, feats, points, **kwargs):
        return lambda: k_terminal_cut(mask, feats, points, **{**common, **kwargs})

    scipy_ms, scipy_out = _time(cut(region, features, centres), repeats)
    watershed_ms, watershed_out = _time(cut(region, features, centres, max_work=0), repeats)
    bk_ms, bk_out = _time(cut(region, features, centres, backend="networkx"), 1)
    result = {
        "ndim": ndim,
        "pixels": int(region.sum()),
        "K": k,
        "scipy crop": scipy_ms,
        "watershed": watershed_ms,
        "nx-BK crop": bk_ms,
        "nx-PP crop": None,
        "scipy canvas": None,
        "nx-BK canvas": None,
        "IoU cut": _min_iou(labels, scipy_out),
        "IoU wshed": _min_iou(labels, watershed_out),
        "same": bool(np.array_equal(scipy_out, bk_out)),
    }
    if not quick:
        preflow = nx.algorithms.flow.preflow_push
        result["nx-PP crop"], _ = _time(
            cut(region, features, centres, backend="networkx", flow_func=preflow), 1
        )
    canvas_features, origin = _embed(features, CANVAS[ndim])
    everything = np.ones(CANVAS[ndim], bool)
    shifted = centres + origin
    if not quick or k == 2 or ndim == 2:
        result["scipy canvas"], _ = _time(cut(everything, canvas_features, shifted), 1)
    if ndim == 2 and k == 2:
        result["nx-BK canvas"], _ = _time(cut(everything, canvas_features, shifted, backend="networkx"), 1)
    return result


def rows(quick: bool = False, repeats: int = 3) -> list[dict]:
    """The benchmark table; see the module docstring for the columns."""
    sizes_2d = (200, 1000) if quick else (200, 1000, 5000)
    ks = (2, 3) if quick else (2, 3, 5)
    cases = [(2, n, k) for n in sizes_2d for k in ks] + [(3, 5000, k) for k in ks]
    return [row(ndim, n, k, quick, repeats) for ndim, n, k in cases]


def format_table(table: list[dict]) -> str:
    columns = ["ndim", "pixels", "K", "scipy crop", "watershed", "nx-BK crop", "nx-PP crop", "scipy canvas",
               "nx-BK canvas", "IoU cut", "IoU wshed", "same"]  # fmt: skip
    widths = [max(len(c), 7) for c in columns]

    def cell(name: str, value) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if name.startswith("IoU"):
            return f"{value:.3f}"
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    for entry in table:
        lines.append("  ".join(cell(c, entry[c]).rjust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller table, fewer networkx baselines")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the fast columns")
    args = parser.parse_args(argv)
    print(f"networkx {nx.__version__}, numpy {np.__version__}, {os.cpu_count()} CPU cores")
    print("k-terminal cut of a same-color blob of K touching discs/balls; times in ms")
    print(format_table(rows(args.quick, args.repeats)))


if __name__ == "__main__":
    main()
