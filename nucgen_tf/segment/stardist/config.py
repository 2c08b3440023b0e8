"""StarDist's training config, the report's name of its model, and the files of a run folder.

Imports without the `stardist` package, so that experiment configs can nest it anywhere.
"""

from __future__ import annotations

import dataclasses
import types
from typing import ClassVar

from nucgen_tf.segment.config import check_training_fields

MODEL_NAME = "model"
META_FILE = "stardist.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
WEIGHTS_FILE = "weights_best.h5"
THRESHOLDS_FILE = "thresholds.json"
SELECT_ON = ("instance_f1", "object_f1", "mean_ap")
# StarDist's defaults, used for validation during training and until thresholds are tuned.
DEFAULT_THRESHOLDS = types.MappingProxyType({"prob": 0.5, "nms": 0.4})
# Largest extent per axis predicted in one pass; larger images are tiled (`n_tiles`).
DEFAULT_TILE = types.MappingProxyType({2: 1024, 3: 128})


@dataclasses.dataclass(frozen=True)
class StardistTrainConfig:
    """Everything `train_stardist` needs; `ndim` follows from `patch_shape`.

    Attributes:
        patch_shape: training patch, (Y, X) or (Z, Y, X); each size a multiple of
            2**unet_n_depth * grid (grid 2 assumed per axis while `grid` is automatic).
        batch_size: patches per step.
        steps: optimizer steps.
        eval_every: steps between validations (model selection) and checkpoints; `steps`
            must be a multiple of it.
        n_rays: rays per object (StarDist: 32 in 2D, 96 in 3D on a golden spiral).
        grid: output subsampling per axis; () = StarDist's choice: 2 per axis in 2D, in 3D
            1 on axes whose anisotropy exceeds 1.5, else 2.
        unet_n_filter_base: filters of the first level of StarDist's U-Net backbone.
        unet_n_depth: pooling levels of the backbone.
        lr: peak Adam learning rate; cosine-decayed to `lr * lr_final_fraction` over `steps`
            (StarDist's own schedule, ReduceLROnPlateau over hundreds of epochs, does not fit
            a budget of a few thousand steps).
        lr_final_fraction: final learning rate as a fraction of `lr`.
        extra_fraction: share of patches drawn from the extra (e.g. synthetic) folders when
            any are given, as `SegmentTrainConfig.extra_fraction`.
        schedule, pretrain_steps: mixed in, or synthetic first then real, as
            `SegmentTrainConfig` (`nucgen_tf.segment.schedule`).
        anisotropy: 3D only: voxel anisotropy (Z, Y, X) of the objects, which shapes the rays
            and the EDT targets; () = estimated from the real training masks as StarDist's
            examples do (median object extent per axis, max extent / extent). Must be () in 2D.
        flips: random flips along every spatial axis.
        rot90: random 90-degree rotations in YX (needs a square YX patch).
        percentiles: (low, high) percentiles of csbdeep's per-image normalization.
        optimize_thresholds: tune StarDist's (prob, nms) thresholds on the validation set at
            the end (costs a few validation passes of non-maximum suppression).
        select_on: pooled validation score that picks the saved model.
        seed: seeds Keras and the patch stream.
    """

    patch_shape: tuple[int, ...] = (128, 128)
    batch_size: int = 4
    steps: int = 1000
    eval_every: int = 250
    n_rays: int = 32
    grid: tuple[int, ...] = ()
    unet_n_filter_base: int = 32
    unet_n_depth: int = 3
    lr: float = 1e-3
    lr_final_fraction: float = 0.02
    extra_fraction: float = 0.5
    schedule: str = "mixed"
    pretrain_steps: int = 0
    anisotropy: tuple[float, ...] = ()
    flips: bool = True
    rot90: bool = True
    percentiles: tuple[float, float] = (1.0, 99.8)
    optimize_thresholds: bool = True
    select_on: str = "instance_f1"
    seed: int = 0

    family: ClassVar[str] = "stardist"  # its `segment.family.FAMILIES` entry

    def __post_init__(self):
        object.__setattr__(self, "patch_shape", tuple(int(s) for s in self.patch_shape))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "anisotropy", tuple(float(a) for a in self.anisotropy))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if len(self.patch_shape) not in (2, 3) or min(self.patch_shape) < 1:
            raise ValueError(
                f"`patch_shape` must be 2 or 3 positive ints. Received: patch_shape={self.patch_shape}"
            )
        ndim = self.ndim
        for name in ("batch_size", "steps", "eval_every", "unet_n_filter_base", "unet_n_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        if self.n_rays < 3:
            raise ValueError(f"`n_rays` must be >= 3. Received: n_rays={self.n_rays}")
        if self.grid and (len(self.grid) != ndim or min(self.grid) < 1):
            raise ValueError(
                f"`grid` must be () or {ndim} ints >= 1 (one per axis of patch_shape). "
                f"Received: grid={self.grid}"
            )
        multiple = tuple(2**self.unet_n_depth * g for g in (self.grid or (2,) * ndim))
        if any(p % m for p, m in zip(self.patch_shape, multiple)):
            raise ValueError(
                "Each patch size must be a multiple of 2**unet_n_depth * grid per axis "
                f"({multiple}; grid 2 while `grid` is automatic). Received: patch_shape={self.patch_shape}, "
                f"unet_n_depth={self.unet_n_depth}, grid={self.grid}"
            )
        if self.anisotropy and (ndim != 3 or len(self.anisotropy) != 3 or min(self.anisotropy) <= 0):
            raise ValueError(
                "`anisotropy` must be () or, for 3D patches, 3 positive numbers (Z, Y, X). "
                f"Received: anisotropy={self.anisotropy}, patch_shape={self.patch_shape}"
            )
        low_high = self.percentiles
        if len(low_high) != 2 or not 0.0 <= low_high[0] < low_high[1] <= 100.0:
            raise ValueError(
                "`percentiles` must be (low, high) with 0 <= low < high <= 100. "
                f"Received: percentiles={low_high}"
            )
        check_training_fields(self, SELECT_ON)

    @property
    def ndim(self) -> int:
        return len(self.patch_shape)


def model_name(config: StardistTrainConfig) -> str:
    """The report's "Model" cell, e.g. "StarDist (2D, 32 rays, grid 2x2, U-Net 16 filters, depth 3)"."""
    grid = "x".join(str(g) for g in config.grid) if config.grid else "auto"
    return (
        f"StarDist ({config.ndim}D, {config.n_rays} rays, grid {grid}, "
        f"U-Net {config.unet_n_filter_base} filters, depth {config.unet_n_depth})"
    )
