"""StarDist (2D and 3D), the second segmenter family: star-convex polygons / polyhedra per nucleus.

The paper checks its synthetic data with two segmenter families (Table I: U-Net and Mask
R-CNN), because a gain that shows up with one architecture only may be an artifact of that
architecture. StarDist (Schmidt et al. 2018, Weigert et al. 2020) plays the second family
here: an object-level model (one star-convex shape per predicted centre, then NMS) like
Mask R-CNN, with 2D and 3D versions, a TensorFlow implementation and good results on
nuclei. This module mirrors the U-Net segmenter's API (`segment.training` /
`segment.predict`) so callers switch families by name:

    >>> from nucgen_tf.segment import stardist_family as sdf
    >>> model_dir = sdf.train_stardist(["bbbc039/train"], "bbbc039/val", "runs/sd",    # doctest: +SKIP
    ...                                sdf.StardistTrainConfig(), extra_dirs=["runs/synthetic"])
    >>> labels = sdf.predict_instances(sdf.load_stardist(model_dir), image)             # doctest: +SKIP

Training. Pairs are read with `nucgen_tf.io`; every image is normalized the StarDist way
(csbdeep's per-image percentile normalization, 1-99.8 % by default, not clipped), once.
Instead of StarDist's own `model.train` (a Keras `fit` whose patch sampler uses the global
NumPy RNG, selects on the validation loss and keeps no optimizer state), batches are made
here and fed to `keras_model.train_on_batch`, compiled with StarDist's own losses
(`prepare_for_training`): per patch, the real or the extra (synthetic) set is picked with
probability `extra_fraction` for extra, an image uniformly, a crop uniformly, then random
flips and YX rot90; the targets (object probability = normalized EDT, ray distances) are
computed on the augmented label patch with StarDist's `edt_prob` and `star_dist` /
`star_dist3D`, as its data generators do. Every random choice is drawn from
`numpy.random.default_rng((seed, step))`, so a resumed run continues the same patch stream.
Every `eval_every` steps the validation images are predicted whole (tiled beyond
`DEFAULT_TILE`) at StarDist's default thresholds and scored with `nucgen_tf.eval` (pooled
over the images); the best model by `select_on` (the paper's instance F1 by default) is
kept. At the end StarDist's (prob, nms) thresholds are tuned on the validation set
(`optimize_thresholds`) and kept only if they do not lower the pooled `select_on` score.

Output folder layout:
    model/                 StarDist's model folder: config.json, weights_best.h5,
                           thresholds.json; `StarDist2D(None, "model", out_dir)` loads it too
    stardist.json          meta: config, resolved grid/anisotropy, best step, val scores,
                           thresholds, `finished`
    run.json               config and folders of the run; a rerun with others is refused
    checkpoints/           resume state (`tf.train.CheckpointManager`: weights, optimizer, step)
    history.json           losses and validation scores per evaluation
    tensorboard/           the same as scalars

StarDist is an optional dependency (`pip install stardist`, the "stardist" extra); the
config dataclass imports without it, the functions raise ImportError naming the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _stdio
import json
import math
import os
import pathlib
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from nucgen_tf import eval as nuc_eval
from nucgen_tf import io
from nucgen_tf.config import to_dict

PathLike = str | os.PathLike

FAMILY = "stardist"
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
    anisotropy: tuple[float, ...] = ()
    flips: bool = True
    rot90: bool = True
    percentiles: tuple[float, float] = (1.0, 99.8)
    optimize_thresholds: bool = True
    select_on: str = "instance_f1"
    seed: int = 0

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
        if self.steps % self.eval_every:
            raise ValueError(
                "`steps` must be a multiple of `eval_every` (one validation and checkpoint per "
                f"`eval_every` steps). Received: steps={self.steps}, eval_every={self.eval_every}"
            )
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
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0. Received: lr={self.lr}")
        if not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError(
                f"`lr_final_fraction` must be in [0, 1]. Received: lr_final_fraction={self.lr_final_fraction}"
            )
        if not 0.0 <= self.extra_fraction <= 1.0:
            raise ValueError(
                f"`extra_fraction` must be in [0, 1]. Received: extra_fraction={self.extra_fraction}"
            )
        if self.rot90 and self.patch_shape[-1] != self.patch_shape[-2]:
            raise ValueError(
                "`rot90` needs a square YX patch. Received: "
                f"patch_shape={self.patch_shape}; set rot90=False or use a square patch."
            )
        low_high = self.percentiles
        if len(low_high) != 2 or not 0.0 <= low_high[0] < low_high[1] <= 100.0:
            raise ValueError(
                "`percentiles` must be (low, high) with 0 <= low < high <= 100. "
                f"Received: percentiles={low_high}"
            )
        if self.select_on not in SELECT_ON:
            raise ValueError(
                f"`select_on` must be one of {SELECT_ON}. Received: select_on={self.select_on!r}"
            )

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


# ----- StarDist, imported lazily ------------------------------------------------------------


def _stardist():
    """The `stardist` package, or an ImportError that says how to get it."""
    try:
        import stardist
        import stardist.models  # noqa: F401  (imports csbdeep and the Keras models)
    except ImportError as err:
        raise ImportError(
            "The StarDist segmenter family needs the `stardist` package (tested with 0.9.2): "
            "pip install 'stardist==0.9.2' (or the nucgen-tf 'stardist' extra)."
        ) from err
    return stardist


@contextlib.contextmanager
def _quiet():
    """Sends what StarDist / csbdeep print on stdout to the absl log instead."""
    buffer = _stdio.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                logging.info("stardist: %s", line.strip())


def resolve_geometry(
    config: StardistTrainConfig, labels: Sequence[np.ndarray] = ()
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """The (grid, anisotropy) a run uses: the config's, or StarDist's automatic choices.

    Args:
        config: training settings.
        labels: real training masks, to estimate a 3D anisotropy when `config.anisotropy` is ().

    Returns:
        grid per axis, and the 3D anisotropy (None in 2D).
    """
    ndim = config.ndim
    anisotropy = None
    if ndim == 3:
        if config.anisotropy:
            anisotropy = config.anisotropy
        else:
            extents = _stardist().calculate_extents(list(labels), np.median) if labels else np.ones(3)
            extents = np.maximum(np.asarray(extents, np.float64), 1.0)
            anisotropy = tuple(float(v) for v in np.max(extents) / extents)
    if config.grid:
        grid = config.grid
    elif ndim == 2:
        grid = (2, 2)
    else:
        grid = tuple(1 if a > 1.5 else 2 for a in anisotropy)
    return grid, anisotropy


def _stardist_config(config: StardistTrainConfig, grid: Sequence[int], anisotropy: Sequence[float] | None):
    """A csbdeep `Config2D` / `Config3D` for the network (its train_* fields only document)."""
    sd = _stardist()
    common = {
        "n_channel_in": 1,
        "grid": tuple(grid),
        "backbone": "unet",
        "unet_n_filter_base": config.unet_n_filter_base,
        "unet_n_depth": config.unet_n_depth,
        "train_patch_size": config.patch_shape,
        "train_batch_size": config.batch_size,
        "train_learning_rate": config.lr,
        "train_tensorboard": False,
    }
    if config.ndim == 2:
        return sd.models.Config2D(n_rays=config.n_rays, **common)
    rays = sd.Rays_GoldenSpiral(config.n_rays, anisotropy=tuple(anisotropy))
    return sd.models.Config3D(rays=rays, anisotropy=tuple(anisotropy), **common)


def _model_class(ndim: int):
    models = _stardist().models
    return {2: models.StarDist2D, 3: models.StarDist3D}[ndim]


def build_stardist(
    config: StardistTrainConfig,
    basedir: PathLike | None = None,
    grid: Sequence[int] | None = None,
    anisotropy: Sequence[float] | None = None,
):
    """A fresh StarDist2D / StarDist3D model (by `config.ndim`), saved config and all.

    Args:
        config: training settings (network size, rays, patch).
        basedir: folder that gets StarDist's `model/` folder (config.json); None = in memory.
        grid, anisotropy: resolved geometry (`resolve_geometry`); default: the config's own
            or StarDist's automatic choice for isotropic data.
    """
    auto_grid, auto_anisotropy = resolve_geometry(config)
    grid = tuple(grid) if grid is not None else auto_grid
    anisotropy = tuple(anisotropy) if anisotropy is not None else auto_anisotropy
    sd_config = _stardist_config(config, grid, anisotropy)
    with _quiet():
        return _model_class(config.ndim)(
            sd_config, name=MODEL_NAME if basedir is not None else None,
            basedir=None if basedir is None else str(basedir),
        )  # fmt: skip


def normalize_image(image: np.ndarray, percentiles: Sequence[float] = (1.0, 99.8)) -> np.ndarray:
    """csbdeep's per-image percentile normalization (low -> 0, high -> 1, not clipped), float32."""
    from csbdeep.utils import normalize

    _stardist()
    low, high = percentiles
    return np.asarray(normalize(np.asarray(image, np.float32), low, high, axis=None), np.float32)


def stardist_targets(labels: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """StarDist's training targets of a batch of label patches, as its data generators make them.

    Args:
        labels: (B, *P) integer label patches.
        model: the StarDist model (gives rays, grid, anisotropy).

    Returns:
        prob (B, *P / grid, 1) float32: per object, its EDT normalized to 1 at the centre;
        dist_and_mask (B, *P / grid, n_rays + 1) float32: ray distances, then prob again as
        the mask that weights the distance loss.
    """
    from skimage.segmentation import relabel_sequential

    sd = _stardist()
    cfg = model.config
    ndim = labels.ndim - 1
    grid = tuple(cfg.grid)
    sub = tuple(slice(0, None, g) for g in grid)
    rays = sd.rays_from_json(cfg.rays_json) if ndim == 3 else None
    probs, dists = [], []
    for lbl in labels:
        # StarDist's C++ code reads labels as uint16: number them 1..N per patch first.
        lbl = np.ascontiguousarray(relabel_sequential(np.asarray(lbl, np.int32))[0])
        if ndim == 2:
            probs.append(sd.edt_prob(lbl[sub]))
            dists.append(sd.star_dist(lbl, cfg.n_rays, grid=grid, mode="cpp"))
        else:
            probs.append(sd.edt_prob(lbl, anisotropy=cfg.anisotropy)[sub])
            dists.append(sd.star_dist3D(lbl, rays, grid=grid, mode="cpp"))
    prob = np.stack(probs).astype(np.float32)[..., None]
    dist = np.stack(dists).astype(np.float32)
    return prob, np.concatenate([dist, prob], axis=-1)


# ----- data ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledImages:
    """Whole images of one or more folders, ready for patch sampling or validation.

    Attributes:
        names: file name stems.
        images: (*spatial) float32 images, normalized (`normalize_image`).
        labels: (*spatial) int32 instance labels.
    """

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def _pairs(dirs: Sequence[PathLike]) -> list[io.ImagePair]:
    pairs = []
    for folder in dirs:
        pairs.extend(io.list_pairs(folder))
    return pairs


def load_images(pairs: Sequence[io.ImagePair], config: StardistTrainConfig) -> LabeledImages:
    """Reads and normalizes every pair (`nucgen_tf.io`, checked for `config.ndim`)."""
    names, images, labels = [], [], []
    for pair in pairs:
        image, truth = io.read_pair(pair, config.ndim)
        names.append(pair.name)
        images.append(normalize_image(image, config.percentiles))
        labels.append(truth)
    return LabeledImages(names, images, labels)


def _crop(image: np.ndarray, labels: np.ndarray, patch_shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random crop; sources smaller than the patch are padded (image with its
    minimum, labels with background)."""
    pads = [(0, max(p - s, 0)) for s, p in zip(image.shape, patch_shape)]
    if any(after for _, after in pads):
        image = np.pad(image, pads, constant_values=float(image.min()))
        labels = np.pad(labels, pads)
    starts = [int(rng.integers(0, s - p + 1)) for s, p in zip(image.shape, patch_shape)]
    window = tuple(slice(a, a + p) for a, p in zip(starts, patch_shape))
    return image[window], labels[window]


def sample_batch(
    real: LabeledImages, extra: LabeledImages | None, config: StardistTrainConfig, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batch `step` of the patch stream: (images (B, *P) float32, labels (B, *P) int32).

    A pure function of (config.seed, step), so a resumed run draws the batches it would
    have drawn without the interruption.
    """
    rng = np.random.default_rng((config.seed, step))
    use_extra = extra is not None and len(extra) > 0 and config.extra_fraction > 0
    xs, ys = [], []
    for _ in range(config.batch_size):
        chosen = extra if use_extra and rng.random() < config.extra_fraction else real
        k = int(rng.integers(len(chosen)))
        x, y = _crop(chosen.images[k], chosen.labels[k], config.patch_shape, rng)
        if config.flips:
            for axis in range(config.ndim):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
        if config.rot90:
            turns = int(rng.integers(4))
            x, y = np.rot90(x, turns, axes=(-2, -1)), np.rot90(y, turns, axes=(-2, -1))
        xs.append(np.ascontiguousarray(x, np.float32))
        ys.append(np.ascontiguousarray(y, np.int32))
    return np.stack(xs), np.stack(ys)


# ----- prediction ---------------------------------------------------------------------------


def _n_tiles(shape: Sequence[int], ndim: int) -> tuple[int, ...] | None:
    tiles = tuple(max(1, math.ceil(s / DEFAULT_TILE[ndim])) for s in shape)
    return None if all(t == 1 for t in tiles) else tiles


def _predict_labels(model, normalized: np.ndarray, prob: float, nms: float, n_tiles=None) -> np.ndarray:
    """Instance labels of a normalized image (int32, 0 = background, 1..N)."""
    from skimage.segmentation import relabel_sequential

    tiles = n_tiles if n_tiles is not None else _n_tiles(normalized.shape, normalized.ndim)
    with _quiet():
        labels, _ = model.predict_instances(
            normalized, prob_thresh=prob, nms_thresh=nms, n_tiles=tiles, show_tile_progress=False
        )
    return relabel_sequential(np.asarray(labels, np.int32))[0].astype(np.int32, copy=False)


def _figures(scores) -> dict[str, Any]:
    return {
        "pixel_f1": scores.pixel_f1,
        "instance_f1": scores.instance_f1,
        "object_f1": scores.object_f1,
        "mean_ap": scores.mean_ap,
        "n_true": scores.n_true,
        "n_pred": scores.n_pred,
    }


def validate(model, val: LabeledImages, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Pooled `nucgen_tf.eval` scores of whole validation images at the given thresholds."""
    scores = [
        nuc_eval.score(truth, _predict_labels(model, image, thresholds["prob"], thresholds["nms"]))
        for image, truth in zip(val.images, val.labels)
    ]
    return _figures(nuc_eval.pool(scores))


# ----- training -----------------------------------------------------------------------------


def _resolved(dirs: Sequence[PathLike]) -> list[str]:
    return [str(pathlib.Path(d).resolve()) for d in dirs]


def _save_weights(keras_model, out_dir: pathlib.Path) -> None:
    """`model/weights_best.h5` in StarDist's (legacy h5) format, atomically."""
    path = out_dir / MODEL_NAME / WEIGHTS_FILE
    # The temporary name does not end in .h5, so StarDist's loader never picks a partial file;
    # csbdeep's patched save_weights writes the legacy format for any suffix but ".weights.h5".
    with io.atomic_path(path) as tmp:
        keras_model.save_weights(str(tmp))


def train_stardist(
    train_dirs: Sequence[PathLike],
    val_dir: PathLike | None,
    out_dir: PathLike,
    config: StardistTrainConfig | None = None,
    *,
    extra_dirs: Sequence[PathLike] = (),
) -> pathlib.Path:
    """Trains a StarDist model, resuming from `out_dir`'s checkpoints, and keeps the best one.

    Args:
        train_dirs: real training folders, each with images/ and masks/.
        val_dir: validation folder for model selection and threshold tuning, or None (the
            last model is kept, thresholds stay StarDist's defaults).
        out_dir: run folder (see module docstring); also what `load_stardist` reads.
        config: training settings; defaults to `StardistTrainConfig()`.
        extra_dirs: extra training folders (e.g. `nucgen synthesize` output), sampled with
            probability `config.extra_fraction`.

    Returns:
        The model folder (`out_dir`).

    Raises:
        nucgen_tf.io.DataError: a folder or file is missing or inconsistent, or `out_dir`
            holds a run with other settings.
        ImportError: stardist is not installed.
    """
    config = StardistTrainConfig() if config is None else config
    if isinstance(train_dirs, (str, os.PathLike)):
        train_dirs = [train_dirs]
    if isinstance(extra_dirs, (str, os.PathLike)):
        extra_dirs = [extra_dirs]
    if not train_dirs:
        raise ValueError("`train_dirs` needs at least one real training folder. Received: train_dirs=[]")
    _stardist()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_record = {
        "config": to_dict(config),
        "train_dirs": _resolved(train_dirs),
        "extra_dirs": _resolved(extra_dirs),
        "val_dir": None if val_dir is None else _resolved([val_dir])[0],
    }
    io.check_record(
        out_dir / RUN_FILE, run_record, "this folder holds a StarDist run with other settings",
        "use a new output folder",
    )  # fmt: skip
    io.write_json(out_dir / RUN_FILE, run_record)
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and json.loads(meta_path.read_text(encoding="utf-8")).get("finished"):
        logging.info("%s: already trained to step %d", out_dir, config.steps)
        return out_dir

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    real = load_images(_pairs(train_dirs), config)
    extra = load_images(_pairs(extra_dirs), config) if extra_dirs else None
    val = None if val_dir is None else load_images(_pairs([val_dir]), config)
    grid, anisotropy = resolve_geometry(config, real.labels)
    logging.info(
        "StarDist %dD data: %d real images%s%s; grid %s%s",
        config.ndim, len(real),
        f", {len(extra)} extra (fraction {config.extra_fraction})" if extra is not None else "",
        f", {len(val)} validation" if val is not None else "",
        grid, "" if anisotropy is None else f", anisotropy {tuple(round(a, 3) for a in anisotropy)}",
    )  # fmt: skip

    model = build_stardist(config, out_dir, grid, anisotropy)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.lr, decay_steps=config.steps, alpha=config.lr_final_fraction
    )
    optimizer = keras.optimizers.Adam(schedule)
    with _quiet():
        model.prepare_for_training(optimizer)
    keras_model = model.keras_model
    optimizer.build(keras_model.trainable_variables)

    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=keras_model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir / "checkpoints"), max_to_keep=2)
    history: list[dict] = []
    best: dict | None = None
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        saved = out_dir / HISTORY_FILE
        if saved.exists():
            record = json.loads(saved.read_text(encoding="utf-8"))
            # Entries past the checkpoint (a crash between history and checkpoint) are redone.
            history = [h for h in record.get("history", []) if h["step"] <= int(step_var.numpy())]
            best = record.get("best")
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    start = int(step_var.numpy())
    meta = {
        "family": FAMILY,
        "config": to_dict(config),
        "ndim": config.ndim,
        "grid": list(grid),
        "anisotropy": None if anisotropy is None else list(anisotropy),
        "n_rays": int(model.config.n_rays),
        "train_dirs": [str(d) for d in train_dirs],
        "extra_dirs": [str(d) for d in extra_dirs],
        "val_dir": None if val_dir is None else str(val_dir),
        "num_train_images": len(real),
        "num_extra_images": 0 if extra is None else len(extra),
        "versions": {
            "stardist": _stardist().__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }

    from nucgen_tf.summaries import Summaries

    summaries = Summaries(out_dir)
    try:
        log_every = max(1, config.eval_every // 10)
        tick, losses = time.perf_counter(), []
        for step in range(start, config.steps):
            x, y = sample_batch(real, extra, config, step)
            prob, dist = stardist_targets(y, model)
            logs = keras_model.train_on_batch(x[..., None], (prob, dist), return_dict=True)
            losses.append(float(logs["loss"]))
            done = step + 1
            if done % config.eval_every and done % log_every == 0:
                logging.info("step %d: loss %.4f", done, losses[-1])
            if done % config.eval_every:
                continue
            seconds = (time.perf_counter() - tick) / len(losses)
            scores = {} if val is None else validate(model, val, DEFAULT_THRESHOLDS)
            entry = {"step": done, "loss": float(np.mean(losses)), "seconds_per_step": seconds, **scores}
            key = config.select_on
            improved = not scores or best is None or scores[key] > best.get(key, -math.inf)
            if improved:
                best = {"step": done, **scores}
                _save_weights(keras_model, out_dir)
                _write_meta(out_dir, {**meta, "step": done, "val_scores": scores, "finished": False})
            history.append(entry)
            io.write_json(out_dir / HISTORY_FILE, {"history": history, "best": best})
            step_var.assign(done)
            manager.save(checkpoint_number=done)
            summaries.scalars(done, {k: v for k, v in entry.items() if k != "step"})
            logging.info(
                "step %d: loss %.4f, %.3f s/step%s%s", done, entry["loss"], seconds,
                "".join(f", {k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)),
                " (best so far, saved)" if improved else "",
            )  # fmt: skip
            tick, losses = time.perf_counter(), []
    finally:
        summaries.close()

    if best is None:  # resumed at the end without a history file: keep the last weights
        best = {"step": int(step_var.numpy())}
        _save_weights(keras_model, out_dir)
    thresholds, tuned = dict(DEFAULT_THRESHOLDS), None
    if val is not None and config.optimize_thresholds:
        thresholds, tuned = _tune_thresholds(model, val, config, out_dir)
    io.write_json(out_dir / MODEL_NAME / THRESHOLDS_FILE, thresholds)
    best_scores = {k: v for k, v in best.items() if k != "step"}
    _write_meta(
        out_dir,
        {
            **meta,
            "step": best["step"],
            "val_scores": best_scores,
            "thresholds": thresholds,
            "threshold_tuning": tuned,
            "finished": True,
        },
    )
    logging.info("StarDist trained to step %d; best %s; thresholds %s; saved to %s",
                 config.steps, best, thresholds, out_dir)  # fmt: skip
    return out_dir


def _write_meta(out_dir: pathlib.Path, meta: dict) -> None:
    io.write_json(out_dir / META_FILE, meta)


def _tune_thresholds(model, val: LabeledImages, config: StardistTrainConfig, out_dir: pathlib.Path):
    """StarDist's `optimize_thresholds` on the validation set, with the best weights loaded.

    StarDist tunes for its own matching accuracy (mean over IoU 0.3, 0.5, 0.7); the tuned
    pair is kept only if the pooled `select_on` score does not drop against the defaults
    (and is not 0 for both).

    Returns:
        (thresholds to use, a record of both candidates and their validation scores).
    """
    model.keras_model.load_weights(str(out_dir / MODEL_NAME / WEIGHTS_FILE))
    t0 = time.perf_counter()
    largest = max((image.shape for image in val.images), key=lambda shape: math.prod(shape))
    predict_kwargs = {"show_tile_progress": False, "n_tiles": _n_tiles(largest, config.ndim)}
    with _quiet(), contextlib.redirect_stderr(_stdio.StringIO()):  # tqdm bars
        tuned = model.optimize_thresholds(
            val.images, val.labels, predict_kwargs=predict_kwargs, save_to_json=False
        )
    tuned = {"prob": float(tuned["prob"]), "nms": float(tuned["nms"])}
    default_scores = validate(model, val, DEFAULT_THRESHOLDS)
    tuned_scores = validate(model, val, tuned)
    key = config.select_on
    # A tie at 0 (an untrained model) says nothing; StarDist's own choice decides other ties.
    keep = tuned_scores[key] > default_scores[key] or tuned_scores[key] == default_scores[key] > 0
    record = {
        "tuned": tuned,
        "tuned_val_scores": tuned_scores,
        "default": dict(DEFAULT_THRESHOLDS),
        "default_val_scores": default_scores,
        "kept": "tuned" if keep else "default",
        "seconds": time.perf_counter() - t0,
    }
    logging.info(
        "thresholds tuned on val in %.0f s: %s gives %s %.4f, defaults %.4f; keeping the %s",
        record["seconds"], tuned, key, tuned_scores[key], default_scores[key], record["kept"],
    )  # fmt: skip
    return (tuned if keep else dict(DEFAULT_THRESHOLDS)), record


# ----- loading and prediction ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class StardistSegmenter:
    """A loaded StarDist segmenter.

    Attributes:
        model: the `StarDist2D` / `StarDist3D` with its best weights.
        config: the training config.
        meta: the whole `stardist.json` (step, validation scores, thresholds, ...).
        thresholds: {"prob", "nms"} used by default.
    """

    model: Any
    config: StardistTrainConfig
    meta: dict
    thresholds: dict

    family = FAMILY

    @property
    def ndim(self) -> int:
        return self.config.ndim

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Raw image -> float32, as in training."""
        return normalize_image(image, self.config.percentiles)

    def instances(
        self,
        image: np.ndarray,
        prob_thresh: float | None = None,
        nms_thresh: float | None = None,
        n_tiles: Sequence[int] | None = None,
    ) -> np.ndarray:
        """(*spatial) int32 labels of a raw image (saved thresholds by default)."""
        image = np.asarray(image)
        if image.ndim != self.ndim or min(image.shape) < 1:
            raise ValueError(
                f"This segmenter is {self.ndim}D; the image must have {self.ndim} non-empty axes. "
                f"Received: shape={image.shape}"
            )
        prob = self.thresholds["prob"] if prob_thresh is None else prob_thresh
        nms = self.thresholds["nms"] if nms_thresh is None else nms_thresh
        return _predict_labels(self.model, self.normalize(image), prob, nms, n_tiles)


def load_stardist(model_dir: PathLike) -> StardistSegmenter:
    """Loads a folder written by `train_stardist` (its `model/` and `stardist.json`).

    Raises:
        nucgen_tf.io.DataError: a file is missing or unusable.
        ImportError: stardist is not installed.
    """
    from nucgen_tf.config import from_dict

    model_dir = pathlib.Path(model_dir)
    meta_path = model_dir / META_FILE
    weights = model_dir / MODEL_NAME / WEIGHTS_FILE
    for path in (meta_path, weights, model_dir / MODEL_NAME / "config.json"):
        if not path.is_file():
            raise io.DataError(
                path, f"not found; {model_dir} must hold {META_FILE} and a trained {MODEL_NAME}/"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = from_dict(StardistTrainConfig, meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise io.DataError(meta_path, f"not a StarDist sidecar ({type(err).__name__}: {err})") from err
    thresholds = dict(meta.get("thresholds") or DEFAULT_THRESHOLDS)
    try:
        with _quiet():
            model = _model_class(config.ndim)(None, name=MODEL_NAME, basedir=str(model_dir))
            model.keras_model.load_weights(str(weights))
    except ImportError:
        raise
    except Exception as err:  # csbdeep/Keras raise many types on a corrupt folder; all mean "unusable".
        raise io.DataError(weights, f"cannot load the StarDist model ({type(err).__name__}: {err})") from err
    return StardistSegmenter(model=model, config=config, meta=meta, thresholds=thresholds)


def _segmenter(model: PathLike | StardistSegmenter) -> StardistSegmenter:
    return model if isinstance(model, StardistSegmenter) else load_stardist(model)


def predict_instances(
    model: PathLike | StardistSegmenter,
    image: np.ndarray,
    prob_thresh: float | None = None,
    nms_thresh: float | None = None,
    n_tiles: Sequence[int] | None = None,
) -> np.ndarray:
    """Instance labels of one raw image.

    Args:
        model: a model folder or an already loaded `StardistSegmenter`.
        image: (*spatial) raw image of any size and numeric dtype.
        prob_thresh, nms_thresh: StarDist's thresholds; default the ones saved with the model.
        n_tiles: tiles per axis; default whole images up to `DEFAULT_TILE` per axis.

    Returns:
        (*spatial) int32 labels, 0 = background, 1..N.
    """
    return _segmenter(model).instances(image, prob_thresh, nms_thresh, n_tiles)


def predict_folder(
    model: PathLike | StardistSegmenter,
    images_dir: PathLike,
    out_dir: PathLike,
    prob_thresh: float | None = None,
    nms_thresh: float | None = None,
    n_tiles: Sequence[int] | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Predicts every TIFF of a folder and writes uint16 label TIFFs of the same names.

    As `segment.predict.predict_folder`: `images_dir` may be a folder of TIFFs or a data
    folder holding `images/`; outputs `<out_dir>/<stem>.tif` are written atomically and
    existing ones are skipped unless `overwrite`, so an interrupted run resumes.

    Returns:
        The written (or already present) label files, in name order.

    Raises:
        nucgen_tf.io.DataError: the folder holds no TIFF, or an image is unreadable.
    """
    paths = io.list_images(images_dir)
    segmenter = _segmenter(model)
    out_dir = pathlib.Path(out_dir)
    written = []
    for path in paths:
        target = out_dir / f"{path.stem}.tif"
        if target.exists() and not overwrite:
            logging.info("%s exists, skipped", target)
        else:
            image = io.read_image(path, segmenter.ndim)
            labels = segmenter.instances(image, prob_thresh, nms_thresh, n_tiles)
            io.write_labels(target, labels)
            logging.info("%s: %d nuclei -> %s", path.name, int(labels.max(initial=0)), target)
        written.append(target)
    return written
