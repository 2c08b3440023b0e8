"""`nucgen paint`: stage 3 alone on your own masks -> aligned image + instance-mask pairs.

    nucgen paint --masks my_data/train --out painted/
    nucgen paint --masks cellpose_folder --models runs/bbbc039/models --out painted/ --sensor_noise none

`--masks` is a folder of instance-label TIFFs, a data folder with masks/ (its images/ are
ignored) or a Cellpose-layout folder (`<name>_masks.tif`). The job itself is
`nucgen_tf.synthesis.paint.paint`; a rerun skips finished masks.
"""

from __future__ import annotations

from absl import app

from nucgen_tf.commands import flagsets
from nucgen_tf.io import DataError


def define_flags() -> None:
    flagsets.define_paint_flags()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from nucgen_tf.synthesis.paint import paint

    try:
        paint(flagsets.paint_options_from_flags())
    except (DataError, ValueError) as error:  # one plain line: the log line would repeat it
        raise SystemExit(f"nucgen paint: {error}") from error


if __name__ == "__main__":
    define_flags()
    app.run(main)
