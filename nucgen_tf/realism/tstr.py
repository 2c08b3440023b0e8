"""Train on synthetic, test on real (TSTR): the end-to-end test of a synthetic set.

Distribution distances can miss what a segmenter cares about, so this trains the project's
U-Net segmenter on the synthetic folder alone and, with the same budget, on a real training
folder, scores both on a real evaluation folder and reports the instance-F1 gap. The only
module of `nucgen_tf.realism` that imports TensorFlow (through `nucgen_tf.segment`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from absl import logging

from nucgen_tf import io
from nucgen_tf.segment import SegmentTrainConfig, load_segmenter, train_segmenter
from nucgen_tf.segment.family import evaluate_segmenter


@dataclasses.dataclass(frozen=True)
class TstrResult:
    """Instance F1 on the real evaluation folder after `steps` of training on each source.

    Attributes:
        steps: training steps of each segmenter.
        synthetic_f1: the paper's instance F1 of the segmenter trained on synthetic data.
        real_f1: the same for the segmenter trained on real data.
        gap: real_f1 - synthetic_f1 (0 = synthetic data teaches as much as real data).
        scores: {"synthetic": ..., "real": ...} pooled figures of both (pixel/object F1, AP).
    """

    steps: int
    synthetic_f1: float
    real_f1: float
    gap: float
    scores: dict[str, Any]


def _patch_shape(folders, cap: int, divisor: int) -> tuple[int, ...]:
    """The largest patch up to `cap` per axis, a multiple of `divisor`, that fits every
    first field (synthetic canvases may be smaller than the default 256 px)."""
    shapes = [io.read_image(io.list_images(f)[0]).shape for f in folders]
    return tuple(max(divisor, min(cap, *sizes) // divisor * divisor) for sizes in zip(*shapes))


def tstr_config(steps: int, folders, base: SegmentTrainConfig | None = None) -> SegmentTrainConfig:
    """`base` (default `SegmentTrainConfig()`) with `steps`, one validation at the end (the
    last model is kept: no selection on real data) and a patch that fits the folders."""
    base = base or SegmentTrainConfig()
    divisor = 2**base.network.depth
    patch = _patch_shape(folders, max(base.patch_shape), divisor)
    return dataclasses.replace(base, steps=steps, eval_every=steps, patch_shape=patch)


def run_tstr(
    synthetic_dir: io.PathLike,
    real_train_dir: io.PathLike,
    real_eval_dir: io.PathLike,
    workdir: io.PathLike,
    steps: int = 300,
    config: SegmentTrainConfig | None = None,
) -> TstrResult:
    """Trains on `synthetic_dir` and on `real_train_dir` (same budget), scores on `real_eval_dir`.

    Args:
        synthetic_dir, real_train_dir, real_eval_dir: data folders (images/ + masks/).
        workdir: models and predictions go to `<workdir>/{synthetic,real}/`; a rerun with the same
            settings resumes.
        steps: training steps of each segmenter.
        config: segmenter settings; steps and patch shape are set here.

    Raises:
        io.DataError: a missing or inconsistent folder.
    """
    workdir = pathlib.Path(workdir)
    cfg = tstr_config(steps, [synthetic_dir, real_train_dir], config)
    scores = {}
    for name, folder in (("synthetic", synthetic_dir), ("real", real_train_dir)):
        model_dir = train_segmenter([folder], None, workdir / name / "model", cfg)
        pred_dir = workdir / name / "pred"
        scores[name] = evaluate_segmenter(load_segmenter(model_dir), pathlib.Path(real_eval_dir), pred_dir)
        logging.info("TSTR %s: instance F1 %.4f on %s", name, scores[name]["instance_f1"], real_eval_dir)
    synthetic_f1, real_f1 = scores["synthetic"]["instance_f1"], scores["real"]["instance_f1"]
    return TstrResult(steps, synthetic_f1, real_f1, real_f1 - synthetic_f1, scores)
