"""Cost of scoring one predicted label image (nucgen_tf.eval) against naive per-instance loops.

    /work/venv/bin/python bench/metrics.py [--quick] [--repeats 3]

Cases:
  2D  a BBBC039 test mask (520 x 696) with the instance count nearest 150 (a phantom of that
      size if the data is missing), and a perturbed copy as the prediction: shifted by 1 px
      along the last axis and randomly 0 or 1 px along the others,
      5% of nuclei dropped, 5% split in two, ids shuffled to non-consecutive values;
  3D  64 x 256 x 256 ellipsoid phantom (nucgen_tf.phantoms), perturbed the same way.

Columns (CPU milliseconds of this process, time.process_time, so that other jobs on a shared
machine do not inflate them; best of --repeats except the naive loop, which runs once):
  overlap     nucgen_tf.eval.overlap_table: areas + all intersecting pairs + IoU
  score       nucgen_tf.eval.score: the above + matching at 10 IoU thresholds + all counts
  skimage     skimage.metrics.contingency_table (sparse; intersections only, no IoU)
  naive       per true instance: `truth == i`, then for each predicted id under it the
              boolean masks' intersection and union (full-image passes). In 3D (and with
              --quick) it runs on the first --naive_limit true instances and is extrapolated
              linearly to all of them; the column says "~" then.
  same        the naive loop's IoUs equal overlap_table's on the instances it covered.
The last columns are the pair's figures (pixel F1, paper instance F1, object F1@0.5, mean AP).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nucgen_tf import io, phantoms  # noqa: E402
from nucgen_tf.eval import overlap_table, score  # noqa: E402

BBBC039_TEST = REPO.parent / "shared" / "data" / "bbbc039" / "test" / "masks"


def truth_2d(target: int = 150) -> tuple[np.ndarray, str]:
    """The BBBC039 test mask with the instance count nearest `target`, or a phantom."""
    files = sorted(BBBC039_TEST.glob("*.tif")) if BBBC039_TEST.is_dir() else []
    if files:
        masks = [io.read_labels(f) for f in files]
        best = min(range(len(masks)), key=lambda i: abs(int(masks[i].max()) - target))
        return masks[best], f"BBBC039 {files[best].name[:20]}..."
    rng = np.random.default_rng(0)
    seeds = rng.uniform(0, 1, (target, 2)) * (520, 696)
    return phantoms.ellipsoid_labels(seeds, (520, 696), rng, radius_range=(8, 14)), "phantom (no BBBC039)"


def truth_3d(shape: tuple[int, ...] = (64, 256, 256), n_seeds: int = 900) -> np.ndarray:
    rng = np.random.default_rng(1)
    seeds = rng.uniform(0, 1, (n_seeds, 3)) * shape
    return phantoms.ellipsoid_labels(seeds, shape, rng, radius_range=(5, 9))


def perturb(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible prediction: shifted by 1 px, 5% dropped, 5% split along the last axis, ids shuffled."""
    rng = np.random.default_rng(seed)
    shift = np.maximum(rng.integers(0, 2, truth.ndim), np.arange(truth.ndim) == truth.ndim - 1)
    pred = np.roll(truth, tuple(shift), axis=tuple(range(truth.ndim)))
    n = int(pred.max())
    ids = rng.permutation(n) + 1
    drop, split = ids[: n // 20], ids[n // 20 : n // 10]
    lut = np.concatenate([[0], 3 * rng.permutation(n) + 7]).astype(np.int64)  # non-consecutive ids
    lut[drop] = 0
    out = lut[pred]
    coords = np.indices(pred.shape)[-1]
    sizes = np.maximum(np.bincount(pred.ravel(), minlength=n + 1), 1)
    centre = np.bincount(pred.ravel(), coords.ravel(), n + 1) / sizes  # mean last coordinate per id
    halves = np.isin(pred, split) & (coords > centre[pred])
    out[halves] = 10 * n + pred[halves]  # the far half of each split nucleus gets a new id
    return out


def naive_ious(truth: np.ndarray, pred: np.ndarray, true_ids: np.ndarray) -> dict[tuple[int, int], float]:
    """The baseline: boolean masks per (true, pred) pair."""
    result = {}
    for t in true_ids:
        a = truth == t
        for p in np.unique(pred[a]):
            if p == 0:
                continue
            b = pred == p
            result[int(t), int(p)] = float((a & b).sum() / (a | b).sum())
    return result


def _best_ms(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return 1e3 * best, out


def row(name: str, truth: np.ndarray, repeats: int, naive_limit: int | None) -> dict:
    from skimage.metrics import contingency_table

    pred = perturb(truth)
    overlap_ms, table = _best_ms(lambda: overlap_table(truth, pred), repeats)
    score_ms, s = _best_ms(lambda: score(truth, pred), repeats)
    skimage_ms, _ = _best_ms(lambda: contingency_table(truth, pred), repeats)
    covered = table.true_ids if naive_limit is None else table.true_ids[:naive_limit]
    naive_ms, naive = _best_ms(lambda: naive_ious(truth, pred, covered), 1)
    extrapolated = len(covered) < table.n_true
    if extrapolated:
        naive_ms *= table.n_true / max(len(covered), 1)
    keep = set(covered.tolist())
    ours = {
        (int(table.true_ids[i]), int(table.pred_ids[j])): float(v)
        for i, j, v in zip(table.true_index, table.pred_index, table.iou)
        if int(table.true_ids[i]) in keep
    }
    same = ours.keys() == naive.keys() and all(abs(ours[k] - naive[k]) < 1e-12 for k in naive)
    return {
        "case": name,
        "shape": "x".join(map(str, truth.shape)),
        "true/pred": f"{table.n_true}/{table.n_pred}",
        "overlap": f"{overlap_ms:.1f}",
        "score": f"{score_ms:.1f}",
        "skimage": f"{skimage_ms:.1f}",
        "naive": f"{'~' if extrapolated else ''}{naive_ms:.0f}",
        "speed-up": f"{naive_ms / score_ms:.0f}x",
        "same": "yes" if same else "NO",
        "pixF1": f"{s.pixel_f1:.3f}",
        "instF1": f"{s.instance_f1:.3f}",
        "objF1": f"{s.object_f1:.3f}",
        "mAP": f"{s.mean_ap:.3f}",
    }


def format_table(rows: list[dict]) -> str:
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(r[c].rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="naive loop on 30 instances only, also in 2D")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the fast columns")
    parser.add_argument("--naive_limit", type=int, default=60, help="3D: naive loop on this many instances")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPU cores (shared); CPU times in ms")
    labels_2d, source = truth_2d()
    print(f"2D truth: {source}")
    rows = [row("2D", labels_2d, args.repeats, 30 if args.quick else None)]
    rows.append(row("3D", truth_3d(), args.repeats, 30 if args.quick else args.naive_limit))
    print(format_table(rows))


if __name__ == "__main__":
    main()
