"""`nucgen experiment`: does synthetic data help? The paper's Table I on BBBC039, end to end and resumable.

    nucgen experiment --flagfile=configs/bbbc039_2d/experiment.flags
    nucgen experiment --flagfile=configs/bbbc039_2d/smoke.flags
    nucgen experiment --flagfile=configs/bbbc039_2d/experiment.flags \\
        --n_train=2,5,10,20 --workdir=runs/bbbc039_2d/amounts

For each training amount (--n_train: the first N real training images by name) and each
condition (none, p+CycleGAN, r+p2p, ours) it trains or reuses the generators the condition
needs, writes --n_synthetic samples, trains the segmenter with the same steps for every
condition and each of --seeds, selects it on the validation set and scores the test set
(and every --extra_eval NAME=DIR, never used for selection). --workdir/report/ gets
table.md (Table I's layout: pixel / paper instance / object F1, mean ± std over seeds, and
the relative cut in instance-F1 error vs none), bars.png, gain_vs_amount.png (several
amounts) and results.json. Rerunning the command resumes: finished cells are skipped.

--segmenter (unet | stardist) picks the segmenter family (the paper's Table I repeats the
conditions with a second family); both can share a --workdir, reusing its generators and
synthetic data, and the report then shows both. The --seg_* flags and --extra_fraction set the
chosen family's config (for StarDist --seg_filters / --seg_depth size its U-Net backbone);
--stardist_* flags set what only StarDist has.

    nucgen experiment --flagfile=configs/bbbc039_2d/experiment.flags \
        --segmenter=stardist

--preset (full | smoke) gives every setting; any flag given explicitly (also in a flag file)
overrides it. Flags left unset keep the preset's value (`--helpfull` shows the full preset).
"""

from __future__ import annotations

import sys

from absl import app, flags

from nucgen_tf import io
from nucgen_tf.commands import flagsets


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The experiment's flags; every setting defaults to the --preset's value.

    Args:
        flag_values: where to define them (tests pass a fresh `flags.FlagValues()`).
    """
    flagsets.define_experiment_flags(flag_values)


def config_from_flags(f: flags.FlagValues = flags.FLAGS):
    """The `ExperimentConfig` of --preset with every flag that was given applied."""
    return flagsets.experiment_config_from_flags(f)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from nucgen_tf.experiments.runner import run_experiment

    config = config_from_flags()
    try:
        document = run_experiment(config)
    except io.DataError as error:  # one plain line: a log line would repeat it
        sys.exit(f"augmentation experiment: {error}")
    sys.stdout.write(f"report: {config.workdir}/report/{document['files']['table']}\n")


if __name__ == "__main__":
    define_flags()
    app.run(main)
