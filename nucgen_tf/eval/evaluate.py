"""`nucgen evaluate`: score predicted label TIFFs against the true ones with the same names.

Every ``*.tif`` of ``--pred`` is compared with the file of the same name (stem) in ``--truth``;
either folder may be a plain folder of label TIFFs or a data folder holding ``masks/`` (e.g.
``data/bbbc039/test``). Prints one line per image and the pooled line (counts summed over all
images, then the ratios): pixel F1, the paper's instance F1, object F1 at IoU 0.5 and the
DSB/StarDist mean AP over IoU 0.5:0.05:0.95. ``--json`` also writes every count and figure.

    nucgen evaluate --pred runs/seg/pred --truth data/bbbc039/test --json runs/seg/scores.json
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from absl import app, flags, logging

from nucgen_tf import io
from nucgen_tf.eval.metrics import DSB_THRESHOLDS, Scores, pool, score


def label_files(folder: io.PathLike) -> dict[str, pathlib.Path]:
    """The label TIFFs of a folder by stem: its own ``*.tif``/``*.tiff``, else those of ``masks/``.

    Raises:
        io.DataError: the folder is missing, holds no TIFF (nor does its ``masks/``), or two
            files share a stem.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise io.DataError(root, "folder not found (expected label TIFFs, or a data folder with masks/)")
    for candidate in (root, root / "masks"):
        if not candidate.is_dir():
            continue
        found: dict[str, pathlib.Path] = {}
        for path in sorted(candidate.iterdir()):
            # Dot files are temporaries of atomic writes or macOS resource forks.
            if path.name.startswith(".") or path.suffix.lower() not in io.TIFF_SUFFIXES or not path.is_file():
                continue
            if path.stem in found:
                raise io.DataError(
                    path, f"two label files share the name {path.stem!r}: also {found[path.stem]}"
                )
            found[path.stem] = path
        if found:
            return found
    raise io.DataError(root, "no *.tif or *.tiff label files here nor in masks/")


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
        y_pred = io.read_labels(pred_files[name], ndim)
        y_true = io.read_labels(true_files[name], ndim)
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


_COLUMNS = ("true", "pred", "pixel F1", "inst F1", "obj F1@.5", "mean AP")


def _row(label: str, s: Scores, width: int) -> str:
    figures = (s.pixel_f1, s.instance_f1, s.object_f1, s.mean_ap)
    cells = [f"{s.n_true:>6d}", f"{s.n_pred:>6d}", *(f"{v:>9.4f}" for v in figures)]
    return f"{label:<{width}}  " + "  ".join(cells)


def format_table(per_image: Mapping[str, Scores], pooled: Scores) -> str:
    """Per-image lines and the pooled line (pixel F1, paper instance F1, object F1@0.5, mean AP)."""
    width = max([len("image"), len("pooled (n=99999)"), *map(len, per_image)])
    header = f"{'image':<{width}}  " + "  ".join(
        f"{c:>6}" if c in ("true", "pred") else f"{c:>9}" for c in _COLUMNS
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


def define_flags() -> None:
    flags.DEFINE_string("pred", None, "Folder of predicted label TIFFs (or a folder holding masks/).")
    flags.DEFINE_string("truth", None, "Folder of true label TIFFs, or a data folder holding masks/.")
    flags.DEFINE_string("json", None, "Write per-image and pooled counts and figures to this JSON file.")
    flags.DEFINE_integer("ndim", None, "Require 2D or 3D label files (default: either).", lower_bound=2,
                         upper_bound=3)  # fmt: skip
    flags.DEFINE_bool("partial", False, "Score only true masks that have a prediction.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cfg = flags.FLAGS
    if not cfg.pred or not cfg.truth:
        raise app.UsageError("--pred and --truth are required.")
    try:
        per_image = evaluate_folders(cfg.pred, cfg.truth, ndim=cfg.ndim, partial=cfg.partial)
    except io.DataError as error:
        logging.error("%s", error)
        raise SystemExit(f"nucgen evaluate: {error}") from error
    pooled = pool(per_image.values())
    # The table is the command's output (stdout); progress and warnings go to the absl log.
    sys.stdout.write(format_table(per_image, pooled) + "\n")
    if cfg.json:
        io.write_json(cfg.json, report(per_image, cfg.pred, cfg.truth))
        logging.info("wrote %s", cfg.json)


if __name__ == "__main__":
    define_flags()
    app.run(main)
