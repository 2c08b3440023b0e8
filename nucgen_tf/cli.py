"""The `nucgen` command: one entry point, one subcommand per job.

Each subcommand is a module with an absl `main(argv)` (and `define_flags()`); only the chosen
module is imported, so absl flags of different jobs never clash and `nucgen --help` is fast.
`python -m <module>` runs the same job.

TensorFlow's start-up lines (oneDNN, CPU features, absl's InitializeLog warning) are hidden:
`TF_CPP_MIN_LOG_LEVEL=2` unless set, and TensorFlow's native stderr captured while it is
imported (some of those lines ignore the variable). `NUCGEN_TF_LOGS=1`, or any
`TF_CPP_MIN_LOG_LEVEL` of your own, shows them again. Errors a command does not turn into a
message itself (a bad file, Ctrl-C) end in one line, not a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, MutableMapping

from absl import app

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "preview": (
        "nucgen_tf.preview",
        "render the paper's representations of a data folder (or a built-in example)",
    ),
    "fetch": ("nucgen_tf.recipes.bbbc039", "download and convert BBBC039 into images/ + masks/ splits"),
    "phantom3d": (
        "nucgen_tf.recipes.phantom3d",
        "write the simulated BBBC024-like 3D set (high/low SNR; a stand-in, not BBBC024)",
    ),
    "synthesize": (
        "nucgen_tf.synthesize",
        "generate image + instance-mask pairs from three exported generators",
    ),
    "paint": ("nucgen_tf.paint", "paint your own instance masks with the stage-3 generator"),
    "train": (
        "nucgen_tf.trainers.train",
        "train one GAN stage (--stage 1|2|3), resuming from its checkpoints",
    ),
    "segment": (
        "nucgen_tf.segment.cli",
        "train a nucleus segmenter (real + synthetic folders) or predict instance labels with it",
    ),
    "experiment": (
        "nucgen_tf.experiments.augmentation",
        "the paper's Table I: train segmenters on real data alone and with each kind of synthetic data",
    ),
    "evaluate": (
        "nucgen_tf.eval.evaluate",
        "score predicted label TIFFs against true ones (pixel, instance and object F1, AP)",
    ),
    "realism": ("nucgen_tf.realism.command", "how far a synthetic set is from real data, per statistic"),
}
# Commands that load TensorFlow anyway: it is imported up front, quietly.
TENSORFLOW_COMMANDS = ("synthesize", "paint", "train", "segment", "experiment")


def quiet_tensorflow(environ: MutableMapping[str, str]) -> bool:
    """Sets TensorFlow's C++ log level to warnings-off unless the user chose otherwise.

    Returns:
        Whether to hide TensorFlow's start-up lines: False when `NUCGEN_TF_LOGS` is set to
        anything but 0 or `TF_CPP_MIN_LOG_LEVEL` was set by the user.
    """
    if environ.get("NUCGEN_TF_LOGS", "0") not in ("", "0") or "TF_CPP_MIN_LOG_LEVEL" in environ:
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return True


@contextlib.contextmanager
def _native_stderr_captured(enabled: bool) -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file; replays it if the block raises."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: nucgen <command> [--flags]  (nucgen <command> --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        raise SystemExit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        sys.stderr.write(f"nucgen: unknown command {name!r}\n\n{usage()}")
        raise SystemExit(2)
    helping = any(arg in ("-h", "--help", "-?") for arg in argv[2:])
    with _native_stderr_captured(quiet_tensorflow(os.environ)):
        module = importlib.import_module(COMMANDS[name][0])
        if name in TENSORFLOW_COMMANDS and not helping:
            import keras  # noqa: F401  (imports TensorFlow; both print start-up lines)
        define_flags = getattr(module, "define_flags", None)
        if define_flags is not None:  # modules may also define their flags at import
            define_flags()
    if helping:
        # absl's --help would show this module's flags; show the subcommand's.
        from absl import flags

        owners = [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith("nucgen_tf")]
        sys.stdout.write("\n".join([module.__doc__ or "", *map(flags.FLAGS.module_help, owners)]) + "\n")
        raise SystemExit(0)
    from nucgen_tf.io import DataError

    try:
        app.run(module.main, argv=[f"nucgen {name}", *argv[2:]])
    except DataError as error:  # a command that did not turn it into its message
        raise SystemExit(f"nucgen {name}: {error}") from error
    except KeyboardInterrupt:
        sys.stderr.write(f"nucgen {name}: interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()


# ----- shared training flags -> StageConfig (only trainers and this module read FLAGS) -----


def define_stage_flags(stage: int | None = None) -> None:
    """Flags of `nucgen train` / `python -m nucgen_tf.trainers.stageN`; presets set them in *.flags files."""
    from absl import flags

    from nucgen_tf.config import PatchConfig, RenderConfig, SeedConfig
    from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
    from nucgen_tf.trainers.config import EXPORT_CHECKPOINTS, EvalConfig, TrainConfig

    t, g, d, loss, p = TrainConfig(), GeneratorConfig(), DiscriminatorConfig(), GanLossConfig(), PatchConfig()
    e = EvalConfig()
    flags.DEFINE_integer("stage", stage, "1: seeds -> box map, 2: ellipses -> mask, 3: mask -> image.")
    flags.DEFINE_string("data", None, "Training folder with images/ and masks/.")
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, TensorBoard logs, panels, config.json.")
    flags.DEFINE_string("export_dir", None, "Where to export the generator (default <workdir>/export).")
    flags.DEFINE_list("patch", [str(s) for s in p.patch_shape], "Patch shape, Y,X or Z,Y,X (sets 2D/3D).")
    flags.DEFINE_list("spacing", [], "Physical voxel size per axis, e.g. 2,1,1 (3D seed arrangements).")
    flags.DEFINE_integer("batch", p.batch_size, "Global batch size.")
    flags.DEFINE_bool("rot90", p.rot90, "Random 90-degree rotations (square YX patches).")
    flags.DEFINE_integer("max_files", 0, "Use at most this many training pairs (0 = all).")
    flags.DEFINE_integer("steps", t.steps, "Training steps.")
    flags.DEFINE_float("lr", t.lr, "Initial learning rate.")
    flags.DEFINE_float(
        "decay_from", t.decay_from, "Fraction of steps after which the lr decays linearly to 0."
    )
    flags.DEFINE_integer("checkpoint_every", t.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("log_every", t.log_every, "Steps between TensorBoard scalars.")
    flags.DEFINE_integer("image_every", t.image_every, "Steps between TensorBoard image panels.")
    flags.DEFINE_float(
        "clipnorm", t.clipnorm, "Clip each optimizer's gradients to this global norm (0 = off; cuts spikes)."
    )
    flags.DEFINE_integer(
        "max_skipped_steps",
        t.max_skipped_steps,
        "Stop after this many steps in a row with non-finite losses or gradients (single ones are skipped).",
    )
    flags.DEFINE_enum(
        "precision",
        t.precision,
        ["float32", "mixed", "mixed_float16", "mixed_bfloat16"],
        "dtype policy; 'mixed' = float16 on GPU, bfloat16 on CPUs with native bf16, else float32.",
    )
    flags.DEFINE_enum(
        "strategy", t.strategy, ["default", "mirrored", "multiworker"], "tf.distribute strategy."
    )
    flags.DEFINE_bool("jit_compile", t.jit_compile, "XLA-compile the train step.")
    flags.DEFINE_integer("seed", t.seed, "Random seed.")
    flags.DEFINE_enum(
        "generator", g.architecture, ["unet3x3", "pix2pix", "resnet"],
        "Generator: unet3x3 (the project's U-Net, 3x3 double convolutions) or pix2pix (Isola et al.'s "
        "U-Net: one 4x4 stride-2 convolution per level, 3-7x fewer FLOPs; use more --depth).",
    )  # fmt: skip
    flags.DEFINE_integer("filters", g.base_filters, "Generator base filters.")
    flags.DEFINE_integer(
        "max_filters", g.max_filters, "Cap on the generator's filters per level (bounds deep pix2pix nets)."
    )
    flags.DEFINE_integer("depth", g.depth, "Generator down-sampling levels.")
    flags.DEFINE_enum("upsampling", g.upsampling, ["transpose", "nearest"], "Generator up-sampling.")
    flags.DEFINE_bool(
        "full_resolution_norm", g.full_resolution_norm, "Instance norm in the full-resolution decoder level."
    )
    flags.DEFINE_float("dropout", g.dropout, "Generator dropout, 3 innermost decoder levels (pix2pix: 0.5).")
    flags.DEFINE_integer(
        "noise_channels", g.noise_channels,
        "Stage 3: N(0, 1) noise channels the generator adds at every level with learned scales "
        "(varied texture per mask; 0 = off).",
    )  # fmt: skip
    flags.DEFINE_list(
        "strides", [],
        "Generator strides, one per level: 2, or per axis as 1x2x2 (Z not reduced), e.g. "
        "1x2x2,2,2,2 (default: 2 everywhere).",
    )  # fmt: skip
    flags.DEFINE_integer("d_filters", d.base_filters, "Discriminator base filters.")
    flags.DEFINE_integer("d_layers", d.n_layers, "Discriminator stride-2 layers.")
    flags.DEFINE_list("d_strides", [], "Discriminator strides, one per strided layer, as --strides.")
    flags.DEFINE_integer(
        "d_scales", d.scales, "PatchGANs on the input pooled 1, 2, 4... times (pix2pixHD multi-scale)."
    )
    flags.DEFINE_enum("adversarial", loss.adversarial, ["mae", "lsgan", "bce"], "Adversarial criterion.")
    flags.DEFINE_float("lambda_cycle", loss.lambda_cycle, "Cycle-consistency weight (stages 1-2).")
    flags.DEFINE_float("lambda_identity", loss.lambda_identity, "Identity weight, fraction of lambda_cycle.")
    flags.DEFINE_float("lambda_l1", loss.lambda_l1, "pix2pix L1 weight (stage 3).")
    flags.DEFINE_integer("pool_size", loss.pool_size, "Image history pool per discriminator (0 = off).")
    flags.DEFINE_float(
        "instance_noise", loss.instance_noise, "Std of Gaussian noise on discriminator inputs (0 = off)."
    )
    flags.DEFINE_float(
        "lambda_fm", loss.lambda_feature_matching, "Discriminator feature-matching weight (stage 3; 0 = off)."
    )
    flags.DEFINE_list(
        "diff_augment", list(loss.diff_augment),
        "DiffAugment of every discriminator input: any of color,translation,cutout (default: off).",
    )  # fmt: skip
    flags.DEFINE_float("r1_gamma", loss.r1_gamma, "R1 gradient penalty on the discriminator (0 = off).")
    flags.DEFINE_float("seed_density", SeedConfig.density, "Stage 1: seeds per 10,000 pixels/voxels.")
    flags.DEFINE_list("seed_kinds", list(SeedConfig.kinds), "Stage 1: seed arrangements to draw from.")
    flags.DEFINE_float("cluster_radius", SeedConfig.cluster_radius, "Stage 1: sigma of clustered seeds (px).")
    flags.DEFINE_float(
        "sparse_min_distance", SeedConfig.sparse_min_distance, "Stage 1: sparse hard core (px)."
    )
    flags.DEFINE_float(
        "crowded_min_distance", SeedConfig.crowded_min_distance, "Stage 1: crowded hard core (px)."
    )
    flags.DEFINE_float("bv", RenderConfig.bv, "Eq. 1 boundary value.")
    flags.DEFINE_integer(
        "eval_every", e.every, "Steps between realism checks of the generator on --eval_data (0 = off)."
    )
    flags.DEFINE_string("eval_data", None, "images/ + masks/ folder of the realism checks (the val split).")
    flags.DEFINE_integer("eval_crop", e.crop, "Realism checks: centre crop of each field per axis (0 = all).")
    flags.DEFINE_enum(
        "export_checkpoint", e.export_checkpoint, list(EXPORT_CHECKPOINTS),
        "With realism checks: export the best-scoring checkpoint's generator or the latest one.",
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


def stage_config_from_flags():
    """The StageConfig that the parsed flags describe (validated by the dataclasses)."""
    import dataclasses

    from absl import flags

    from nucgen_tf.config import PatchConfig, RenderConfig, SeedConfig
    from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
    from nucgen_tf.trainers.config import EvalConfig, StageConfig, TrainConfig

    f = flags.FLAGS
    if f.stage is None or not f.data or not f.workdir:
        raise app.UsageError("--stage, --data and --workdir are required.")
    patch = tuple(int(v) for v in f.patch)
    return StageConfig(
        stage=f.stage,
        data=f.data,
        patch=PatchConfig(patch_shape=patch, batch_size=f.batch, rot90=f.rot90, seed=f.seed),
        render=RenderConfig(bv=f.bv),
        seeds=SeedConfig(
            kinds=tuple(f.seed_kinds),
            density=f.seed_density,
            cluster_radius=f.cluster_radius,
            sparse_min_distance=f.sparse_min_distance,
            crowded_min_distance=f.crowded_min_distance,
        ),
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
        spacing=tuple(float(v) for v in f.spacing),
        evaluation=EvalConfig(
            every=f.eval_every,
            data=f.eval_data or "",
            crop=f.eval_crop,
            export_checkpoint=f.export_checkpoint,
        ),
    )
