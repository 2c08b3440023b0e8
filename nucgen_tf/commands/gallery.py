"""Synthetic pairs next to real ones of an experiment, one PNG (`nucgen_tf.experiments.gallery`).

python -m nucgen_tf.commands.gallery --workdir=runs/bbbc039_2d/experiment [--n_train=20]
"""

from __future__ import annotations

import pathlib

from absl import app, flags

from nucgen_tf.experiments.gallery import write_gallery


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Experiment workdir (see nucgen_tf.experiments.runner).")
    flags.DEFINE_integer("n_train", 20, "Training amount whose real and synthetic data to show.")
    flags.DEFINE_integer("n", 3, "Pairs per row.")
    flags.DEFINE_integer("seed", 0, "Which pairs and crops are drawn.")
    flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    del argv
    write_gallery(pathlib.Path(flags.FLAGS.workdir), flags.FLAGS.n_train, flags.FLAGS.n, flags.FLAGS.seed)


if __name__ == "__main__":
    define_flags()
    app.run(main)
