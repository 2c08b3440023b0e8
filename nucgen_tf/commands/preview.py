"""`nucgen preview`: look at the paper's representations of your own data before training.

    nucgen preview --out previews/                 # built-in 2D example
    nucgen preview --ndim=3 --out previews/        # built-in 3D example
    nucgen preview --data my_data/train --out previews/

One PNG per image/mask pair (`nucgen_tf.preview.write_previews`).
"""

from __future__ import annotations

from absl import app, flags, logging

from nucgen_tf import io
from nucgen_tf.config import RenderConfig


def define_flags() -> None:
    flags.DEFINE_string("data", None, "Folder with images/ and masks/; omit for the built-in example.")
    flags.DEFINE_string("out", "previews", "Folder for the PNG previews.")
    flags.DEFINE_integer("ndim", 2, "Built-in example only: 2 or 3.", lower_bound=2, upper_bound=3)
    flags.DEFINE_integer("seed", 0, "Built-in example only: random seed.")
    flags.DEFINE_integer("max_files", 0, "Preview at most this many pairs (0 = all).", lower_bound=0)
    flags.DEFINE_float("bv", RenderConfig.bv, "Eq. 1 boundary value.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from nucgen_tf.preview import write_previews

    cfg = flags.FLAGS
    try:
        paths = write_previews(cfg.out, cfg.data, cfg.ndim, cfg.seed, cfg.max_files, RenderConfig(bv=cfg.bv))
    except io.DataError as error:  # one plain line: a log line would repeat it
        raise SystemExit(f"nucgen preview: {error}") from error
    logging.info("%d preview(s) in %s", len(paths), cfg.out)


if __name__ == "__main__":
    define_flags()
    app.run(main)
