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

import dataclasses
import sys

from absl import app, flags, logging

from nucgen_tf import io

_COMMANDS = ("train", "predict")
FAMILIES = ("unet", "stardist")
# `segment train` flags that StarDist shares, by its config field; applied only when given.
_STARDIST_SHARED = {
    "patch": "patch_shape",
    "batch": "batch_size",
    "steps": "steps",
    "eval_every": "eval_every",
    "lr": "lr",
    "lr_final_fraction": "lr_final_fraction",
    "extra_fraction": "extra_fraction",
    "flips": "flips",
    "rot90": "rot90",
    "select_on": "select_on",
    "seed": "seed",
    "filters": "unet_n_filter_base",
    "depth": "unet_n_depth",
}


def define_flags() -> None:
    """Flags of both subcommands (one module, so one flag namespace)."""
    from nucgen_tf.models.segmenters import NORMS, SegmenterConfig
    from nucgen_tf.segment.config import SELECT_ON, InstanceConfig, SegmentTrainConfig

    t, n, i = SegmentTrainConfig(), SegmenterConfig(), InstanceConfig()
    # train
    flags.DEFINE_enum("family", "unet", list(FAMILIES), "Segmenter family to train.")
    flags.DEFINE_multi_string("data", None, "Real training folder(s) with images/ and masks/ (repeatable).")
    flags.DEFINE_multi_string("extra", None, "Extra (e.g. synthetic) training folder(s) (repeatable).")
    flags.DEFINE_string("val", None, "Validation folder for model selection (optional).")
    flags.DEFINE_string("out", None, "train: model/run folder; predict: output folder of label TIFFs.")
    flags.DEFINE_list("patch", [str(s) for s in t.patch_shape], "Patch shape, Y,X or Z,Y,X (sets 2D/3D).")
    flags.DEFINE_integer("batch", t.batch_size, "Patches per step.")
    flags.DEFINE_integer("steps", t.steps, "Training steps (a multiple of --eval_every).")
    flags.DEFINE_integer("eval_every", t.eval_every, "Steps between validations and checkpoints.")
    flags.DEFINE_float("lr", t.lr, "Peak Adam learning rate (cosine decay).")
    flags.DEFINE_float("lr_final_fraction", t.lr_final_fraction, "Final lr as a fraction of --lr.")
    flags.DEFINE_list(
        "class_weights",
        [str(w) for w in t.class_weights],
        "Cross-entropy weights: background,interior,boundary.",
    )
    flags.DEFINE_float("dice_weight", t.dice_weight, "Weight of an added soft Dice loss (0 = off).")
    flags.DEFINE_integer("boundary_width", t.boundary_width, "Width of the boundary class (px).")
    flags.DEFINE_float("extra_fraction", t.extra_fraction, "Share of patches drawn from --extra folders.")
    flags.DEFINE_bool("flips", t.flips, "Random flips along every axis.")
    flags.DEFINE_bool("rot90", t.rot90, "Random 90-degree rotations in YX (square patches).")
    flags.DEFINE_enum("select_on", t.select_on, list(SELECT_ON), "Validation score that picks the model.")
    flags.DEFINE_enum(
        "precision",
        t.precision,
        ["float32", "mixed", "mixed_float16", "mixed_bfloat16"],
        "dtype policy; 'mixed' = float16 on GPU, bfloat16 on CPUs with native bf16, else float32.",
    )
    flags.DEFINE_bool("jit_compile", t.jit_compile, "XLA-compile the train step.")
    flags.DEFINE_integer("seed", t.seed, "Random seed.")
    flags.DEFINE_integer("filters", n.base_filters, "Base filters of the U-Net.")
    flags.DEFINE_integer("depth", n.depth, "Down-sampling levels of the U-Net.")
    flags.DEFINE_enum("norm", n.norm, list(NORMS), "Normalization after each convolution.")
    flags.DEFINE_float("dropout", n.dropout, "Spatial dropout at the two deepest levels (0 = off).")
    # predict
    flags.DEFINE_string("model", None, "predict: model folder written by `segment train`.")
    flags.DEFINE_string("images", None, "predict: folder of image TIFFs (or a data folder with images/).")
    flags.DEFINE_list("tile", [], "predict: largest tile per axis (default 1024 in 2D, 128 in 3D).")
    flags.DEFINE_integer("margin", None, "predict: context around each tile in px (default 32).")
    flags.DEFINE_bool("overwrite", False, "predict: overwrite existing label files.")
    # post-processing (train: saved with the model; predict: overrides the saved values)
    flags.DEFINE_float(
        "seed_threshold", None, f"P(interior) above which pixels seed nuclei ({i.seed_threshold})."
    )
    flags.DEFINE_float(
        "foreground_threshold",
        None,
        f"P(interior)+P(boundary) above which seeds grow ({i.foreground_threshold}).",
    )
    flags.DEFINE_integer("min_seed_size", None, f"Smallest seed kept, px ({i.min_seed_size}).")
    flags.DEFINE_integer("min_size", None, f"Smallest nucleus kept, px ({i.min_size}).")
    # StarDist only
    flags.DEFINE_integer("rays", None, "StarDist: rays per object (default 32).")
    flags.DEFINE_list("grid", [], "StarDist: output grid per axis (default: StarDist's choice).")
    flags.DEFINE_list(
        "anisotropy", [], "StarDist 3D: object anisotropy Z,Y,X (default: estimated from the masks)."
    )
    flags.DEFINE_bool(
        "optimize_thresholds", True, "StarDist: tune the prob/NMS thresholds on --val at the end."
    )
    flags.DEFINE_float("prob_thresh", None, "StarDist predict: object probability threshold (saved value).")
    flags.DEFINE_float("nms_thresh", None, "StarDist predict: NMS overlap threshold (saved value).")
    flags.DEFINE_list("n_tiles", [], "StarDist predict: tiles per axis (default: automatic).")


def _instance_config(base):
    f = flags.FLAGS
    overrides = {
        name: getattr(f, name)
        for name in ("seed_threshold", "foreground_threshold", "min_seed_size", "min_size")
        if getattr(f, name) is not None
    }
    return dataclasses.replace(base, **overrides)


def train_config_from_flags():
    """The `SegmentTrainConfig` the parsed flags describe (validated by the dataclasses)."""
    from nucgen_tf.models.segmenters import SegmenterConfig
    from nucgen_tf.segment.config import InstanceConfig, SegmentTrainConfig

    f = flags.FLAGS
    return SegmentTrainConfig(
        network=SegmenterConfig(base_filters=f.filters, depth=f.depth, norm=f.norm, dropout=f.dropout),
        instances=_instance_config(InstanceConfig()),
        patch_shape=tuple(int(v) for v in f.patch),
        batch_size=f.batch,
        steps=f.steps,
        lr=f.lr,
        lr_final_fraction=f.lr_final_fraction,
        class_weights=tuple(float(w) for w in f.class_weights),
        dice_weight=f.dice_weight,
        boundary_width=f.boundary_width,
        extra_fraction=f.extra_fraction,
        flips=f.flips,
        rot90=f.rot90,
        eval_every=f.eval_every,
        select_on=f.select_on,
        precision=f.precision,
        jit_compile=f.jit_compile,
        seed=f.seed,
    )


def stardist_config_from_flags():
    """The `StardistTrainConfig` of the parsed flags: StarDist's defaults, then the flags given."""
    from nucgen_tf.segment.stardist import StardistTrainConfig

    f = flags.FLAGS
    values = {field: getattr(f, name) for name, field in _STARDIST_SHARED.items() if f[name].present}
    if "patch_shape" in values:
        values["patch_shape"] = tuple(int(v) for v in values["patch_shape"])
    if f.rays is not None:
        values["n_rays"] = f.rays
    values["grid"] = tuple(int(v) for v in f.grid)
    values["anisotropy"] = tuple(float(v) for v in f.anisotropy)
    values["optimize_thresholds"] = f.optimize_thresholds
    return StardistTrainConfig(**values)


# Flags only one family reads, per subcommand.
_POSTPROCESSING = ("seed_threshold", "foreground_threshold", "min_seed_size", "min_size")
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
        config = stardist_config_from_flags() if f.family == "stardist" else train_config_from_flags()
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
        instances = _instance_config(segmenter.config.instances)
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
