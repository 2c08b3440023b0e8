"""`nucgen evaluate`: score predicted label TIFFs against the true ones with the same names.

Every ``*.tif`` of ``--pred`` is compared with the file of the same name (stem) in ``--truth``;
either folder may be a plain folder of label TIFFs, a data folder holding ``masks/`` (e.g.
``data/bbbc039/test``) or a Cellpose-layout folder (``<name>.tif`` + ``<name>_masks.tif``, as
``nucgen synthesize --layout cellpose`` writes; ``_cp_masks`` as Cellpose saves predictions).
Intensity images are refused: scored as labels they give meaningless figures without error.
Prints one line per image and the pooled line (counts summed over all
images, then the ratios): pixel F1, the paper's instance F1, object F1 at IoU 0.5 and the
DSB/StarDist mean AP over IoU 0.5:0.05:0.95. ``--json`` also writes every count and figure.

    nucgen evaluate --pred runs/seg/pred --truth data/bbbc039/test --json runs/seg/scores.json
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from absl import logging

from nucgen_tf import io
from nucgen_tf.eval.metrics import DSB_THRESHOLDS, Scores, pool, score

MASK_SUFFIXES = ("_cp_masks", "_masks")
"""Stem endings of label files beside their images (Cellpose layout); the rest is the name."""
MAX_CHANGE_FRACTION = 0.5
"""Above this share of differing neighbours among object pixels a file is not a label mask
(BBBC039: masks 0.08-0.09, images 0.94-0.97)."""
_ADVICE = "--pred and --truth take integer label masks (masks/, or <name>_masks.tif files)"


def check_labels(path: io.PathLike, array: np.ndarray) -> None:
    """Refuses an array that is an intensity image rather than instance labels.

    A label mask is piecewise constant: neighbouring object pixels share their label except
    at the borders between nuclei. In an intensity image nearly every pair differs.

    Raises:
        io.DataError: a float array, or an integer one whose neighbouring object pixels
            differ more often than `MAX_CHANGE_FRACTION`.
    """
    if np.issubdtype(array.dtype, np.floating):
        raise io.DataError(
            path, f"{array.dtype} values are intensities or probabilities, not labels; {_ADVICE}"
        )
    left, right = array[..., :-1], array[..., 1:]
    objects = (left != 0) | (right != 0)
    n_objects = int(np.count_nonzero(objects))
    if n_objects == 0:
        return
    change = int(np.count_nonzero((left != right) & objects)) / n_objects
    if change > MAX_CHANGE_FRACTION:
        n_values = len(np.unique(array))
        raise io.DataError(
            path,
            f"looks like an intensity image, not instance labels ({array.dtype}, {n_values} distinct values; "
            f"{change:.0%} of neighbouring object pixels differ, in a label mask ~10%); {_ADVICE}",
        )


def label_files(folder: io.PathLike) -> dict[str, pathlib.Path]:
    """The label TIFFs of a folder by stem: its own ``*.tif``/``*.tiff``, else those of ``masks/``.

    Raises:
        io.DataError: the folder is missing, holds no TIFF (nor does its ``masks/``), or two
            files share a stem.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise io.DataError(root, "folder not found (expected label TIFFs, or a data folder with masks/)")
    if root.resolve().name == "images":
        raise io.DataError(
            root, "an images/ folder holds intensities, not labels; give its masks/ folder or the data folder"
        )
    for candidate in (root, root / "masks"):
        if not candidate.is_dir():
            continue
        tiffs = [
            path
            for path in sorted(candidate.iterdir())
            # Dot files are temporaries of atomic writes or macOS resource forks.
            if not path.name.startswith(".") and path.suffix.lower() in io.TIFF_SUFFIXES and path.is_file()
        ]
        masks = {p: _mask_name(p.stem) for p in tiffs}
        if any(name is not None for name in masks.values()):  # Cellpose layout: skip the images
            tiffs = [p for p in tiffs if masks[p] is not None]
        found: dict[str, pathlib.Path] = {}
        for path in tiffs:
            name = masks[path] or path.stem
            if name in found:
                raise io.DataError(path, f"two label files share the name {name!r}: also {found[name]}")
            found[name] = path
        if found:
            return found
    raise io.DataError(root, "no *.tif or *.tiff label files here nor in masks/")


def _mask_name(stem: str) -> str | None:
    """The image name of a Cellpose-layout label file (``a_masks`` -> ``a``), else None."""
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def read_checked_labels(path: io.PathLike, ndim: int | None = None) -> np.ndarray:
    """`io.read_labels`, after `check_labels` refused intensity images."""
    check_labels(path, io.read_image(path, ndim))
    return io.read_labels(path, ndim)


def evaluate_folders(
    pred: io.PathLike,
    truth: io.PathLike,
    ndim: int | None = None,
    thresholds: Iterable[float] = DSB_THRESHOLDS,
    partial: bool = False,
) -> dict[str, Scores]:
    """Scores every predicted label file against the true file with the same name.

    Args:
        pred: folder of predicted label TIFFs (or a folder holding masks/).
        truth: folder of true label TIFFs, or a data folder holding masks/.
        ndim: 2 or 3 to require that rank; None accepts either.
        thresholds: IoU thresholds for object counts and AP.
        partial: score only the true files that have a prediction (skipped ones are logged);
            by default a true file without prediction is an error, because leaving images
            out changes the pooled figures.

    Returns:
        Scores per file stem, in name order.

    Raises:
        io.DataError: a missing folder or partner file, an unreadable file, or a prediction
            whose shape differs from its true mask; the message starts with the path.
    """
    thresholds = tuple(thresholds)
    pred_files, true_files = label_files(pred), label_files(truth)
    for name, path in pred_files.items():
        if name not in true_files:
            expected = pathlib.Path(next(iter(true_files.values()))).parent / path.name
            raise io.DataError(path, f"prediction has no true mask with the same name; expected {expected}")
    missing = sorted(set(true_files) - set(pred_files))
    if missing:
        first = pathlib.Path(next(iter(pred_files.values()))).parent / true_files[missing[0]].name
        if not partial:
            raise io.DataError(
                true_files[missing[0]],
                f"true mask has no prediction (expected {first}); {len(missing)} of {len(true_files)} "
                "true masks lack one. Pass --partial to score only the predicted files.",
            )
        logging.warning("%d true masks have no prediction and are skipped, e.g. %s", len(missing), missing[0])
    results: dict[str, Scores] = {}
    for i, name in enumerate(sorted(pred_files)):
        y_pred = read_checked_labels(pred_files[name], ndim)
        y_true = read_checked_labels(true_files[name], ndim)
        if y_pred.shape != y_true.shape:
            raise io.DataError(
                pred_files[name],
                f"prediction shape {y_pred.shape} does not match true mask {true_files[name]} "
                f"shape {y_true.shape}",
            )
        results[name] = score(y_true, y_pred, thresholds)
        logging.info("[%d/%d] %s: %d true, %d predicted", i + 1, len(pred_files), name,
                     results[name].n_true, results[name].n_pred)  # fmt: skip
    return results


# "pairs F1": instance F1 in the matched-pair reading; "touch ...": on touching nuclei alone.
_COLUMNS = ("true", "pred", "pixel F1", "inst F1", "pairs F1", "obj F1@.5", "touching", "touch F1", "mean AP")


def _row(label: str, s: Scores, width: int) -> str:
    figures = (s.pixel_f1, s.instance_f1, s.instance_matched_f1, s.object_f1)
    cells = [f"{s.n_true:>6d}", f"{s.n_pred:>6d}", *(f"{v:>9.4f}" for v in figures)]
    cells += [f"{s.n_touching:>8d}", f"{s.touching_object_f1:>9.4f}", f"{s.mean_ap:>9.4f}"]
    return f"{label:<{width}}  " + "  ".join(cells)


def format_table(per_image: Mapping[str, Scores], pooled: Scores) -> str:
    """Per-image lines and the pooled line: pixel F1, the paper's instance F1 and its matched-pair
    reading, object F1@0.5, touching nuclei and their object F1@0.5, mean AP."""
    width = max([len("image"), len("pooled (n=99999)"), *map(len, per_image)])
    header = f"{'image':<{width}}  " + "  ".join(
        f"{c:>6}" if c in ("true", "pred") else f"{c:>8}" if c == "touching" else f"{c:>9}" for c in _COLUMNS
    )
    lines = [header, *(_row(name, s, width) for name, s in per_image.items())]
    lines += ["-" * len(header), _row(f"pooled (n={pooled.n_images})", pooled, width)]
    return "\n".join(lines)


def report(per_image: Mapping[str, Scores], pred: io.PathLike, truth: io.PathLike) -> dict[str, Any]:
    """The JSON document: folders, thresholds, per-image and pooled counts and figures."""
    pooled = pool(per_image.values())
    return {
        "pred": str(pred),
        "truth": str(truth),
        "thresholds": list(pooled.thresholds),
        "pooled": pooled.to_dict(),
        "images": {name: s.to_dict() for name, s in per_image.items()},
    }
