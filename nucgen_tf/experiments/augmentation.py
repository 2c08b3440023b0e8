"""Does synthetic data help? The paper's Table I on BBBC039, end to end and resumable.

    python -m nucgen_tf.experiments.augmentation --flagfile=configs/bbbc039_2d/experiment.flags
    python -m nucgen_tf.experiments.augmentation --flagfile=configs/bbbc039_2d/smoke.flags
    python -m nucgen_tf.experiments.augmentation --flagfile=configs/bbbc039_2d/experiment.flags \\
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

    python -m nucgen_tf.experiments.augmentation --flagfile=configs/bbbc039_2d/experiment.flags \
        --segmenter=stardist

--preset (full | smoke) gives every setting; any flag given explicitly (also in a flag file)
overrides it. Flags left unset keep the preset's value (`--helpfull` shows the full preset).
"""

from __future__ import annotations

import sys

from absl import app, flags

from nucgen_tf import io

# flag name -> (dotted config field, parser of the flag value); see `config.with_overrides`.
_INT_LIST = lambda v: tuple(int(x) for x in v)  # noqa: E731
_FLOAT_LIST = lambda v: tuple(float(x) for x in v)  # noqa: E731
_FIELDS = {
    "segmenter": ("segmenter_family", str),
    "conditions": ("conditions", tuple),
    "n_train": ("n_train", _INT_LIST),
    "seeds": ("seeds", _INT_LIST),
    "n_synthetic": ("n_synthetic", int),
    "synth_shape": ("synth_shape", _INT_LIST),
    "max_val_images": ("max_val_images", int),
    "max_test_images": ("max_test_images", int),
    "elastic_alpha": ("elastic_alpha", float),
    "elastic_sigma": ("elastic_sigma", float),
    "models_dir": ("models_dir", str),
    "ours_models": ("ours_models", str),
    "ours_require_seed": ("ours_require_seed", bool),
    "sensor_noise": ("sensor_noise", bool),
    "rp2p_models": ("rp2p_models", str),
    "pcyclegan_models": ("pcyclegan_models", str),
    "seg_steps": ("segmenter.steps", int),
    "seg_eval_every": ("segmenter.eval_every", int),
    "seg_patch": ("segmenter.patch_shape", _INT_LIST),
    "seg_batch": ("segmenter.batch_size", int),
    "seg_lr": ("segmenter.lr", float),
    "seg_filters": ("segmenter.network.base_filters", int),
    "seg_depth": ("segmenter.network.depth", int),
    "seg_select_on": ("segmenter.select_on", str),
    "extra_fraction": ("segmenter.extra_fraction", float),
    "gan_patch": ("gan.patch_shape", _INT_LIST),
    "gan_batch": ("gan.batch_size", int),
    "gan_filters": ("gan.base_filters", int),
    "gan_depth": ("gan.depth", int),
    "gan_d_filters": ("gan.d_filters", int),
    "gan_d_layers": ("gan.d_layers", int),
    "gan_clipnorm": ("gan.clipnorm", float),
    "stage1_steps": ("gan.stage1_steps", int),
    "stage2_steps": ("gan.stage2_steps", int),
    "stage3_steps": ("gan.stage3_steps", int),
    "pcyclegan_steps": ("gan.pcyclegan_steps", int),
    "gan_seed": ("gan.seed", int),
    "seed_density": ("gan.seeds.density", float),
    "seed_kinds": ("gan.seeds.kinds", tuple),
    "cluster_radius": ("gan.seeds.cluster_radius", float),
    "sparse_min_distance": ("gan.seeds.sparse_min_distance", float),
    "crowded_min_distance": ("gan.seeds.crowded_min_distance", float),
    "spacing": ("gan.spacing", lambda v: tuple(float(x) for x in v)),
    "stardist_rays": ("stardist.n_rays", int),
    "stardist_grid": ("stardist.grid", _INT_LIST),
    "stardist_anisotropy": ("stardist.anisotropy", _FLOAT_LIST),
    "stardist_optimize_thresholds": ("stardist.optimize_thresholds", bool),
}
# Where the family-neutral --seg_* flags go when --segmenter=stardist.
_STARDIST_FIELDS = {
    "seg_steps": "stardist.steps",
    "seg_eval_every": "stardist.eval_every",
    "seg_patch": "stardist.patch_shape",
    "seg_batch": "stardist.batch_size",
    "seg_lr": "stardist.lr",
    "seg_filters": "stardist.unet_n_filter_base",
    "seg_depth": "stardist.unet_n_depth",
    "seg_select_on": "stardist.select_on",
    "extra_fraction": "stardist.extra_fraction",
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The experiment's flags; every setting defaults to the --preset's value.

    Args:
        flag_values: where to define them (tests pass a fresh `flags.FlagValues()`).
    """
    from nucgen_tf.experiments.config import CONDITIONS, FAMILIES, PRESETS, full_preset

    full = full_preset("", "")
    seg, gan, sd = full.segmenter, full.gan, full.stardist
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum(
        "preset", "full", list(PRESETS), "Settings to start from; explicit flags override them.", **fv
    )
    flags.DEFINE_enum(
        "segmenter", None, list(FAMILIES),
        f"Segmenter family of the cells ({full.segmenter_family}); the --seg_* flags set its config.", **fv
    )  # fmt: skip
    flags.DEFINE_string("data_root", None, "Folder with train/, val/, test/ (each images/ + masks/).", **fv)
    flags.DEFINE_string(
        "workdir", None, "Run folder (resumable); the report goes to <workdir>/report/.", **fv
    )
    flags.DEFINE_list("conditions", None, f"Conditions, from {list(CONDITIONS)} (default all).", **fv)
    flags.DEFINE_list(
        "n_train", None, f"Real training amounts (first N images by name) ({list(full.n_train)}).", **fv
    )
    flags.DEFINE_list("seeds", None, f"Segmenter seeds ({list(full.seeds)}).", **fv)
    flags.DEFINE_integer("n_synthetic", None, f"Synthetic samples per condition ({full.n_synthetic}).", **fv)
    flags.DEFINE_list("synth_shape", None, f"Canvas of a synthetic sample ({list(full.synth_shape)}).", **fv)
    flags.DEFINE_integer("max_val_images", None, "Use the first N validation images (0 = all).", **fv)
    flags.DEFINE_integer("max_test_images", None, "Use the first N test images (0 = all).", **fv)
    flags.DEFINE_multi_string(
        "extra_eval", [], "NAME=DIR: also score this data folder (never for selection).", **fv
    )
    flags.DEFINE_float(
        "elastic_alpha", None, f"r+p2p: largest elastic displacement, px ({full.elastic_alpha}).", **fv
    )
    flags.DEFINE_float(
        "elastic_sigma", None, f"r+p2p: smoothness of the displacement, px ({full.elastic_sigma}).", **fv
    )
    flags.DEFINE_string(
        "models_dir", None, "Reuse exports: a folder with stage1/ stage2/ stage3/ [pcyclegan/].", **fv
    )
    flags.DEFINE_string("ours_models", None, "Reuse for 'ours': a folder with stage1/ stage2/ stage3/.", **fv)
    flags.DEFINE_bool(
        "ours_require_seed", None, "'ours': only stage-1 pieces holding a seed become nuclei (off).", **fv
    )
    flags.DEFINE_bool(
        "sensor_noise", None, "'ours' and 'r+p2p': add the fitted camera noise to images (on).", **fv
    )
    flags.DEFINE_string(
        "rp2p_models", None, "Reuse for 'r+p2p': a stage-3 export (or a folder with stage3/).", **fv
    )
    flags.DEFINE_string(
        "pcyclegan_models", None, "Reuse for 'p+CycleGAN': its export (or a folder with pcyclegan/).", **fv
    )
    flags.DEFINE_integer(
        "seg_steps", None, f"Segmenter steps, the same for every condition ({seg.steps} U-Net, {sd.steps} "
        "StarDist).", **fv
    )  # fmt: skip
    flags.DEFINE_integer(
        "seg_eval_every", None, f"Steps between validations ({seg.eval_every} / {sd.eval_every}).", **fv
    )
    flags.DEFINE_list(
        "seg_patch", None, f"Segmenter patch ({list(seg.patch_shape)} / {list(sd.patch_shape)}).", **fv
    )
    flags.DEFINE_integer("seg_batch", None, f"Segmenter batch ({seg.batch_size} / {sd.batch_size}).", **fv)
    flags.DEFINE_float("seg_lr", None, f"Segmenter peak learning rate ({seg.lr} / {sd.lr}).", **fv)
    flags.DEFINE_integer(
        "seg_filters", None,
        f"Base filters of the (backbone) U-Net ({seg.network.base_filters} / {sd.unet_n_filter_base}).", **fv
    )  # fmt: skip
    flags.DEFINE_integer(
        "seg_depth", None, f"Depth of the (backbone) U-Net ({seg.network.depth} / {sd.unet_n_depth}).", **fv
    )
    flags.DEFINE_string(
        "seg_select_on", None, f"Validation score that selects the model ({seg.select_on}).", **fv
    )
    flags.DEFINE_float(
        "extra_fraction", None, f"Share of patches from synthetic data ({seg.extra_fraction}).", **fv
    )
    flags.DEFINE_integer("stardist_rays", None, f"StarDist: rays per object ({sd.n_rays}).", **fv)
    flags.DEFINE_list(
        "stardist_grid", None, f"StarDist: output grid per axis ({list(sd.grid)}; empty = automatic).", **fv
    )
    flags.DEFINE_list(
        "stardist_anisotropy", None,
        "StarDist 3D: object anisotropy Z,Y,X (default: estimated from the training masks).", **fv
    )  # fmt: skip
    flags.DEFINE_bool(
        "stardist_optimize_thresholds", None,
        f"StarDist: tune the prob/NMS thresholds on val at the end ({sd.optimize_thresholds}).", **fv
    )  # fmt: skip
    flags.DEFINE_list("gan_patch", None, f"GAN training patch ({list(gan.patch_shape)}).", **fv)
    flags.DEFINE_integer("gan_batch", None, f"GAN batch ({gan.batch_size}).", **fv)
    flags.DEFINE_integer("gan_filters", None, f"Generator base filters ({gan.base_filters}).", **fv)
    flags.DEFINE_integer("gan_depth", None, f"Generator depth ({gan.depth}).", **fv)
    flags.DEFINE_integer("gan_d_filters", None, f"Discriminator base filters ({gan.d_filters}).", **fv)
    flags.DEFINE_integer("gan_d_layers", None, f"Discriminator layers ({gan.d_layers}).", **fv)
    flags.DEFINE_float(
        "gan_clipnorm", None, f"GAN gradient clipping, global norm ({gan.clipnorm}; 0 = off).", **fv
    )
    flags.DEFINE_integer("stage1_steps", None, f"Stage-1 steps ({gan.stage1_steps}).", **fv)
    flags.DEFINE_integer("stage2_steps", None, f"Stage-2 steps ({gan.stage2_steps}).", **fv)
    flags.DEFINE_integer("stage3_steps", None, f"Stage-3 (pix2pix) steps ({gan.stage3_steps}).", **fv)
    flags.DEFINE_integer("pcyclegan_steps", None, f"p+CycleGAN steps ({gan.pcyclegan_steps}).", **fv)
    flags.DEFINE_integer("gan_seed", None, f"Seed of the GAN runs and synthetic samples ({gan.seed}).", **fv)
    seeds = gan.seeds
    flags.DEFINE_float(
        "seed_density", None, f"Stage 1: seeds per 10,000 pixels or physical units ({seeds.density}).", **fv
    )
    flags.DEFINE_list("seed_kinds", None, f"Stage 1: seed arrangements ({list(seeds.kinds)}).", **fv)
    flags.DEFINE_float(
        "cluster_radius", None, f"Stage 1: sigma of clustered seeds ({seeds.cluster_radius}).", **fv
    )
    flags.DEFINE_float(
        "sparse_min_distance", None, f"Stage 1: sparse hard core ({seeds.sparse_min_distance}).", **fv
    )
    flags.DEFINE_float(
        "crowded_min_distance", None, f"Stage 1: crowded hard core ({seeds.crowded_min_distance}).", **fv
    )
    flags.DEFINE_list("spacing", None, "Physical pixel size per axis, e.g. 2,1,1 (stage-1 seeds).", **fv)


def config_from_flags(f: flags.FlagValues = flags.FLAGS):
    """The `ExperimentConfig` of --preset with every flag that was given applied."""
    from nucgen_tf.experiments.config import preset, with_overrides

    if not f.data_root or not f.workdir:
        raise app.UsageError("--data_root and --workdir are required (or a --flagfile that sets them).")
    base = preset(f.preset, f.data_root, f.workdir)
    stardist = (f.segmenter or base.segmenter_family) == "stardist"
    overrides = {
        _STARDIST_FIELDS.get(name, field) if stardist else field: parse(getattr(f, name))
        for name, (field, parse) in _FIELDS.items()
        if getattr(f, name) is not None
    }
    patch = overrides.get("stardist.patch_shape", ())
    if stardist and "stardist.grid" not in overrides and len(patch) != len(base.stardist.grid):
        # The presets' StarDist grid is 2D (2x2); a 3D patch gets StarDist's automatic grid
        # (1 on an anisotropic Z axis, else 2) instead of a shape error.
        overrides["stardist.grid"] = ()
    extra = []
    for item in f.extra_eval:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise app.UsageError(f"--extra_eval takes NAME=DIR. Received: {item!r}")
        extra.append((name, folder))
    if extra:
        overrides["extra_eval"] = tuple(extra)
    try:
        return with_overrides(base, overrides)
    except ValueError as error:
        raise app.UsageError(str(error)) from error


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
