"""The StarDist training loop: resumable, model selection on validation scores, then thresholds.

Instead of StarDist's own `model.train` (a Keras `fit` whose patch sampler uses the global
NumPy RNG, selects on the validation loss and keeps no optimizer state), batches come from
`stardist.data.sample_batch` and are fed to `keras_model.train_on_batch`, compiled with
StarDist's own losses (`prepare_for_training`); the targets (object probability =
normalized EDT, ray distances) are computed on the augmented label patch
(`network.stardist_targets`), as StarDist's data generators do. Every `eval_every` steps the
validation images are predicted whole (tiled beyond `DEFAULT_TILE`) at StarDist's default
thresholds and scored with `nucgen_tf.eval` (pooled over the images); the best model by
`select_on` (the paper's instance F1 by default) is kept. At the end StarDist's (prob, nms)
thresholds are tuned on the validation set (`thresholds.tune_thresholds`).

Output folder layout:
    model/                 StarDist's model folder: config.json, weights_best.h5,
                           thresholds.json; `StarDist2D(None, "model", out_dir)` loads it too
    stardist.json          meta: config, resolved grid/anisotropy, best step, val scores,
                           thresholds, `finished`
    run.json               config and folders of the run; a rerun with others is refused
    checkpoints/           resume state (`tf.train.CheckpointManager`: weights, optimizer, step)
    history.json           losses and validation scores per evaluation
    tensorboard/           the same as scalars
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

from nucgen_tf import io
from nucgen_tf.config import to_dict
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment import schedule
from nucgen_tf.segment.data import PathLike
from nucgen_tf.segment.stardist.config import (
    DEFAULT_THRESHOLDS,
    HISTORY_FILE,
    META_FILE,
    MODEL_NAME,
    RUN_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    StardistTrainConfig,
)
from nucgen_tf.segment.stardist.data import load_images, sample_batch
from nucgen_tf.segment.stardist.network import (
    build_stardist,
    quiet,
    require_stardist,
    resolve_geometry,
    stardist_targets,
)
from nucgen_tf.segment.stardist.predict import validate
from nucgen_tf.segment.stardist.thresholds import tune_thresholds


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
    folders = seg_data.Folders(train_dirs, val_dir, extra_dirs)
    return train(StardistTrainConfig() if config is None else config, folders, out_dir)


def train(config: StardistTrainConfig, folders: seg_data.Folders, out_dir: PathLike) -> pathlib.Path:
    """`train_stardist` of a config and its `Folders` (StarDist's `SegmenterFamily.train`)."""
    require_stardist()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_record = {
        "config": schedule.record_without_defaults(to_dict(config)),
        "train_dirs": _resolved(folders.train),
        "extra_dirs": _resolved(folders.extra),
        "val_dir": None if folders.val is None else _resolved([folders.val])[0],
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
    real = load_images(seg_data.list_pairs(folders.train), config)
    extra = load_images(seg_data.list_pairs(folders.extra), config) if folders.extra else None
    if schedule.is_phased(config) and extra is None:
        raise io.DataError(out_dir, "schedule 'pretrain_finetune' needs extra (synthetic) training folders")
    val = None if folders.val is None else load_images(seg_data.list_pairs([folders.val]), config)
    grid, anisotropy = resolve_geometry(config, real.labels)
    logging.info(
        "StarDist %dD data: %d real images%s%s; grid %s%s",
        config.ndim, len(real),
        f", {len(extra)} extra (fraction {config.extra_fraction})" if extra is not None else "",
        f", {len(val)} validation" if val is not None else "",
        grid, "" if anisotropy is None else f", anisotropy {tuple(round(a, 3) for a in anisotropy)}",
    )  # fmt: skip

    model = build_stardist(config, out_dir, grid, anisotropy)
    optimizer = keras.optimizers.Adam(schedule.learning_rate(config))
    with quiet():
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
        "family": config.family,
        "config": to_dict(config),
        "ndim": config.ndim,
        "grid": list(grid),
        "anisotropy": None if anisotropy is None else list(anisotropy),
        "n_rays": int(model.config.n_rays),
        **folders.record(),
        "num_train_images": len(real),
        "num_extra_images": 0 if extra is None else len(extra),
        "versions": {
            "stardist": require_stardist().__version__,
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
            improved = schedule.selectable(config, done) and (
                not scores or best is None or scores[key] > best.get(key, -math.inf)
            )
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
        thresholds, tuned = tune_thresholds(model, val, config, out_dir)
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
