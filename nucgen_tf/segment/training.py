"""Train a 3-class U-Net segmenter on real folders plus optional extra (synthetic) folders.

Data: every image of a folder is read once (`nucgen_tf.io`), normalized with the percentile
normalization of `nucgen_tf.data.normalize` bounded by the *real* training set's
`IntensityStats` (synthetic images from `nucgen synthesize` are on the real intensity scale,
so the same statistics fit them), and turned into its 3-class target on the whole image
(`targets.three_class_target`), so cropping never invents boundaries. Per patch, in pure
TF: pick the real or the extra set (probability `extra_fraction` for extra), pick an image
uniformly, crop, flip/rot90 (`nucgen_tf.data.augment`). Every random choice is a stateless
function of (seed, patch index), so a resumed run continues the same patch stream.

Optimization: Keras `fit` of weighted cross-entropy (+ optional soft Dice) with Adam and a
cosine-decayed learning rate, for a fixed number of steps. One Keras "epoch" is
`eval_every` steps; after each one the run is checkpointed (model, optimizer, step) and,
with a validation folder, every validation image is predicted whole (tiled), turned into
instances and scored with `nucgen_tf.eval`. The best model so far (by `select_on`) is saved
as a float32 `segmenter.keras` with the `segmenter.json` sidecar (configs, intensity
statistics, step, validation scores); without a validation folder the last model is saved.

Output folder layout:
    segmenter.keras, segmenter.json    best (or last) model, what `predict` loads
    checkpoints/                       resume state (`tf.train.CheckpointManager`)
    history.json                       losses and validation scores per evaluation
    tensorboard/                       the same as scalars
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from nucgen_tf import io, runtime
from nucgen_tf.config import from_dict, to_dict
from nucgen_tf.data import augment
from nucgen_tf.data import normalize as nz
from nucgen_tf.models import segmenters
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment import predict as sp
from nucgen_tf.segment import schedule
from nucgen_tf.segment.config import SegmentTrainConfig
from nucgen_tf.segment.instances import instances_from_probabilities
from nucgen_tf.segment.targets import three_class_target
from nucgen_tf.summaries import Summaries

PathLike = seg_data.PathLike

# Offsets the stream that picks (set, image) from the stream of crops and flips.
_PICK_STREAM = 0x51C4


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """Whole images of one or more folders, ready for patch sampling or validation.

    Attributes:
        names: file name stems.
        images: (*spatial) float32 normalized images in [-1, 1].
        targets: (*spatial) uint8 3-class targets (`targets.three_class_target`).
        labels: (*spatial) int32 instance labels (kept for validation sets only).
    """

    names: list[str]
    images: list[np.ndarray]
    targets: list[np.ndarray]
    labels: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.images)


def load_image_set(
    pairs: Sequence[io.ImagePair],
    config: SegmentTrainConfig,
    stats: nz.IntensityStats,
    keep_labels: bool = False,
) -> ImageSet:
    """Reads, normalizes (with the real training set's `stats`) and targets every pair."""

    def normalize(image: np.ndarray) -> np.ndarray:
        return nz.normalize(image, *nz.image_range(image, stats, config.norm))

    read = seg_data.read_images(pairs, config.ndim, normalize)
    targets = [three_class_target(truth, config.boundary_width) for truth in read.labels]
    return ImageSet(read.names, read.images, targets, read.labels if keep_labels else None)


def _class_fractions(images: ImageSet) -> np.ndarray:
    counts = sum(np.bincount(t.ravel(), minlength=3) for t in images.targets)
    return counts / max(counts.sum(), 1)


def patch_dataset(
    real: ImageSet, extra: ImageSet | None, config: SegmentTrainConfig, start: int = 0
) -> tf.data.Dataset:
    """Endless batches of (image (B, *P, 1) float32 in [-1, 1], target (B, *P) int32).

    Args:
        real: the real training images.
        extra: extra (synthetic) images, or None.
        config: patch shape, batch size, augmentation, `extra_fraction`, schedule and seed.
        start: index of the first patch (a resumed run passes step * batch_size).
    """
    ndim = config.ndim
    patch_shape = config.patch_shape
    phased = schedule.is_phased(config)
    no_extra = extra is None or len(extra) == 0
    sets = [real] if no_extra or (config.extra_fraction == 0 and not phased) else [real, extra]
    if config.extra_fraction == 1.0 and len(sets) == 2 and not phased:
        sets = [extra]
    fraction = config.extra_fraction if len(sets) == 2 else 0.0
    # pretrain_finetune: patch k belongs to step k // batch_size; synthetic only before the switch.
    switch = tf.constant(config.pretrain_steps * config.batch_size, tf.int64)
    sizes = tf.constant([len(s) for s in sets], tf.int64)

    def load_np(which, index):
        chosen = sets[int(which)]
        return chosen.images[int(index)], chosen.targets[int(index)].astype(np.int32)

    # Pure TF ops with explicit tf.cond / switch_case: nothing for autograph to convert.
    @tf.autograph.experimental.do_not_convert
    def element(counter):
        seed = tf.stack([tf.constant(config.seed % 2**63, tf.int64), counter])
        pick_seed = tf.stack([tf.constant((config.seed ^ _PICK_STREAM) % 2**63, tf.int64), counter])
        u = tf.random.stateless_uniform([2], seed=pick_seed, dtype=tf.float32)
        if len(sets) == 1:
            which = tf.constant(0, tf.int64)
        elif phased:
            which = tf.cast(counter < switch, tf.int64)
        else:
            which = tf.cast(u[0] < fraction, tf.int64)
        n = tf.gather(sizes, which)
        index = tf.minimum(tf.cast(tf.floor(u[1] * tf.cast(n, tf.float32)), tf.int64), n - 1)
        image, target = tf.numpy_function(load_np, [which, index], [tf.float32, tf.int32], stateful=False)
        crop_seed, aug_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        tensors = {
            "image": tf.ensure_shape(image, (None,) * ndim),
            "target": tf.ensure_shape(target, (None,) * ndim),
        }
        # Targets are padded with 0 (background) and images with their minimum where a
        # source is smaller than the patch.
        tensors = augment.random_crop(tensors, patch_shape, crop_seed)
        if config.flips or config.rot90:
            tensors = augment.random_flip_rot(tensors, ndim, aug_seed, flips=config.flips, rot90=config.rot90)
        return tensors["image"][..., None], tensors["target"]

    ds = tf.data.Dataset.counter(start=start).map(
        element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def segmentation_loss(class_weights: Sequence[float], dice_weight: float = 0.0):
    """Weighted cross-entropy (+ `dice_weight` * soft Dice) for Keras `compile`.

    The cross-entropy is the mean over pixels of w[y] * -log p_y (not renormalized by the
    weights, so the boundary weight raises that class's share of the gradient without
    changing the loss scale of images without boundaries). The soft Dice term is
    1 - mean over classes of 2 sum(p q) / (sum p + sum q), summed over the batch.

    Args:
        class_weights: weights of (background, interior, boundary).
        dice_weight: weight of the soft Dice term; 0 = cross-entropy only.

    Returns:
        loss(y_true (B, *P) int, y_pred (B, *P, 3) probabilities) -> scalar.
    """
    weights = tf.constant(class_weights, tf.float32)

    def loss(y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        y_pred = tf.cast(y_pred, tf.float32)
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        total = tf.reduce_mean(tf.gather(weights, y_true) * ce)
        if dice_weight > 0:
            onehot = tf.one_hot(y_true, 3, dtype=tf.float32)
            axes = tuple(range(y_pred.shape.rank - 1))
            inter = tf.reduce_sum(onehot * y_pred, axis=axes)
            denom = tf.reduce_sum(onehot + y_pred, axis=axes)
            dice = (2.0 * inter + 1.0) / (denom + 1.0)
            total = total + dice_weight * (1.0 - tf.reduce_mean(dice))
        return total

    return loss


def validate(model: keras.Model, val: ImageSet, config: SegmentTrainConfig, loss_fn) -> dict:
    """Scores of whole validation images: instance figures (`nucgen_tf.eval`) and loss.

    Each image is predicted in one pass (tiled only beyond `predict.DEFAULT_TILE`), turned
    into instances with `config.instances`, and scored against its labels; counts are
    pooled over the set. The loss is the pixel-weighted mean of `loss_fn` per image.
    """
    predictions, loss_sum, pixels = [], 0.0, 0
    for image, target in zip(val.images, val.targets):
        probs = sp.predict_probabilities(model, image, config.network)
        predictions.append(instances_from_probabilities(probs, config.instances))
        loss_sum += float(loss_fn(target[None], probs[None])) * target.size
        pixels += target.size
    return {**seg_data.pooled_figures(val.labels, predictions), "val_loss": loss_sum / max(pixels, 1)}


class _EvalCallback(keras.callbacks.Callback):
    """Logs progress 10 times per round; after every round (`eval_every` steps) checkpoints,
    validates, keeps the best model."""

    def __init__(self, run: _Run):
        super().__init__()
        self.run = run
        self.tick = time.perf_counter()
        self.log_every = max(1, run.config.eval_every // 10)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.log_every == 0 and batch + 1 < self.run.config.eval_every:
            step = int(self.run.step_var.numpy()) + batch + 1
            logging.info("step %d: loss %.4f", step, float((logs or {}).get("loss", math.nan)))

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.run.end_of_round(epoch + 1, dict(logs or {}), (now - self.tick) / self.run.config.eval_every)
        self.tick = time.perf_counter()


class _Run:
    """State of one training run (model, checkpoint manager, best score, history)."""

    def __init__(self, model, config, out_dir, stats, val, loss_fn, manager, step_var, history, best, meta):
        self.model, self.config, self.out_dir, self.stats = model, config, out_dir, stats
        self.val, self.loss_fn, self.manager, self.step_var = val, loss_fn, manager, step_var
        self.history, self.best, self.meta = history, best, meta
        self.summaries = Summaries(out_dir)
        self.twin = float32_twin(model, config)

    def _score(self) -> dict:
        return {} if self.val is None else validate(self.model, self.val, self.config, self.loss_fn)

    def end_of_round(self, rounds: int, logs: dict, seconds_per_step: float) -> None:
        step = rounds * self.config.eval_every
        self.step_var.assign(step)
        scores = self._score()
        entry = {
            "step": step,
            "loss": float(logs.get("loss", math.nan)),
            "seconds_per_step": seconds_per_step,
            **scores,
        }
        self.history.append(entry)
        improved = schedule.selectable(self.config, step) and self._is_better(scores)
        if improved:
            self.best = {"step": step, **scores}
            save_model(self.model, self.out_dir, self._sidecar(step, scores), self.twin)
        self.manager.save(checkpoint_number=step)
        io.write_json(self.out_dir / "history.json", {"history": self.history, "best": self.best})
        self.summaries.scalars(step, {k: v for k, v in entry.items() if k != "step"})
        logging.info(
            "step %d: loss %.4f, %.3f s/step%s%s",
            step,
            entry["loss"],
            seconds_per_step,
            "".join(f", {k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)),
            " (best so far, saved)" if improved else "",
        )

    def _is_better(self, scores: dict) -> bool:
        if not scores:
            return True  # no validation: keep the latest model
        key = self.config.select_on
        if self.best is None or key not in self.best:
            return True
        if key == "val_loss":
            return scores[key] < self.best[key]
        return scores[key] > self.best[key]

    def _sidecar(self, step: int, scores: dict) -> dict:
        return {
            **self.meta,
            "step": step,
            "val_scores": scores,
        }


def float32_twin(model: keras.Model, config: SegmentTrainConfig) -> keras.Model:
    """A float32 model of the same architecture (weights not copied)."""
    return segmenters.build_unet_segmenter(config.ndim, config.network, dtype="float32", name=model.name)


def save_model(
    model: keras.Model, out_dir: PathLike, sidecar: dict, twin: keras.Model | None = None
) -> pathlib.Path:
    """Saves a float32 copy of `model` as `segmenter.keras` and its sidecar, atomically.

    The copy makes the saved file independent of the training precision (a model trained
    under mixed_float16 on a GPU would otherwise predict in float16 on a CPU, several times
    slower) and leaves the optimizer state out of it (that is in the checkpoints).

    Args:
        model: the trained segmenter.
        out_dir: model folder.
        sidecar: JSON-able metadata; needs "config" (a `SegmentTrainConfig` as a dict).
        twin: a reusable `float32_twin` of `model` (built here when None).
    """
    out_dir = pathlib.Path(out_dir)
    if twin is None:
        twin = float32_twin(model, from_dict(SegmentTrainConfig, sidecar["config"]))
    twin.set_weights(model.get_weights())
    path = out_dir / sp.MODEL_FILE
    with io.atomic_path(path) as tmp:
        # Keras insists on the .keras suffix, so save beside the temporary name, then move.
        tmp_keras = tmp.with_name(tmp.name + ".keras")
        try:
            twin.save(tmp_keras)
            os.replace(tmp_keras, tmp)
        finally:
            tmp_keras.unlink(missing_ok=True)
    io.write_json(out_dir / sp.SIDECAR_FILE, sidecar)
    return path


def _optimizer(config: SegmentTrainConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(schedule.learning_rate(config))


def train_segmenter(
    train_dirs: Sequence[PathLike],
    val_dir: PathLike | None,
    out_dir: PathLike,
    config: SegmentTrainConfig | None = None,
    *,
    extra_dirs: Sequence[PathLike] = (),
) -> pathlib.Path:
    """Trains a segmenter, resuming from `out_dir`'s checkpoints, and saves the best model.

    Args:
        train_dirs: real training folders, each with images/ and masks/.
        val_dir: validation folder (images/ + masks/) for model selection, or None (the
            last model is saved).
        out_dir: run folder (see module docstring); also what `predict` reads.
        config: training settings; defaults to `SegmentTrainConfig()`.
        extra_dirs: extra training folders (e.g. `nucgen synthesize` output, uint16 images
            and masks in the same layout), sampled with probability `config.extra_fraction`.

    Returns:
        The model folder (`out_dir`).

    Raises:
        nucgen_tf.io.DataError: a folder or file is missing or inconsistent.
    """
    folders = seg_data.Folders(train_dirs, val_dir, extra_dirs)
    return train(SegmentTrainConfig() if config is None else config, folders, out_dir)


def train(config: SegmentTrainConfig, folders: seg_data.Folders, out_dir: PathLike) -> pathlib.Path:
    """`train_segmenter` of a config and its `Folders` (the U-Net's `SegmenterFamily.train`)."""
    previous = keras.config.dtype_policy()
    try:
        return _train(config, folders, out_dir)
    finally:
        # `set_precision` changes the global policy; leave the caller's as it was.
        keras.config.set_dtype_policy(previous)


def _train(config: SegmentTrainConfig, folders: seg_data.Folders, out_dir: PathLike) -> pathlib.Path:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    policy = runtime.set_precision(config.precision)

    real_pairs = seg_data.list_pairs(folders.train)
    stats = nz.cached_intensity_stats(
        out_dir / "intensity_stats.json", [p.image_path for p in real_pairs], config.norm, config.ndim
    )
    real = load_image_set(real_pairs, config, stats)
    extra = load_image_set(seg_data.list_pairs(folders.extra), config, stats) if folders.extra else None
    if schedule.is_phased(config) and extra is None:
        raise io.DataError(out_dir, "schedule 'pretrain_finetune' needs extra (synthetic) training folders")
    val = None
    if folders.val is not None:
        val = load_image_set(seg_data.list_pairs([folders.val]), config, stats, keep_labels=True)
    logging.info(
        "segmenter data: %d real images%s%s; class fractions (bg, interior, boundary) %s",
        len(real),
        f", {len(extra)} extra (fraction {config.extra_fraction})" if extra is not None else "",
        f", {len(val)} validation" if val is not None else "",
        np.round(_class_fractions(real), 3).tolist(),
    )

    model = segmenters.build_unet_segmenter(config.ndim, config.network)
    loss_fn = segmentation_loss(config.class_weights, config.dice_weight)
    model.compile(optimizer=_optimizer(config), loss=loss_fn, jit_compile=config.jit_compile)
    model.optimizer.build(model.trainable_variables)

    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir / "checkpoints"), max_to_keep=2)
    history, best = [], None
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        history_path = out_dir / "history.json"
        if history_path.exists():
            saved = json.loads(history_path.read_text(encoding="utf-8"))
            history, best = saved.get("history", []), saved.get("best")
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    start = int(step_var.numpy())
    meta = {
        "config": to_dict(config),
        "intensity_stats": stats.to_dict(),
        "ndim": config.ndim,
        "classes": list(segmenters.CLASSES),
        "size_multiple": list(segmenters.size_multiple(config.ndim, config.network)),
        **folders.record(),
        "num_train_images": len(real),
        "num_extra_images": 0 if extra is None else len(extra),
        "training_precision": policy,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if start >= config.steps:
        logging.info("already trained to step %d (>= steps=%d)", start, config.steps)
        if not (out_dir / sp.MODEL_FILE).exists():
            save_model(model, out_dir, {**meta, "step": start, "val_scores": {}})
        return out_dir

    run = _Run(model, config, out_dir, stats, val, loss_fn, manager, step_var, history, best, meta)
    dataset = patch_dataset(real, extra, config, start=start * config.batch_size)
    try:
        model.fit(
            dataset,
            epochs=config.steps // config.eval_every,
            initial_epoch=start // config.eval_every,
            steps_per_epoch=config.eval_every,
            callbacks=[_EvalCallback(run)],
            shuffle=False,  # the patch stream is already random
            verbose=0,
        )
    finally:
        run.summaries.close()
    logging.info("segmenter trained to step %d; best %s; saved to %s", config.steps, run.best, out_dir)
    return out_dir
