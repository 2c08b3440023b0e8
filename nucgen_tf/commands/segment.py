"""`nucgen segment train|predict`: a U-Net or StarDist segmenter to measure what synthetic data is worth.

    nucgen segment train --data bbbc039/train [--extra synthetic/ ...] [--val bbbc039/val] \\
        --out runs/seg_real [--steps 4000] [--flagfile=configs/segment/bbbc039.flags]
    nucgen segment predict --model runs/seg_real --images bbbc039/test --out runs/seg_real/test_pred
    nucgen evaluate --pred runs/seg_real/test_pred --truth bbbc039/test

`train` resumes from the checkpoints in --out and saves the best model (by --select_on on
--val) as --out/segmenter.keras + segmenter.json. `predict` writes one uint16 label TIFF per
image (same file name), skipping existing ones unless --overwrite. Post-processing flags left
unset in `predict` use the values saved with the model.

`--family=stardist` trains StarDist (2D/3D, `segment.stardist`; needs the `stardist`
extra) on the same folders instead: the shared flags (--patch, --batch, --steps, --eval_every,
--lr, --lr_final_fraction, --extra_fraction, --flips, --rot90, --select_on, --seed, --filters,
--depth) apply when given, else StarDist's defaults; --rays, --grid, --anisotropy and
--optimize_thresholds are its own. `predict` recognizes a StarDist folder by its
stardist.json; --prob_thresh, --nms_thresh and --n_tiles override its saved values.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from nucgen_tf import io
from nucgen_tf.commands import flagsets

_COMMANDS = ("train", "predict")


def define_flags() -> None:
    """Flags of both subcommands (one command, so one flag namespace)."""
    flagsets.define_segment_flags()


# Flags only one family reads, per subcommand.
_POSTPROCESSING = flagsets.INSTANCE_FLAGS
_ONLY = {
    ("train", "unet"): (
        "class_weights", "dice_weight", "boundary_width", "precision", "jit_compile", "norm", "dropout",
        *_POSTPROCESSING,
    ),
    ("train", "stardist"): ("rays", "grid", "anisotropy", "optimize_thresholds"),
    ("predict", "unet"): ("tile", "margin", *_POSTPROCESSING),
    ("predict", "stardist"): ("prob_thresh", "nms_thresh", "n_tiles"),
}  # fmt: skip


def _refuse_other_family_flags(command: str, family: str) -> None:
    """A flag of the other family would be silently ignored: refuse it, naming it."""
    f = flags.FLAGS
    other = _ONLY[command, "unet" if family == "stardist" else "stardist"]
    given = [f"--{name}" for name in other if f[name].present]
    if given:
        raise app.UsageError(f"{', '.join(given)} do(es) not apply to a {family} segmenter.")


def _train() -> None:
    from nucgen_tf.segment.data import Folders
    from nucgen_tf.segment.family import family_of

    f = flags.FLAGS
    if not f.data or not f.out:
        raise app.UsageError("`segment train` needs --data and --out.")
    _refuse_other_family_flags("train", f.family)
    try:
        if f.family == "stardist":
            config = flagsets.stardist_config_from_flags()
        else:
            config = flagsets.segment_train_config_from_flags()
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    trained = family_of(config).train(config, Folders(f.data, f.val, f.extra or ()), f.out)
    logging.info("%s segmenter saved in %s", f.family, trained.model_dir)


def _stardist_predict_options(f, family) -> tuple:
    """(model folder, predict_folder options) of the StarDist predict flags."""
    try:
        n_tiles = tuple(int(v) for v in f.n_tiles) or None
    except ValueError as error:
        raise app.UsageError(f"--n_tiles takes ints. Received: {f.n_tiles}") from error
    return f.model, {"prob_thresh": f.prob_thresh, "nms_thresh": f.nms_thresh, "n_tiles": n_tiles}


def _unet_predict_options(f, family) -> tuple:
    """(loaded segmenter, predict_folder options) of the U-Net predict flags over its saved values."""
    segmenter = family.load(f.model)
    try:
        instances = flagsets.instance_config_from_flags(segmenter.config.instances)
        tile = [int(v) for v in f.tile] or None
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    return segmenter, {"instances": instances, "tile_shape": tile, "margin": f.margin}


_PREDICT_OPTIONS = {"unet": _unet_predict_options, "stardist": _stardist_predict_options}


def _predict() -> None:
    from nucgen_tf.segment.family import family_of_folder

    f = flags.FLAGS
    if not f.model or not f.images or not f.out:
        raise app.UsageError("`segment predict` needs --model, --images and --out.")
    family = family_of_folder(f.model)
    _refuse_other_family_flags("predict", family.name)
    model, options = _PREDICT_OPTIONS[family.name](f, family)
    written = family.predict_folder(model, f.images, f.out, overwrite=f.overwrite, **options)
    logging.info("%d label files in %s", len(written), f.out)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in _COMMANDS:
        raise app.UsageError(f"Usage: nucgen segment {{train|predict}} [--flags]. Received: {argv[1:]}")
    if len(argv) > 2:
        raise app.UsageError(f"Unexpected arguments: {argv[2:]}")
    try:
        if argv[1] == "train":
            _train()
        else:
            _predict()
    except io.DataError as error:  # one plain line: a log line would repeat it
        sys.exit(f"nucgen segment {argv[1]}: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
