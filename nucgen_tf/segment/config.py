"""Frozen configs of the segmenter: post-processing and training.

The network's own config (`SegmenterConfig`) lives beside its builder in
`nucgen_tf.models.segmenters`; `SegmentTrainConfig` nests it, and the whole tree is saved in
the `segmenter.json` sidecar so that `predict` rebuilds the same post-processing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from nucgen_tf.config import NormConfig
from nucgen_tf.models.segmenters import SegmenterConfig, check_input_shape
from nucgen_tf.runtime import PRECISIONS
from nucgen_tf.segment.schedule import check_schedule

SELECT_ON = ("instance_f1", "object_f1", "val_loss")


def check_training_fields(config: Any, select_on: tuple[str, ...]) -> None:
    """Checks the fields every family's training config shares: schedule, sampling, selection.

    Args:
        config: a training config with steps, eval_every, lr, lr_final_fraction,
            extra_fraction, rot90, patch_shape, select_on, schedule and pretrain_steps.
        select_on: the validation scores this family can select on.

    Raises:
        ValueError: naming the field and its value.
    """
    if config.steps % config.eval_every:
        raise ValueError(
            "`steps` must be a multiple of `eval_every` (one validation and checkpoint per "
            f"`eval_every` steps). Received: steps={config.steps}, eval_every={config.eval_every}"
        )
    if not config.lr > 0:
        raise ValueError(f"`lr` must be > 0. Received: lr={config.lr}")
    if not 0.0 <= config.lr_final_fraction <= 1.0:
        raise ValueError(
            f"`lr_final_fraction` must be in [0, 1]. Received: lr_final_fraction={config.lr_final_fraction}"
        )
    if not 0.0 <= config.extra_fraction <= 1.0:
        raise ValueError(
            f"`extra_fraction` must be in [0, 1]. Received: extra_fraction={config.extra_fraction}"
        )
    if config.rot90 and config.patch_shape[-1] != config.patch_shape[-2]:
        raise ValueError(
            "`rot90` needs a square YX patch. Received: "
            f"patch_shape={config.patch_shape}; set rot90=False or use a square patch."
        )
    if config.select_on not in select_on:
        raise ValueError(f"`select_on` must be one of {select_on}. Received: select_on={config.select_on!r}")
    check_schedule(config)


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """How 3-class probabilities become instance labels (`segment.instances`).

    Attributes:
        seed_threshold: a pixel seeds a nucleus where P(interior) > this. 0.5 is the
            decision boundary of the softmax; higher values shrink seeds and split more
            clumps, lower values merge more.
        foreground_threshold: the seeds grow into pixels where P(interior) + P(boundary)
            > this, i.e. where background is not the most likely of "nucleus vs not".
        min_seed_size: seeds (interior components) smaller than this many pixels are
            dropped before growing; they are mostly noise or a second, spurious seed in
            a nucleus with a pinched interior.
        min_size: final instances smaller than this many pixels are removed (BBBC039's
            reference pipeline drops objects < 25 px).
    """

    seed_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_seed_size: int = 8
    min_size: int = 25

    def __post_init__(self):
        for name in ("seed_threshold", "foreground_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
        for name in ("min_seed_size", "min_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class SegmentTrainConfig:
    """Everything `train_segmenter` needs; `ndim` follows from `patch_shape`.

    Attributes:
        network: U-Net architecture.
        instances: post-processing used for validation scores and saved for `predict`.
        norm: percentile normalization (statistics come from the real training folders).
        patch_shape: training patch, (Y, X) or (Z, Y, X); each size a multiple of the
            network's total stride.
        batch_size: patches per step.
        steps: optimizer steps.
        lr: peak Adam learning rate; cosine-decayed to `lr * lr_final_fraction` over `steps`.
        lr_final_fraction: final learning rate as a fraction of `lr`.
        class_weights: cross-entropy weight of (background, interior, boundary); the thin
            boundary class is up-weighted so that touching nuclei get separated.
        dice_weight: weight of an added soft Dice loss (mean over the 3 classes); 0 = off.
        boundary_width: width of the boundary class in pixels.
        extra_fraction: share of patches drawn from the extra (e.g. synthetic) folders
            when any are given, so that a large synthetic set does not drown the real one.
        schedule: "mixed" (extra patches mixed in at `extra_fraction` all along) or
            "pretrain_finetune" (extra patches only for `pretrain_steps`, then real only);
            see `nucgen_tf.segment.schedule`.
        pretrain_steps: steps of the synthetic-only phase ("pretrain_finetune"; else 0).
        flips: random flips along every spatial axis.
        rot90: random 90-degree rotations in YX (needs a square YX patch).
        eval_every: steps between validations (model selection) and checkpoints; `steps`
            must be a multiple of it.
        select_on: validation score that picks the saved model (higher F1 or lower loss).
        precision: dtype policy for training (`runtime.set_precision`); the saved model is
            always float32.
        jit_compile: XLA-compile the train step.
        seed: seeds Keras and the patch stream.
    """

    network: SegmenterConfig = dataclasses.field(default_factory=SegmenterConfig)
    instances: InstanceConfig = dataclasses.field(default_factory=InstanceConfig)
    norm: NormConfig = dataclasses.field(default_factory=NormConfig)
    patch_shape: tuple[int, ...] = (256, 256)
    batch_size: int = 4
    steps: int = 4000
    lr: float = 1e-3
    lr_final_fraction: float = 0.02
    class_weights: tuple[float, float, float] = (1.0, 1.0, 5.0)
    dice_weight: float = 0.0
    boundary_width: int = 1
    extra_fraction: float = 0.5
    schedule: str = "mixed"
    pretrain_steps: int = 0
    flips: bool = True
    rot90: bool = True
    eval_every: int = 250
    select_on: str = "instance_f1"
    precision: str = "mixed"
    jit_compile: bool = False
    seed: int = 0

    family: ClassVar[str] = "unet"  # its `segment.family.FAMILIES` entry

    def __post_init__(self):
        object.__setattr__(self, "patch_shape", tuple(int(s) for s in self.patch_shape))
        object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        if len(self.patch_shape) not in (2, 3) or min(self.patch_shape) < 1:
            raise ValueError(
                f"`patch_shape` must be 2 or 3 positive ints. Received: patch_shape={self.patch_shape}"
            )
        check_input_shape(self.patch_shape, self.network)
        for name in ("batch_size", "steps", "eval_every", "boundary_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        if len(self.class_weights) != 3 or min(self.class_weights) <= 0:
            raise ValueError(
                f"`class_weights` must be 3 positive numbers. Received: class_weights={self.class_weights}"
            )
        if self.dice_weight < 0:
            raise ValueError(f"`dice_weight` must be >= 0. Received: dice_weight={self.dice_weight}")
        check_training_fields(self, SELECT_ON)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"`precision` must be one of {PRECISIONS}. Received: precision={self.precision!r}"
            )

    @property
    def ndim(self) -> int:
        return len(self.patch_shape)


def model_name(config: SegmentTrainConfig) -> str:
    """The report's "Model" cell, e.g. "U-Net (2D, 3-class, 16 filters, depth 4)"."""
    net = config.network
    return f"U-Net ({config.ndim}D, 3-class, {net.base_filters} filters, depth {net.depth})"
