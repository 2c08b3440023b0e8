"""`nucgen evaluate`: score predicted label TIFFs against the true ones with the same names.

    nucgen evaluate --pred runs/seg/pred --truth data/bbbc039/test --json runs/seg/scores.json

Prints one line per image and the pooled line (`nucgen_tf.eval.evaluate` says what is scored
and which folders it takes); ``--json`` also writes every count and figure.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from nucgen_tf import io
from nucgen_tf.eval.evaluate import evaluate_folders, format_table, report
from nucgen_tf.eval.metrics import pool


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
    except io.DataError as error:  # one plain line: a log line would repeat it
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
