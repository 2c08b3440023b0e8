"""Configs of a training run: one `StageConfig` per stage, saved as `config.json` in the workdir."""

from __future__ import annotations

import dataclasses

from nucgen_tf.config import NormConfig, PatchConfig, RenderConfig, SeedConfig
from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.runtime import PRECISIONS, STRATEGIES

# The stage of the p + CycleGAN baseline (Mahmood et al. 2019; `nucgen_tf.data.polygon_masks`):
# a mask -> image CycleGAN trained like the paper's stages, on parametric masks and real images.
POLYGON_CYCLEGAN = "p+CycleGAN"
# The paper's chain (1, 2, 3), then the GAN baselines trained the same way.
STAGES = (1, 2, 3, POLYGON_CYCLEGAN)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization, bookkeeping and devices.

    Attributes:
        steps: total generator/discriminator updates.
        lr: initial Adam learning rate of both optimizers.
        beta_1: Adam beta_1 (0.5 in CycleGAN and pix2pix).
        decay_from: fraction of `steps` after which the learning rate decays linearly to 0.
        checkpoint_every: steps between checkpoints (one is also written at exit).
        keep_checkpoints: checkpoints kept on disk.
        log_every: steps between TensorBoard scalars.
        image_every: steps between TensorBoard image panels (and PNGs in `panels/`).
        precision: dtype policy, see `runtime.set_precision`.
        strategy: tf.distribute strategy, see `runtime.make_strategy`.
        jit_compile: XLA-compile the train step.
        seed: seeds Keras, TensorFlow and the data pipeline.
        clipnorm: clip each optimizer's gradients to this global norm (0 = off). It only has
            to cut spikes: a finite gradient large enough to overflow Adam's second moment
            (|g| > ~1e19) turns the weights into NaN without any NaN gradient.
        max_skipped_steps: stop after this many steps in a row whose loss or gradients were
            not finite (single ones are skipped, see `nucgen_tf.models.gan`).
    """

    steps: int = 10_000
    lr: float = 2e-4
    beta_1: float = 0.5
    decay_from: float = 0.5
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    log_every: int = 10
    image_every: int = 250
    precision: str = "float32"
    strategy: str = "default"
    jit_compile: bool = False
    seed: int = 0
    max_skipped_steps: int = 20
    clipnorm: float = 0.0

    def __post_init__(self):
        for name in (
            "steps", "checkpoint_every", "keep_checkpoints", "log_every", "image_every", "max_skipped_steps"
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        if not self.clipnorm >= 0:
            raise ValueError(f"`clipnorm` must be >= 0 (0 = off). Received: clipnorm={self.clipnorm}")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0. Received: lr={self.lr}")
        if not 0 <= self.decay_from <= 1:
            raise ValueError(f"`decay_from` must be in [0, 1]. Received: decay_from={self.decay_from}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"`precision` must be one of {PRECISIONS}. Received: precision={self.precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={self.strategy!r}")


EXPORT_CHECKPOINTS = ("best", "latest")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Realism checks of the in-memory generator during training (`trainers.realism_eval`).

    Attributes:
        every: steps between checks (0 = off); the last step is always checked when on.
        data: folder with images/ and masks/ to check on (the val split).
        crop: the centre crop of each field, per axis, that the check runs on (0 = the whole
            field): a few 256 x 256 crops keep a check within seconds on 2 CPU cores.
        export_checkpoint: "best" exports the generator of the best-scoring check, "latest"
            the last step's (without checks the last step's always).
    """

    every: int = 0
    data: str = ""
    crop: int = 256
    export_checkpoint: str = "best"

    def __post_init__(self):
        if self.every < 0:
            raise ValueError(f"`every` must be >= 0 (0 = off). Received: every={self.every}")
        if self.every and not self.data:
            raise ValueError(f"Realism checks need `data` (a folder). Received: every={self.every}, data=''")
        if self.crop < 0:
            raise ValueError(f"`crop` must be >= 0 (0 = whole fields). Received: crop={self.crop}")
        if self.export_checkpoint not in EXPORT_CHECKPOINTS:
            raise ValueError(
                f"`export_checkpoint` must be one of {EXPORT_CHECKPOINTS}. "
                f"Received: export_checkpoint={self.export_checkpoint!r}"
            )


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Everything one stage's training needs; `ndim` follows from `patch.patch_shape`.

    Attributes:
        stage: 1 (seed points -> box map), 2 (colored ellipses -> colored mask + boundary),
            3 (colored mask -> image), or "p+CycleGAN" (the baseline: parametric polygon
            masks -> image, unpaired; see `trainers.stages.TABLE`).
        data: training folder with images/ and masks/ (for "p+CycleGAN", its images are the
            image domain and its masks fix the parametric masks' sizes and counts).
        max_files: use at most this many image/mask pairs (0 = all).
        spacing: physical voxel size per axis (anisotropic 3D seed arrangements).
        evaluation: realism checks during training and which checkpoint is exported.
    """

    stage: int | str
    data: str
    patch: PatchConfig = PatchConfig()
    render: RenderConfig = RenderConfig()
    norm: NormConfig = NormConfig()
    seeds: SeedConfig = SeedConfig()
    train: TrainConfig = TrainConfig()
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    loss: GanLossConfig = GanLossConfig()
    max_files: int = 0
    spacing: tuple[float, ...] = ()
    evaluation: EvalConfig = EvalConfig()

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}. Received: stage={self.stage}")
        if self.generator.noise_channels and self.stage != 3:
            raise ValueError(
                "Noise channels are a stage-3 option (mask -> image texture). Received: "
                f"stage={self.stage}, noise_channels={self.generator.noise_channels}"
            )
        if self.loss.lambda_feature_matching and self.stage != 3:
            raise ValueError(
                "Feature matching (`lambda_feature_matching`, --lambda_fm) needs a real partner for "
                "every fake: a stage-3 (pix2pix) option. Received: "
                f"stage={self.stage}, lambda_feature_matching={self.loss.lambda_feature_matching}"
            )
        if self.spacing and len(self.spacing) != self.ndim:
            raise ValueError(
                f"`spacing` needs one value per axis ({self.ndim}). Received: spacing={self.spacing}"
            )
        shape = self.patch.patch_shape
        for axis, (size, factor) in enumerate(zip(shape, self.divisor)):
            if size % factor:
                raise ValueError(
                    f"Patch axis {axis} ({size}) must be divisible by {factor}, the generator's "
                    f"down-sampling. Received: patch_shape={shape}, depth={self.generator.depth}"
                )

    @property
    def ndim(self) -> int:
        return self.patch.ndim

    @property
    def divisor(self) -> tuple[int, ...]:
        """Per axis, the size multiple the generator needs (its down-sampling)."""
        return tuple(downsampling_factor(self.generator, self.ndim, axis) for axis in range(self.ndim))


def downsampling_factor(generator: GeneratorConfig, ndim: int, axis: int) -> int:
    """How much the generator shrinks `axis`: patch and canvas sizes must be multiples of it."""
    if not generator.strides:
        return 2**generator.depth
    factor = 1
    for level in generator.strides:
        factor *= level if isinstance(level, int) else level[axis]
    return factor
