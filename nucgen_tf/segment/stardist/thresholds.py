"""Tuning StarDist's (prob, nms) thresholds on the validation set after training."""

from __future__ import annotations

import contextlib
import io as _stdio
import math
import pathlib
import time

from absl import logging

from nucgen_tf.segment.data import LabeledImages
from nucgen_tf.segment.stardist.config import (
    DEFAULT_THRESHOLDS,
    MODEL_NAME,
    WEIGHTS_FILE,
    StardistTrainConfig,
)
from nucgen_tf.segment.stardist.network import quiet
from nucgen_tf.segment.stardist.predict import n_tiles_of, validate


def tune_thresholds(model, val: LabeledImages, config: StardistTrainConfig, out_dir: pathlib.Path):
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
    predict_kwargs = {"show_tile_progress": False, "n_tiles": n_tiles_of(largest, config.ndim)}
    with quiet(), contextlib.redirect_stderr(_stdio.StringIO()):  # tqdm bars
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
