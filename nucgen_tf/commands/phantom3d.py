"""`nucgen phantom3d --out=DIR [--snr=high|low|both] [--seed=S] [--n_train=12] [--n_val=0] [--n_test=108]`.

Writes the simulated BBBC024-like 3D set (a stand-in, not BBBC024); the recipe is
`nucgen_tf.recipes.phantom3d.generate`, and a rerun resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags, logging

from nucgen_tf.recipes import phantom3d


def define_flags(flag_values: flags.FlagValues | None = None) -> None:
    """Defines --out, --snr, --seed, --n_train, --n_val, --n_test, --shape and --n_nuclei.

    --out is not marked required (that would break flag parsing of other absl apps in the
    same process); :func:`main` checks it.
    """
    fv = flags.FLAGS if flag_values is None else flag_values
    sizes, config = phantom3d.DEFAULT_SIZES, phantom3d.PhantomConfig()
    flags.DEFINE_string("out", None, "Output folder for the simulated data set.", flag_values=fv)
    flags.DEFINE_enum("snr", "both", phantom3d.SNR_CHOICES, "Which SNR setting(s) to write.", flag_values=fv)
    flags.DEFINE_integer(
        "seed", phantom3d.DEFAULT_SEED, "Data-set seed; same seed -> identical files.", flag_values=fv
    )
    flags.DEFINE_integer(
        "n_train", sizes["train"], "Train volumes per SNR (12 x 20 = 240 nuclei).", flag_values=fv
    )
    flags.DEFINE_integer(
        "n_val",
        sizes["val"],
        "Val volumes per SNR (BBBC024 has none; the 3D experiment selects models on 12).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "n_test", sizes["test"], "Test volumes per SNR (108 x 20 = 2,160 nuclei).", flag_values=fv
    )
    flags.DEFINE_list(
        "shape", [str(s) for s in config.shape], "Volume shape Z,Y,X in voxels.", flag_values=fv
    )
    flags.DEFINE_integer("n_nuclei", config.n_nuclei, "Nuclei per volume.", flag_values=fv)


def main(argv: Sequence[str]) -> None:
    """absl entry point: ``nucgen phantom3d --out=DIR [...]``."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
    values = flags.FLAGS
    if not values.out:
        raise app.UsageError("--out is required (the folder to write the data set to).")
    try:
        shape = tuple(int(s) for s in values.shape)
        config = phantom3d.PhantomConfig(shape=shape, n_nuclei=values.n_nuclei)
    except ValueError as err:
        raise app.UsageError(f"Bad --shape/--n_nuclei: {err}") from err
    rows = phantom3d.generate(
        values.out,
        values.snr,
        seed=values.seed,
        n_train=values.n_train,
        n_test=values.n_test,
        config=config,
        n_val=values.n_val,
    )
    for name, table in rows.items():
        logging.info("%s SNR: %d volumes, %d nuclei.", name, len(table), sum(r["n_instances"] for r in table))


if __name__ == "__main__":
    define_flags()
    app.run(main)
