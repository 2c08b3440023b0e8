"""`nucgen fetch --out=DIR [--src=DIR] [--seed=N]`: download BBBC039 and convert it into splits.

The recipe is `nucgen_tf.recipes.bbbc039.fetch`; a rerun resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags, logging

from nucgen_tf.recipes import bbbc039


def define_flags(flag_values: flags.FlagValues | None = None) -> None:
    """Defines --out, --src and --seed (in ``flags.FLAGS`` by default).

    --out is not marked required: that would break flag parsing of every other absl app in
    the same process; :func:`main` checks it instead.
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_string("out", None, "Output folder for the converted BBBC039 data.", flag_values=flag_values)
    flags.DEFINE_string(
        "src",
        None,
        "Folder holding images.zip + masks.zip or their extracted folders; skips the download.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "seed", bbbc039.DEFAULT_SEED, "Seed of the random train/val/test split.", flag_values=flag_values
    )


def main(argv: Sequence[str]) -> None:
    """absl entry point: ``nucgen fetch --out=DIR [--src=DIR] [--seed=N]``."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
    values = flags.FLAGS
    if not values.out:
        raise app.UsageError("--out is required (the folder to write the data set to).")
    split = bbbc039.fetch(values.out, values.src, seed=values.seed)
    logging.info("Done: %s", {k: len(v) for k, v in split.items()})


if __name__ == "__main__":
    define_flags()
    app.run(main)
