"""`nucgen segment train|predict`: a U-Net or StarDist segmenter to measure what synthetic data is worth.

    nucgen segment train --data bbbc039/train [--extra synthetic/ ...] [--val bbbc039/val] \\
        --out runs/seg_real [--steps 4000] [--flagfile=configs/segment/bbbc039.flags]
    nucgen segment predict --model runs/seg_real --images bbbc039/test --out runs/seg_real/test_pred
    nucgen evaluate --pred runs/seg_real/test_pred --truth bbbc039/test

`train` resumes from the checkpoints in --out and saves the best model (by --select_on on
--val) as --out/segmenter.keras + segmenter.json. `predict` writes one uint16 label TIFF per
image (same file name), skipping existing ones unless --overwrite. Post-processing flags left
unset in `predict` use the values saved with the model.

`--family=stardist` trains StarDist (2D/3D, `segment.stardist_family`; needs the `stardist`
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
    if f.family == "stardist":
        from nucgen_tf.segment.stardist_family import train_stardist as train
    else:
        from nucgen_tf.segment.training import train_segmenter as train
    out = train(f.data, f.val, f.out, config, extra_dirs=f.extra or ())
    logging.info("%s segmenter saved in %s", f.family, out)


def _predict_stardist() -> None:
    from nucgen_tf.segment.stardist_family import predict_folder

    f = flags.FLAGS
    try:
        n_tiles = tuple(int(v) for v in f.n_tiles) or None
    except ValueError as error:
        raise app.UsageError(f"--n_tiles takes ints. Received: {f.n_tiles}") from error
    written = predict_folder(
        f.model, f.images, f.out, f.prob_thresh, f.nms_thresh, n_tiles, overwrite=f.overwrite
    )
    logging.info("%d label files in %s", len(written), f.out)


def _predict() -> None:
    import pathlib

    from nucgen_tf.segment.predict import load_segmenter, predict_folder
    from nucgen_tf.segment.stardist_family import META_FILE

    f = flags.FLAGS
    if not f.model or not f.images or not f.out:
        raise app.UsageError("`segment predict` needs --model, --images and --out.")
    family = "stardist" if (pathlib.Path(f.model) / META_FILE).is_file() else "unet"
    _refuse_other_family_flags("predict", family)
    if family == "stardist":
        return _predict_stardist()
    segmenter = load_segmenter(f.model)
    try:
        instances = flagsets.instance_config_from_flags(segmenter.config.instances)
        tile = [int(v) for v in f.tile] or None
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    written = predict_folder(
        segmenter,
        f.images,
        f.out,
        instances=instances,
        tile_shape=tile,
        margin=f.margin,
        overwrite=f.overwrite,
    )
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
