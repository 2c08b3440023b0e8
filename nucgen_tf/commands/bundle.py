"""Compact-export three generators into a bundle (`nucgen_tf.pretrained.bundle`).

python -m nucgen_tf.commands.bundle --models runs/bbbc039_cpu/models --name bbbc039_2d
python -m nucgen_tf.commands.bundle --models runs/mine/models --out bundles/mine   # anywhere
"""

from __future__ import annotations

import pathlib

from absl import app, flags, logging

from nucgen_tf import pretrained
from nucgen_tf.pretrained.bundle import bundle


def define_flags() -> None:
    flags.DEFINE_string("models", None, "Folder with stage1/, stage2/, stage3/ SavedModels.")
    flags.DEFINE_string("name", "bbbc039_2d", "Bundle name (folder under nucgen_tf/pretrained/).")
    flags.DEFINE_string(
        "out", None, "Write the bundle to this folder instead (e.g. outside the package); overrides --name."
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS.models:
        raise app.UsageError("--models is required.")
    out = pathlib.Path(flags.FLAGS.out or pathlib.Path(pretrained.__file__).parent / flags.FLAGS.name)
    record = bundle(flags.FLAGS.models, out)
    logging.info("bundle %s: %.2f MiB in all", out, record["bytes"] / 2**20)


if __name__ == "__main__":
    define_flags()
    app.run(main)
