"""Every config's absl flags, defined once, and one parser per config (flags -> frozen dataclass).

A command composes the flag sets it needs (`define_*`) and turns the parsed flags into its
config (`*_from_flags`); library code takes only those configs. Each function takes the
`flags.FlagValues` to use (default `flags.FLAGS`; tests pass a fresh `flags.FlagValues()`).
Config modules other than `nucgen_tf.config` are imported inside the functions: several
import TensorFlow, and `nucgen <command> --help` should not wait for it more than it must.

Flag sets:
- stage: `nucgen train` (and `python -m nucgen_tf.trainers.stageN`) -> `StageConfig`.
- seeds: stage 1's seed arrangements -> `SeedConfig` fields (train, synthesize, experiment).
- tiling: tiles of large canvases (synthesize, paint).
- synthesis: `nucgen synthesize` -> `SynthesisOptions`.
- paint: `nucgen paint` -> `PaintOptions`.
- segment: `nucgen segment train|predict` -> `SegmentTrainConfig`, `StardistTrainConfig`,
  `InstanceConfig` overrides.
- experiment: `nucgen experiment` -> `ExperimentConfig` (a preset plus the flags given).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from absl import app, flags, logging

from nucgen_tf.config import SeedConfig

FLAGS = flags.FLAGS

# ----- seeds: stage 1's seed arrangements (SeedConfig) -----

# flag -> (SeedConfig field, help)
SEED_FLAGS: dict[str, tuple[str, str]] = {
    "seed_density": ("density", "Stage 1: seeds per 10,000 pixels/voxels (physical units with --spacing)."),
    "seed_kinds": ("kinds", "Stage 1: seed arrangements to draw from."),
    "cluster_radius": ("cluster_radius", "Stage 1: sigma of clustered seeds (px)."),
    "cluster_size": ("cluster_size", "Stage 1: mean seeds per cluster."),
    "sparse_min_distance": ("sparse_min_distance", "Stage 1: sparse hard core (px)."),
    "crowded_min_distance": ("crowded_min_distance", "Stage 1: crowded hard core (px)."),
}
TRAINED_SEED_FLAGS = ("seed_density", "seed_kinds", "cluster_radius", "sparse_min_distance",
                      "crowded_min_distance")  # fmt: skip
"""What a stage-1 run (and the experiment's) draws from; synthesis varies `cluster_size` instead of kinds."""
SYNTHESIS_SEED_FLAGS = ("seed_density", "cluster_radius", "cluster_size", "sparse_min_distance",
                        "crowded_min_distance")  # fmt: skip
_SPACING_HELP = "Physical voxel size per axis, e.g. 2,1,1 (distances of the seed arrangements)"


def define_seed_flags(
    names: Iterable[str],
    seeds: SeedConfig | None = None,
    keep: str | None = None,
    show_values: bool = False,
    fv: flags.FlagValues = FLAGS,
) -> None:
    """The seed-arrangement flags `names` (keys of `SEED_FLAGS`) and --spacing.

    Args:
        names: which seed flags the command takes.
        seeds: the `SeedConfig` whose values the flags default to (or show); default `SeedConfig()`.
        keep: None: the flags default to `seeds`'s values. Else they default to None, which keeps
            the value of what `keep` names (e.g. "the stage-1 manifest").
        show_values: with `keep`, also show `seeds`'s values in the help.
        fv: where to define them.
    """
    seeds = SeedConfig() if seeds is None else seeds
    for name in names:
        field, text = SEED_FLAGS[name]
        value = getattr(seeds, field)
        if keep is not None:
            shown = f", {list(value) if field == 'kinds' else value}" if show_values else ""
            text = f"{text[:-1]} (default: {keep}{shown})."
        default = None if keep is not None else value
        if field == "kinds":
            flags.DEFINE_list(name, None if default is None else list(default), text, flag_values=fv)
        else:
            flags.DEFINE_float(name, default, text, flag_values=fv)
    flags.DEFINE_list(
        "spacing",
        None if keep is not None else [],
        f"{_SPACING_HELP}{f' (default: {keep})' if keep is not None else ''}.",
        flag_values=fv,
    )


def seed_overrides(fv: flags.FlagValues = FLAGS) -> dict[str, Any]:
    """`SeedConfig` field -> value of every defined seed flag that holds one (None keeps the base)."""
    values = {}
    for name, (field, _) in SEED_FLAGS.items():
        if name in fv and fv[name].value is not None:
            values[field] = tuple(fv[name].value) if field == "kinds" else fv[name].value
    return values


def spacing_from_flags(fv: flags.FlagValues = FLAGS) -> tuple[float, ...] | None:
    """--spacing as floats; None when it defaults to what `keep` named."""
    return None if fv.spacing is None else tuple(float(v) for v in fv.spacing)


# ----- compute: dtype policy and XLA of a training run (train, segment train) -----

PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")


def define_compute_flags(precision: str, jit_compile: bool, fv: flags.FlagValues = FLAGS) -> None:
    """--precision and --jit_compile, defaulting to the config's values."""
    flags.DEFINE_enum(
        "precision",
        precision,
        list(PRECISIONS),
        "dtype policy; 'mixed' = float16 on GPU, bfloat16 on CPUs with native bf16, else float32.",
        flag_values=fv,
    )
    flags.DEFINE_bool("jit_compile", jit_compile, "XLA-compile the train step.", flag_values=fv)


# ----- stage: nucgen train -> StageConfig -----


def define_stage_flags(stage: int | None = None, fv: flags.FlagValues = FLAGS) -> None:
    """Flags of `nucgen train` / `python -m nucgen_tf.trainers.stageN`; presets set them in *.flags files."""
    from nucgen_tf.config import PatchConfig, RenderConfig
    from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
    from nucgen_tf.trainers.config import EXPORT_CHECKPOINTS, STAGES, EvalConfig, TrainConfig

    t, g, d, loss, p = TrainConfig(), GeneratorConfig(), DiscriminatorConfig(), GanLossConfig(), PatchConfig()
    e = EvalConfig()
    kw = {"flag_values": fv}
    flags.DEFINE_enum(
        "stage", None if stage is None else str(stage), [str(s) for s in STAGES],
        "1: seeds -> box map, 2: ellipses -> mask, 3: mask -> image, p+CycleGAN: the baseline's "
        "parametric masks -> images (unpaired; Mahmood et al.).", **kw,
    )  # fmt: skip
    flags.DEFINE_string("data", None, "Training folder with images/ and masks/.", **kw)
    flags.DEFINE_string(
        "workdir", None, "Run folder: checkpoints, TensorBoard logs, panels, config.json.", **kw
    )
    flags.DEFINE_string("export_dir", None, "Where to export the generator (default <workdir>/export).", **kw)
    flags.DEFINE_list(
        "patch", [str(s) for s in p.patch_shape], "Patch shape, Y,X or Z,Y,X (sets 2D/3D).", **kw
    )
    flags.DEFINE_integer("batch", p.batch_size, "Global batch size.", **kw)
    flags.DEFINE_bool("rot90", p.rot90, "Random 90-degree rotations (square YX patches).", **kw)
    flags.DEFINE_integer("max_files", 0, "Use at most this many training pairs (0 = all).", **kw)
    flags.DEFINE_integer("steps", t.steps, "Training steps.", **kw)
    flags.DEFINE_float("lr", t.lr, "Initial learning rate.", **kw)
    flags.DEFINE_float(
        "decay_from", t.decay_from, "Fraction of steps after which the lr decays linearly to 0.", **kw
    )
    flags.DEFINE_integer("checkpoint_every", t.checkpoint_every, "Steps between checkpoints.", **kw)
    flags.DEFINE_integer("log_every", t.log_every, "Steps between TensorBoard scalars.", **kw)
    flags.DEFINE_integer("image_every", t.image_every, "Steps between TensorBoard image panels.", **kw)
    flags.DEFINE_float(
        "clipnorm", t.clipnorm, "Clip each optimizer's gradients to this global norm (0 = off; cuts spikes).",
        **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "max_skipped_steps",
        t.max_skipped_steps,
        "Stop after this many steps in a row with non-finite losses or gradients (single ones are skipped).",
        **kw,
    )
    define_compute_flags(t.precision, t.jit_compile, fv)
    flags.DEFINE_enum(
        "strategy", t.strategy, ["default", "mirrored", "multiworker"], "tf.distribute strategy.", **kw
    )
    flags.DEFINE_integer("seed", t.seed, "Random seed.", **kw)
    flags.DEFINE_enum(
        "generator", g.architecture, ["unet3x3", "pix2pix", "resnet"],
        "Generator: unet3x3 (the project's U-Net, 3x3 double convolutions), pix2pix (Isola et al.'s "
        "U-Net: one 4x4 stride-2 convolution per level, 3-7x fewer FLOPs; use more --depth) or resnet "
        "(Zhu et al.'s CycleGAN generator: --depth stride-2 levels, the reference 2, and "
        "--n_residual_blocks residual blocks).", **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "n_residual_blocks", g.n_residual_blocks, "Residual blocks of the resnet generator.", **kw
    )
    flags.DEFINE_integer("filters", g.base_filters, "Generator base filters.", **kw)
    flags.DEFINE_integer(
        "max_filters", g.max_filters, "Cap on the generator's filters per level (bounds deep pix2pix nets).",
        **kw,
    )  # fmt: skip
    flags.DEFINE_integer("depth", g.depth, "Generator down-sampling levels.", **kw)
    flags.DEFINE_enum("upsampling", g.upsampling, ["transpose", "nearest"], "Generator up-sampling.", **kw)
    flags.DEFINE_bool(
        "full_resolution_norm", g.full_resolution_norm, "Instance norm in the full-resolution decoder level.",
        **kw,
    )  # fmt: skip
    flags.DEFINE_float(
        "dropout", g.dropout, "Generator dropout, 3 innermost decoder levels (pix2pix: 0.5).", **kw
    )
    flags.DEFINE_integer(
        "noise_channels", g.noise_channels,
        "Stage 3: N(0, 1) noise channels the generator adds at every level with learned scales "
        "(varied texture per mask; 0 = off).", **kw,
    )  # fmt: skip
    flags.DEFINE_list(
        "strides", [],
        "Generator strides, one per level: 2, or per axis as 1x2x2 (Z not reduced), e.g. "
        "1x2x2,2,2,2 (default: 2 everywhere).", **kw,
    )  # fmt: skip
    flags.DEFINE_integer("d_filters", d.base_filters, "Discriminator base filters.", **kw)
    flags.DEFINE_integer("d_layers", d.n_layers, "Discriminator stride-2 layers.", **kw)
    flags.DEFINE_list("d_strides", [], "Discriminator strides, one per strided layer, as --strides.", **kw)
    flags.DEFINE_integer(
        "d_scales", d.scales, "PatchGANs on the input pooled 1, 2, 4... times (pix2pixHD multi-scale).", **kw
    )
    flags.DEFINE_enum(
        "adversarial", loss.adversarial, ["mae", "lsgan", "bce"], "Adversarial criterion.", **kw
    )
    flags.DEFINE_float("lambda_cycle", loss.lambda_cycle, "Cycle-consistency weight (stages 1-2).", **kw)
    flags.DEFINE_float(
        "lambda_identity", loss.lambda_identity, "Identity weight, fraction of lambda_cycle.", **kw
    )
    flags.DEFINE_float("lambda_l1", loss.lambda_l1, "pix2pix L1 weight (stage 3).", **kw)
    flags.DEFINE_integer("pool_size", loss.pool_size, "Image history pool per discriminator (0 = off).", **kw)
    flags.DEFINE_float(
        "instance_noise",
        loss.instance_noise,
        "Std of Gaussian noise on discriminator inputs (0 = off).",
        **kw,
    )
    flags.DEFINE_float(
        "lambda_fm", loss.lambda_feature_matching,
        "Discriminator feature-matching weight (stage 3; 0 = off).", **kw,
    )  # fmt: skip
    flags.DEFINE_list(
        "diff_augment", list(loss.diff_augment),
        "DiffAugment of every discriminator input: any of color,translation,cutout (default: off).", **kw,
    )  # fmt: skip
    flags.DEFINE_float("r1_gamma", loss.r1_gamma, "R1 gradient penalty on the discriminator (0 = off).", **kw)
    define_seed_flags(TRAINED_SEED_FLAGS, fv=fv)
    flags.DEFINE_float("bv", RenderConfig.bv, "Eq. 1 boundary value.", **kw)
    flags.DEFINE_boolean(
        "oriented_boxes", RenderConfig.oriented,
        "Stages 1-2: boxes along each nucleus' principal axes (turned ovals and ellipses); "
        "axis-aligned boxes make diagonal, elongated nuclei round.", **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "eval_every", e.every, "Steps between realism checks of the generator on --eval_data (0 = off).", **kw
    )
    flags.DEFINE_string(
        "eval_data", None, "images/ + masks/ folder of the realism checks (the val split).", **kw
    )
    flags.DEFINE_integer(
        "eval_crop", e.crop, "Realism checks: centre crop of each field per axis (0 = all).", **kw
    )
    flags.DEFINE_enum(
        "export_checkpoint", e.export_checkpoint, list(EXPORT_CHECKPOINTS),
        "With realism checks: export the best-scoring checkpoint's generator or the latest one.", **kw,
    )  # fmt: skip


def parse_strides(values: list[str], flag: str = "strides") -> tuple:
    """`["1x2x2", "2"]` -> `((1, 2, 2), 2)`: per-level strides from a flag list."""
    try:
        return tuple(
            tuple(int(a) for a in v.split("x")) if "x" in v else int(v) for v in (s.strip() for s in values)
        )
    except ValueError as error:
        raise app.UsageError(
            f"--{flag} takes one entry per level, each an int or per-axis ints joined by 'x' "
            f"(e.g. 1x2x2,2,2). Received: {','.join(values)}"
        ) from error


def stage_config_from_flags(fv: flags.FlagValues = FLAGS):
    """The StageConfig that the parsed flags describe (validated by the dataclasses)."""
    from nucgen_tf.config import PatchConfig, RenderConfig
    from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
    from nucgen_tf.trainers.config import EvalConfig, StageConfig, TrainConfig

    f = fv
    if f.stage is None or not f.data or not f.workdir:
        raise app.UsageError("--stage, --data and --workdir are required.")
    patch = tuple(int(v) for v in f.patch)
    return StageConfig(
        stage=int(f.stage) if f.stage.isdigit() else f.stage,
        data=f.data,
        patch=PatchConfig(patch_shape=patch, batch_size=f.batch, rot90=f.rot90, seed=f.seed),
        render=RenderConfig(bv=f.bv, oriented=f.oriented_boxes),
        seeds=SeedConfig(**seed_overrides(f)),
        train=TrainConfig(
            steps=f.steps,
            lr=f.lr,
            decay_from=f.decay_from,
            checkpoint_every=f.checkpoint_every,
            log_every=f.log_every,
            image_every=f.image_every,
            max_skipped_steps=f.max_skipped_steps,
            clipnorm=f.clipnorm,
            precision=f.precision,
            strategy=f.strategy,
            jit_compile=f.jit_compile,
            seed=f.seed,
        ),
        generator=dataclasses.replace(
            GeneratorConfig(),
            architecture=f.generator,
            kernel_size=None,  # the architecture's
            dropout=f.dropout,
            noise_channels=f.noise_channels,
            base_filters=f.filters,
            max_filters=f.max_filters,
            depth=f.depth,
            n_residual_blocks=f.n_residual_blocks,
            upsampling=f.upsampling,
            full_resolution_norm=f.full_resolution_norm,
            strides=parse_strides(f.strides),
        ),
        discriminator=dataclasses.replace(
            DiscriminatorConfig(),
            base_filters=f.d_filters,
            n_layers=f.d_layers,
            strides=parse_strides(f.d_strides, "d_strides"),
            scales=f.d_scales,
        ),
        loss=dataclasses.replace(
            GanLossConfig(),
            adversarial=f.adversarial,
            lambda_cycle=f.lambda_cycle,
            lambda_identity=f.lambda_identity,
            lambda_l1=f.lambda_l1,
            pool_size=f.pool_size,
            instance_noise=f.instance_noise,
            lambda_feature_matching=f.lambda_fm,
            diff_augment=tuple(f.diff_augment),
            r1_gamma=f.r1_gamma,
        ),
        max_files=f.max_files,
        spacing=spacing_from_flags(f),
        evaluation=EvalConfig(
            every=f.eval_every,
            data=f.eval_data or "",
            crop=f.eval_crop,
            export_checkpoint=f.export_checkpoint,
        ),
    )


# ----- tiling: large canvases in blended tiles (synthesize, paint) -----


def define_tiling_flags(
    tile: tuple[int, ...], overlap: tuple[int, ...], fv: flags.FlagValues = FLAGS
) -> None:
    """--tile and --overlap, defaulting to the options' values."""
    flags.DEFINE_list(
        "tile",
        [str(t) for t in tile],
        "Largest tile per axis (one or per axis; 0 = one pass).",
        flag_values=fv,
    )
    flags.DEFINE_list("overlap", [str(o) for o in overlap], "Tile overlap per axis (px).", flag_values=fv)


def tiling_from_flags(fv: flags.FlagValues = FLAGS) -> dict[str, tuple[int, ...]]:
    """{"tile": ..., "overlap": ...} as ints."""
    return {name: tuple(int(v) for v in fv[name].value) for name in ("tile", "overlap")}


def models_or_bundled(models: str | None, what: str) -> str:
    """`--models`, or the bundled BBBC039 folder when it is empty (logged, naming `what` is used)."""
    if models:
        return models
    from nucgen_tf import pretrained

    try:
        bundled = str(pretrained.bundled_models())
    except FileNotFoundError as err:
        raise app.UsageError(f"--models is required: {err}") from err
    logging.info("no --models: using the bundled %s in %s", what, bundled)
    return bundled


# ----- synthesis: nucgen synthesize -> SynthesisOptions -----


def define_synthesis_flags(fv: flags.FlagValues = FLAGS) -> None:
    """The flags of `nucgen synthesize`; defaults of None/empty come from the models' manifests."""
    from nucgen_tf.synthesis import sampling, writers
    from nucgen_tf.synthesis.options import SynthesisOptions

    d = SynthesisOptions(models="", out="", n=0)
    kw = {"flag_values": fv}
    flags.DEFINE_string(
        "models",
        None,
        "Folder with stage1/, stage2/, stage3/ exported generators "
        "(default: the bundled BBBC039 generators, nucgen_tf/pretrained/bbbc039_2d).",
        **kw,
    )
    flags.DEFINE_string("out", None, "Output folder.", **kw)
    flags.DEFINE_integer(
        "n", None, "Number of samples (default with --seeds_csv: max sample + 1).", lower_bound=0, **kw
    )
    flags.DEFINE_integer(
        "seed", d.seed, "Base seed; sample i uses SeedSequence([seed, i]).", lower_bound=0, **kw
    )
    flags.DEFINE_list("shape", [], "Canvas shape Y,X or Z,Y,X (default: the stage-1 training patch).", **kw)
    flags.DEFINE_enum(
        "arrangement",
        d.arrangement,
        list(sampling.ARRANGEMENTS),
        "Seed arrangement; fitted = the layout statistics of real masks (stage 1's training masks, "
        "or --arrangement_data / --arrangement_fit); mixed = one of the stage-1 config's artificial "
        "kinds per sample (random, clustered, sparse, crowded: hard-case emphasis).",
        **kw,
    )
    flags.DEFINE_string(
        "arrangement_data", None,
        "--arrangement fitted: real instance masks (label TIFFs, or a folder with masks/), fitted at start.",
        **kw,
    )  # fmt: skip
    flags.DEFINE_string(
        "arrangement_fit", None,
        "--arrangement fitted: a fit JSON file (nucgen_tf.synthesis.arrangement_fit.save_fit) instead.", **kw,
    )  # fmt: skip
    define_seed_flags(SYNTHESIS_SEED_FLAGS, keep="the stage-1 manifest", fv=fv)
    flags.DEFINE_string(
        "seeds_csv", None, "CSV of seed points: columns [sample,]y,x or [sample,]z,y,x.", **kw
    )
    flags.DEFINE_integer(
        "batch", d.batch, "Canvases/tiles per network call (1 = bit-reproducible).", lower_bound=1, **kw
    )
    flags.DEFINE_integer(
        "chunk", d.chunk, "Samples per chunk; the manifest is saved after each.", lower_bound=1, **kw
    )
    define_tiling_flags(d.tile, d.overlap, fv)
    flags.DEFINE_enum(
        "layout",
        d.layout,
        list(writers.LAYOUTS),
        "stardist: images/ + masks/; cellpose: <name>.tif + <name>_masks.tif.",
        **kw,
    )
    flags.DEFINE_bool(
        "save_intermediate", d.save_intermediate, "Also write intermediate/ representations.", **kw
    )
    flags.DEFINE_bool("previews", d.previews, "Write previews/<name>.png.", **kw)
    flags.DEFINE_float("min_alignment", d.min_alignment, "Flag samples with a lower alignment score.", **kw)
    flags.DEFINE_float(
        "max_labels_per_box", d.max_labels_per_box, "Flag samples with more labels per stage-1 box.", **kw
    )
    flags.DEFINE_enum(
        "sensor_noise", d.sensor_noise, ["fitted", "none"],
        "Add the camera noise fitted to the training images (stage-3 manifest) to generated images.", **kw,
    )  # fmt: skip
    flags.DEFINE_string(
        "realism_reference", None,
        "Real folder (images/ + masks/): write the run's realism report next to the manifest.", **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "num_shards", d.num_shards, "Split the job into this many shards.", lower_bound=1, **kw
    )
    flags.DEFINE_integer(
        "shard_index", d.shard_index, "This process's shard (samples i % num_shards).", lower_bound=0, **kw
    )
    flags.DEFINE_string("prefix", d.prefix, "Sample names are <prefix>_<index:06d>.", **kw)
    flags.DEFINE_float(
        "box_threshold", None, "Stage-1 decoding threshold (default: bv / (1 + bv) / 2).", **kw
    )
    flags.DEFINE_integer(
        "min_box_size", None, "Stage-1 decoding: smallest oval in px (default 2**ndim).", **kw
    )
    flags.DEFINE_bool("split_touching", d.split_touching, "Stage-1 decoding: split touching ovals.", **kw)
    flags.DEFINE_bool(
        "require_seed", d.require_seed,
        "Stage-1 decoding: only pieces holding a seed point become nuclei (drops invented blobs).", **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "margin", d.margin,
        "Generate this many px beyond each side and crop them off: nuclei cut by the edge as in a "
        "microscope field, not thin slivers generated against it (0 = off).", lower_bound=0, **kw,
    )  # fmt: skip


_SYNTHESIS_PLAIN = (
    "out", "n", "seed", "arrangement", "arrangement_data", "arrangement_fit", "seeds_csv", "batch", "chunk",
    "layout", "save_intermediate", "previews", "min_alignment", "max_labels_per_box", "sensor_noise",
    "realism_reference", "num_shards", "shard_index", "prefix", "box_threshold", "min_box_size",
    "split_touching", "require_seed", "margin",
)  # fmt: skip
"""`nucgen synthesize` flags that are `SynthesisOptions` fields of the same name and value."""


def synthesis_options_from_flags(fv: flags.FlagValues = FLAGS):
    """The `SynthesisOptions` of the parsed flags (the bundled generators without --models)."""
    from nucgen_tf.synthesis.options import SynthesisOptions

    if not fv.out:
        raise app.UsageError("--out is required.")
    return SynthesisOptions(
        models=models_or_bundled(fv.models, "generators"),
        shape=tuple(int(v) for v in fv.shape),
        spacing=spacing_from_flags(fv) or (),
        **seed_overrides(fv),
        **tiling_from_flags(fv),
        **{name: fv[name].value for name in _SYNTHESIS_PLAIN},
    )


# ----- paint: nucgen paint -> PaintOptions -----


def define_paint_flags(fv: flags.FlagValues = FLAGS) -> None:
    """The flags of `nucgen paint`."""
    from nucgen_tf.synthesis.options import SENSOR_NOISE
    from nucgen_tf.synthesis.paint import PaintOptions

    d = PaintOptions(masks="", out="", models="")
    kw = {"flag_values": fv}
    flags.DEFINE_string(
        "masks", None,
        "Instance-label TIFFs: a folder of them, a data folder with masks/ (images/ ignored), or a "
        "Cellpose-layout folder (<name>_masks.tif).", **kw,
    )  # fmt: skip
    flags.DEFINE_string("out", None, "Output folder (images/, masks/, previews/, manifest.json).", **kw)
    flags.DEFINE_string(
        "models", None,
        "A folder holding stage3/, or a stage-3 export (default: the bundled BBBC039 generators).", **kw,
    )  # fmt: skip
    flags.DEFINE_integer(
        "seed", d.seed, "Base seed; mask k (name order) uses SeedSequence([seed, k]).", lower_bound=0, **kw
    )
    define_tiling_flags(d.tile, d.overlap, fv)
    flags.DEFINE_integer(
        "batch", d.batch, "Tiles per network call (1 = bit-reproducible).", lower_bound=1, **kw
    )
    flags.DEFINE_enum(
        "sensor_noise", d.sensor_noise, list(SENSOR_NOISE),
        "fitted: draw the stage-3 manifest's camera noise on every image; none: clean images.", **kw,
    )  # fmt: skip
    flags.DEFINE_bool("previews", d.previews, "Write previews/<name>.png (image + contours).", **kw)
    flags.DEFINE_float("min_alignment", d.min_alignment, "Flag images with a lower alignment score.", **kw)
    flags.DEFINE_string(
        "realism_reference", None, "Real images/ + masks/ folder: realism.json/png of the painted set vs it.",
        **kw,
    )  # fmt: skip


_PAINT_PLAIN = ("masks", "out", "seed", "batch", "sensor_noise", "previews", "min_alignment",
                "realism_reference")  # fmt: skip


def paint_options_from_flags(fv: flags.FlagValues = FLAGS):
    """The `PaintOptions` of the parsed flags (the bundled stage 3 without --models)."""
    from nucgen_tf.synthesis.paint import PaintOptions

    if not fv.masks or not fv.out:
        raise app.UsageError("--masks and --out are required.")
    models = models_or_bundled(fv.models, "stage 3")
    return PaintOptions(
        models=models, **tiling_from_flags(fv), **{name: fv[name].value for name in _PAINT_PLAIN}
    )


# ----- segment: nucgen segment train|predict -> SegmentTrainConfig / StardistTrainConfig -----

SEGMENTER_FAMILIES = ("unet", "stardist")
# `segment train` flags that StarDist shares, by its config field; applied only when given.
_STARDIST_SHARED = {
    "patch": "patch_shape",
    "batch": "batch_size",
    "steps": "steps",
    "eval_every": "eval_every",
    "lr": "lr",
    "lr_final_fraction": "lr_final_fraction",
    "extra_fraction": "extra_fraction",
    "schedule": "schedule",
    "pretrain_steps": "pretrain_steps",
    "flips": "flips",
    "rot90": "rot90",
    "select_on": "select_on",
    "seed": "seed",
    "filters": "unet_n_filter_base",
    "depth": "unet_n_depth",
}
INSTANCE_FLAGS = ("seed_threshold", "foreground_threshold", "min_seed_size", "min_size")
"""Post-processing flags: saved with a model in train, overriding the saved values in predict."""


def define_segment_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Flags of both `segment` subcommands (one command, so one flag namespace)."""
    from nucgen_tf.models.segmenters import NORMS, SegmenterConfig
    from nucgen_tf.segment.config import SELECT_ON, InstanceConfig, SegmentTrainConfig
    from nucgen_tf.segment.schedule import SCHEDULES

    t, n, i = SegmentTrainConfig(), SegmenterConfig(), InstanceConfig()
    kw = {"flag_values": fv}
    # train
    flags.DEFINE_enum("family", "unet", list(SEGMENTER_FAMILIES), "Segmenter family to train.", **kw)
    flags.DEFINE_multi_string(
        "data", None, "Real training folder(s) with images/ and masks/ (repeatable).", **kw
    )
    flags.DEFINE_multi_string("extra", None, "Extra (e.g. synthetic) training folder(s) (repeatable).", **kw)
    flags.DEFINE_string("val", None, "Validation folder for model selection (optional).", **kw)
    flags.DEFINE_string("out", None, "train: model/run folder; predict: output folder of label TIFFs.", **kw)
    flags.DEFINE_list(
        "patch", [str(s) for s in t.patch_shape], "Patch shape, Y,X or Z,Y,X (sets 2D/3D).", **kw
    )
    flags.DEFINE_integer("batch", t.batch_size, "Patches per step.", **kw)
    flags.DEFINE_integer("steps", t.steps, "Training steps (a multiple of --eval_every).", **kw)
    flags.DEFINE_integer("eval_every", t.eval_every, "Steps between validations and checkpoints.", **kw)
    flags.DEFINE_float("lr", t.lr, "Peak Adam learning rate (cosine decay).", **kw)
    flags.DEFINE_float("lr_final_fraction", t.lr_final_fraction, "Final lr as a fraction of --lr.", **kw)
    flags.DEFINE_list(
        "class_weights",
        [str(w) for w in t.class_weights],
        "Cross-entropy weights: background,interior,boundary.",
        **kw,
    )
    flags.DEFINE_float("dice_weight", t.dice_weight, "Weight of an added soft Dice loss (0 = off).", **kw)
    flags.DEFINE_integer("boundary_width", t.boundary_width, "Width of the boundary class (px).", **kw)
    flags.DEFINE_float(
        "extra_fraction", t.extra_fraction, "Share of patches drawn from --extra folders.", **kw
    )
    flags.DEFINE_enum(
        "schedule", t.schedule, list(SCHEDULES),
        "How --extra patches are used: mixed in at --extra_fraction, or alone for --pretrain_steps "
        "and then real only (pretrain_finetune).", **kw
    )  # fmt: skip
    flags.DEFINE_integer(
        "pretrain_steps", t.pretrain_steps, "Synthetic-only steps of --schedule=pretrain_finetune "
        "(part of --steps; a multiple of --eval_every).", **kw
    )  # fmt: skip
    flags.DEFINE_bool("flips", t.flips, "Random flips along every axis.", **kw)
    flags.DEFINE_bool("rot90", t.rot90, "Random 90-degree rotations in YX (square patches).", **kw)
    flags.DEFINE_enum(
        "select_on", t.select_on, list(SELECT_ON), "Validation score that picks the model.", **kw
    )
    define_compute_flags(t.precision, t.jit_compile, fv)
    flags.DEFINE_integer("seed", t.seed, "Random seed.", **kw)
    flags.DEFINE_integer("filters", n.base_filters, "Base filters of the U-Net.", **kw)
    flags.DEFINE_integer("depth", n.depth, "Down-sampling levels of the U-Net.", **kw)
    flags.DEFINE_enum("norm", n.norm, list(NORMS), "Normalization after each convolution.", **kw)
    flags.DEFINE_float("dropout", n.dropout, "Spatial dropout at the two deepest levels (0 = off).", **kw)
    # predict
    flags.DEFINE_string("model", None, "predict: model folder written by `segment train`.", **kw)
    flags.DEFINE_string(
        "images", None, "predict: folder of image TIFFs (or a data folder with images/).", **kw
    )
    flags.DEFINE_list("tile", [], "predict: largest tile per axis (default 1024 in 2D, 128 in 3D).", **kw)
    flags.DEFINE_integer("margin", None, "predict: context around each tile in px (default 32).", **kw)
    flags.DEFINE_bool("overwrite", False, "predict: overwrite existing label files.", **kw)
    # post-processing (train: saved with the model; predict: overrides the saved values)
    flags.DEFINE_float(
        "seed_threshold", None, f"P(interior) above which pixels seed nuclei ({i.seed_threshold}).", **kw
    )
    flags.DEFINE_float(
        "foreground_threshold",
        None,
        f"P(interior)+P(boundary) above which seeds grow ({i.foreground_threshold}).",
        **kw,
    )
    flags.DEFINE_integer("min_seed_size", None, f"Smallest seed kept, px ({i.min_seed_size}).", **kw)
    flags.DEFINE_integer("min_size", None, f"Smallest nucleus kept, px ({i.min_size}).", **kw)
    # StarDist only
    flags.DEFINE_integer("rays", None, "StarDist: rays per object (default 32).", **kw)
    flags.DEFINE_list("grid", [], "StarDist: output grid per axis (default: StarDist's choice).", **kw)
    flags.DEFINE_list(
        "anisotropy", [], "StarDist 3D: object anisotropy Z,Y,X (default: estimated from the masks).", **kw
    )
    flags.DEFINE_bool(
        "optimize_thresholds", True, "StarDist: tune the prob/NMS thresholds on --val at the end.", **kw
    )
    flags.DEFINE_float(
        "prob_thresh", None, "StarDist predict: object probability threshold (saved value).", **kw
    )
    flags.DEFINE_float("nms_thresh", None, "StarDist predict: NMS overlap threshold (saved value).", **kw)
    flags.DEFINE_list("n_tiles", [], "StarDist predict: tiles per axis (default: automatic).", **kw)


def instance_config_from_flags(base, fv: flags.FlagValues = FLAGS):
    """`base` (an `InstanceConfig`) with the post-processing flags that were given."""
    overrides = {name: fv[name].value for name in INSTANCE_FLAGS if fv[name].value is not None}
    return dataclasses.replace(base, **overrides)


def segment_train_config_from_flags(fv: flags.FlagValues = FLAGS):
    """The `SegmentTrainConfig` the parsed flags describe (validated by the dataclasses)."""
    from nucgen_tf.models.segmenters import SegmenterConfig
    from nucgen_tf.segment.config import InstanceConfig, SegmentTrainConfig

    f = fv
    return SegmentTrainConfig(
        network=SegmenterConfig(base_filters=f.filters, depth=f.depth, norm=f.norm, dropout=f.dropout),
        instances=instance_config_from_flags(InstanceConfig(), f),
        patch_shape=tuple(int(v) for v in f.patch),
        batch_size=f.batch,
        steps=f.steps,
        lr=f.lr,
        lr_final_fraction=f.lr_final_fraction,
        class_weights=tuple(float(w) for w in f.class_weights),
        dice_weight=f.dice_weight,
        boundary_width=f.boundary_width,
        extra_fraction=f.extra_fraction,
        schedule=f.schedule,
        pretrain_steps=f.pretrain_steps,
        flips=f.flips,
        rot90=f.rot90,
        eval_every=f.eval_every,
        select_on=f.select_on,
        precision=f.precision,
        jit_compile=f.jit_compile,
        seed=f.seed,
    )


def stardist_config_from_flags(fv: flags.FlagValues = FLAGS):
    """The `StardistTrainConfig` of the parsed flags: StarDist's defaults, then the flags given."""
    from nucgen_tf.segment.stardist import StardistTrainConfig

    f = fv
    values = {field: f[name].value for name, field in _STARDIST_SHARED.items() if f[name].present}
    if "patch_shape" in values:
        values["patch_shape"] = tuple(int(v) for v in values["patch_shape"])
    if f.rays is not None:
        values["n_rays"] = f.rays
    values["grid"] = tuple(int(v) for v in f.grid)
    values["anisotropy"] = tuple(float(v) for v in f.anisotropy)
    values["optimize_thresholds"] = f.optimize_thresholds
    return StardistTrainConfig(**values)


# ----- experiment: nucgen experiment -> ExperimentConfig (a preset + the flags given) -----

_INT_LIST: Callable[[list[str]], tuple[int, ...]] = lambda v: tuple(int(x) for x in v)  # noqa: E731
_FLOAT_LIST: Callable[[list[str]], tuple[float, ...]] = lambda v: tuple(float(x) for x in v)  # noqa: E731
# flag name -> (dotted config field, parser of the flag value); see `config.with_overrides`.
# The seed flags and --spacing go to gan.seeds.* and gan.spacing (`seed_overrides`).
_EXPERIMENT_FIELDS = {
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
    "ours_margin": ("ours_margin", int),
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
    "seg_schedule": ("segmenter.schedule", str),
    "seg_pretrain_steps": ("segmenter.pretrain_steps", int),
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
    "seg_schedule": "stardist.schedule",
    "seg_pretrain_steps": "stardist.pretrain_steps",
}


def define_experiment_flags(fv: flags.FlagValues = FLAGS) -> None:
    """The experiment's flags; every setting defaults to the --preset's value."""
    from nucgen_tf.experiments.config import CONDITIONS, FAMILIES, PRESETS, full_preset

    full = full_preset("", "")
    seg, gan, sd = full.segmenter, full.gan, full.stardist
    kw = {"flag_values": fv}
    flags.DEFINE_enum(
        "preset", "full", list(PRESETS), "Settings to start from; explicit flags override them.", **kw
    )
    flags.DEFINE_enum(
        "segmenter", None, list(FAMILIES),
        f"Segmenter family of the cells ({full.segmenter_family}); the --seg_* flags set its config.", **kw
    )  # fmt: skip
    flags.DEFINE_string("data_root", None, "Folder with train/, val/, test/ (each images/ + masks/).", **kw)
    flags.DEFINE_string(
        "workdir", None, "Run folder (resumable); the report goes to <workdir>/report/.", **kw
    )
    flags.DEFINE_list("conditions", None, f"Conditions, from {list(CONDITIONS)} (default all).", **kw)
    flags.DEFINE_list(
        "n_train", None, f"Real training amounts (first N images by name) ({list(full.n_train)}).", **kw
    )
    flags.DEFINE_list("seeds", None, f"Segmenter seeds ({list(full.seeds)}).", **kw)
    flags.DEFINE_integer("n_synthetic", None, f"Synthetic samples per condition ({full.n_synthetic}).", **kw)
    flags.DEFINE_list("synth_shape", None, f"Canvas of a synthetic sample ({list(full.synth_shape)}).", **kw)
    flags.DEFINE_integer("max_val_images", None, "Use the first N validation images (0 = all).", **kw)
    flags.DEFINE_integer("max_test_images", None, "Use the first N test images (0 = all).", **kw)
    flags.DEFINE_multi_string(
        "extra_eval", [], "NAME=DIR: also score this data folder (never for selection).", **kw
    )
    flags.DEFINE_float(
        "elastic_alpha", None, f"r+p2p: largest elastic displacement, px ({full.elastic_alpha}).", **kw
    )
    flags.DEFINE_float(
        "elastic_sigma", None, f"r+p2p: smoothness of the displacement, px ({full.elastic_sigma}).", **kw
    )
    flags.DEFINE_string(
        "models_dir", None, "Reuse exports: a folder with stage1/ stage2/ stage3/ [pcyclegan/].", **kw
    )
    flags.DEFINE_string("ours_models", None, "Reuse for 'ours': a folder with stage1/ stage2/ stage3/.", **kw)
    flags.DEFINE_bool(
        "ours_require_seed", None, "'ours': only stage-1 pieces holding a seed become nuclei (off).", **kw
    )
    flags.DEFINE_bool(
        "sensor_noise", None, "'ours' and 'r+p2p': add the fitted camera noise to images (on).", **kw
    )
    flags.DEFINE_integer(
        "ours_margin", None, "'ours': px generated beyond each side and cropped off (0).", lower_bound=0, **kw
    )
    flags.DEFINE_string(
        "rp2p_models", None, "Reuse for 'r+p2p': a stage-3 export (or a folder with stage3/).", **kw
    )
    flags.DEFINE_string(
        "pcyclegan_models", None, "Reuse for 'p+CycleGAN': its export (or a folder with pcyclegan/).", **kw
    )
    flags.DEFINE_integer(
        "seg_steps", None, f"Segmenter steps, the same for every condition ({seg.steps} U-Net, {sd.steps} "
        "StarDist).", **kw
    )  # fmt: skip
    flags.DEFINE_integer(
        "seg_eval_every", None, f"Steps between validations ({seg.eval_every} / {sd.eval_every}).", **kw
    )
    flags.DEFINE_list(
        "seg_patch", None, f"Segmenter patch ({list(seg.patch_shape)} / {list(sd.patch_shape)}).", **kw
    )
    flags.DEFINE_integer("seg_batch", None, f"Segmenter batch ({seg.batch_size} / {sd.batch_size}).", **kw)
    flags.DEFINE_float("seg_lr", None, f"Segmenter peak learning rate ({seg.lr} / {sd.lr}).", **kw)
    flags.DEFINE_integer(
        "seg_filters", None,
        f"Base filters of the (backbone) U-Net ({seg.network.base_filters} / {sd.unet_n_filter_base}).", **kw
    )  # fmt: skip
    flags.DEFINE_integer(
        "seg_depth", None, f"Depth of the (backbone) U-Net ({seg.network.depth} / {sd.unet_n_depth}).", **kw
    )
    flags.DEFINE_string(
        "seg_select_on", None, f"Validation score that selects the model ({seg.select_on}).", **kw
    )
    flags.DEFINE_float(
        "extra_fraction", None, f"Share of patches from synthetic data ({seg.extra_fraction}).", **kw
    )
    flags.DEFINE_enum(
        "seg_schedule", None, ["mixed", "pretrain_finetune"],
        f"How cells use synthetic patches ({seg.schedule}): mixed in at --extra_fraction, or alone for "
        "--seg_pretrain_steps, then real only; cells without synthetic data train on real only.", **kw
    )  # fmt: skip
    flags.DEFINE_integer(
        "seg_pretrain_steps", None, "Synthetic-only steps of --seg_schedule=pretrain_finetune (within --seg_steps).",
        **kw
    )  # fmt: skip
    flags.DEFINE_integer("stardist_rays", None, f"StarDist: rays per object ({sd.n_rays}).", **kw)
    flags.DEFINE_list(
        "stardist_grid", None, f"StarDist: output grid per axis ({list(sd.grid)}; empty = automatic).", **kw
    )
    flags.DEFINE_list(
        "stardist_anisotropy", None,
        "StarDist 3D: object anisotropy Z,Y,X (default: estimated from the training masks).", **kw
    )  # fmt: skip
    flags.DEFINE_bool(
        "stardist_optimize_thresholds", None,
        f"StarDist: tune the prob/NMS thresholds on val at the end ({sd.optimize_thresholds}).", **kw
    )  # fmt: skip
    flags.DEFINE_list("gan_patch", None, f"GAN training patch ({list(gan.patch_shape)}).", **kw)
    flags.DEFINE_integer("gan_batch", None, f"GAN batch ({gan.batch_size}).", **kw)
    flags.DEFINE_integer("gan_filters", None, f"Generator base filters ({gan.base_filters}).", **kw)
    flags.DEFINE_integer("gan_depth", None, f"Generator depth ({gan.depth}).", **kw)
    flags.DEFINE_integer("gan_d_filters", None, f"Discriminator base filters ({gan.d_filters}).", **kw)
    flags.DEFINE_integer("gan_d_layers", None, f"Discriminator layers ({gan.d_layers}).", **kw)
    flags.DEFINE_float(
        "gan_clipnorm", None, f"GAN gradient clipping, global norm ({gan.clipnorm}; 0 = off).", **kw
    )
    flags.DEFINE_integer("stage1_steps", None, f"Stage-1 steps ({gan.stage1_steps}).", **kw)
    flags.DEFINE_integer("stage2_steps", None, f"Stage-2 steps ({gan.stage2_steps}).", **kw)
    flags.DEFINE_integer("stage3_steps", None, f"Stage-3 (pix2pix) steps ({gan.stage3_steps}).", **kw)
    flags.DEFINE_integer("pcyclegan_steps", None, f"p+CycleGAN steps ({gan.pcyclegan_steps}).", **kw)
    flags.DEFINE_integer("gan_seed", None, f"Seed of the GAN runs and synthetic samples ({gan.seed}).", **kw)
    define_seed_flags(TRAINED_SEED_FLAGS, gan.seeds, keep="the preset's", show_values=True, fv=fv)


def experiment_config_from_flags(fv: flags.FlagValues = FLAGS):
    """The `ExperimentConfig` of --preset with every flag that was given applied."""
    from nucgen_tf.experiments.config import preset, with_overrides

    f = fv
    if not f.data_root or not f.workdir:
        raise app.UsageError("--data_root and --workdir are required (or a --flagfile that sets them).")
    base = preset(f.preset, f.data_root, f.workdir)
    stardist = (f.segmenter or base.segmenter_family) == "stardist"
    overrides = {
        _STARDIST_FIELDS.get(name, field) if stardist else field: parse(f[name].value)
        for name, (field, parse) in _EXPERIMENT_FIELDS.items()
        if f[name].value is not None
    }
    overrides.update({f"gan.seeds.{field}": value for field, value in seed_overrides(f).items()})
    spacing = spacing_from_flags(f)
    if spacing is not None:
        overrides["gan.spacing"] = spacing
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
