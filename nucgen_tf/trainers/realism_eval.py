"""Realism checks of a stage's generator during training, and the best checkpoint by them.

Losses say little about which checkpoint of a GAN is best. Every `EvalConfig.every` steps the
in-memory generator runs its stage's part of the chain on fixed crops of the eval fields
(the val split), decoded as synthesis decodes it, and its outputs are compared with the real
fields by the distances of `nucgen_tf.realism` (1-D Wasserstein distance / real IQR):

- stage 1: seed maps at the real nuclei's centres -> box map -> `decode_box_map` -> boxes;
  share of seeds inside a box, share of boxes holding no seed, distances of box size
  (product of the extents) and box aspect ratio (longest / shortest extent).
- stage 2: the real boxes, graph-colored as synthesis colors them -> colored ellipses ->
  colored mask -> `decode_colored_mask` -> labels; distances of area, aspect_ratio,
  solidity, touching and small, and labels per box.
- stage 3: the real masks, rendered as training renders them -> image on the data's
  intensity scale; distances of contrast, texture, edge_sharpness, background_level and
  background_noise (measured against the real masks).

A stage's score is the mean of its distances, lower is better; inf when one of them has no
synthetic values (e.g. no box decoded), so such a check is never the best.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from skimage.segmentation import relabel_sequential

from nucgen_tf import charts, geometry, io, realism
from nucgen_tf.config import NormConfig, RenderConfig
from nucgen_tf.data import pipelines
from nucgen_tf.data.normalize import IntensityStats
from nucgen_tf.postprocess import decode
from nucgen_tf.realism.distances import distance, scale
from nucgen_tf.sensor import SensorModel
from nucgen_tf.synthesis import pipeline
from nucgen_tf.synthesis.tiling import run_tiled
from nucgen_tf.trainers.config import StageConfig

LOG = "realism_eval.jsonl"
CURVES = "realism_curves.png"
BEST_DIR = "best"
BEST_JSON = "best.json"
MASK_DISTANCES = ("area", "aspect_ratio", "solidity", "touching", "small")
IMAGE_DISTANCES = ("contrast", "texture", "edge_sharpness", "background_level", "background_noise")

Field = tuple[np.ndarray, np.ndarray]  # (raw image, int32 labels), one crop


@dataclasses.dataclass(frozen=True)
class Result:
    """One check: the score (mean distance, lower is better) and every number it logs."""

    score: float
    numbers: Mapping[str, float | None]


def centre_crop(shape: Sequence[int], crop: int) -> tuple[slice, ...]:
    """The centred window of at most `crop` per axis (0 = the whole axis)."""
    sizes = [min(crop, s) if crop else s for s in shape]
    return tuple(slice((s - c) // 2, (s - c) // 2 + c) for s, c in zip(shape, sizes))


def load_fields(folder: io.PathLike, ndim: int, crop: int) -> list[Field]:
    """Fixed crops of every image/mask pair of `folder`: the same ones at every check."""
    fields = []
    for pair in io.list_pairs(folder):
        image, labels = io.read_pair(pair, ndim)
        window = centre_crop(labels.shape, crop)
        fields.append((image[window], relabel_sequential(labels[window].astype(np.int32))[0]))
    return fields


# A generator in inference mode: float32 (B, *spatial, C_in) -> (B, *spatial, C_out), network range.
Serve = Callable[[np.ndarray], np.ndarray]


def serving(generator: keras.Model) -> Serve:
    """The generator as one traced function (2-3x faster than eager calls of the Keras model)."""
    return tf.function(lambda x: generator(x, training=False), reduce_retracing=True)


def run_generator(
    serve: Serve,
    stored: np.ndarray,
    divisor: Sequence[int],
    noise_channels: int = 0,
    texture: np.random.Generator | None = None,
) -> np.ndarray:
    """A (*spatial, C) stored-range map through the generator -> (*spatial, C_out) network range.

    Padded to the generator's size divisor (as synthesis pads its canvases) and cropped back.
    A generator with `noise_channels` gets them drawn from `texture`, as synthesis does.
    """
    x = pipeline.to_network(stored)[None]
    if not noise_channels:
        return run_tiled(serve, x, divisor, tile=0)[0]
    padded = pipeline.with_texture_noise(x, divisor, noise_channels, [texture])
    return run_tiled(serve, padded, divisor, tile=0)[0][tuple(slice(0, s) for s in stored.shape[:-1])]


def mean_distance(distances: Mapping[str, float | None]) -> float:
    """The score: mean of the distances; inf if any is missing or not finite."""
    values = list(distances.values())
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    return float(np.mean(values))


def _check_real(real: realism.Measurements, names: Sequence[str]) -> realism.Measurements:
    """The real side must have every statistic, or every check would score inf."""
    missing = [n for n in names if not real.values.get(n, np.zeros(0)).size]
    if missing:
        raise ValueError(
            f"The eval fields give no real values of {missing} (shape statistics leave out nuclei "
            f"cut by the crop's edge): use larger crops or more fields. Received: {real.n_fields} fields"
        )
    return real


def _distances(real: realism.Measurements, synthetic: realism.Measurements, names: Sequence[str]) -> dict:
    report = realism.compare(real, synthetic)
    return {n: report.statistics[n].distance if n in report.statistics else None for n in names}


def box_shape(boxes: geometry.Boxes) -> tuple[np.ndarray, np.ndarray]:
    """Per box: size (product of the extents, px) and aspect ratio (longest / shortest extent)."""
    extents = boxes.extents
    return np.prod(extents, axis=1), extents.max(axis=1) / extents.min(axis=1)


def seeds_in_boxes(seeds: np.ndarray, boxes: geometry.Boxes) -> np.ndarray:
    """(N_seeds, N_boxes) bool: the seed lies in the box (its pixels, +- half a pixel)."""
    offset = np.abs(boxes.local_offsets(seeds))
    return np.all(offset <= boxes.extents[None, :, :] / 2, axis=-1)


class BoxEvaluator:
    """Stage 1: do the real nuclei's seeds get boxes of the real sizes and shapes?"""

    def __init__(self, fields: Sequence[Field], render: RenderConfig, divisor: Sequence[int]):
        self.render, self.divisor = render, tuple(divisor)
        self.inputs = []
        real = []
        for _, labels in fields:
            boxes = geometry.boxes_from_labels(labels, oriented=render.oriented)
            seed_map = geometry.render_seed_map(boxes.centers, labels.shape, render.seed_radius)
            self.inputs.append((boxes.centers, seed_map[..., None]))
            real.append(box_shape(boxes))
        self.real_size, self.real_aspect = (np.concatenate(r) for r in zip(*real))
        if not self.real_size.size:
            raise ValueError(f"The eval fields hold no nucleus. Received: {len(fields)} fields")

    def __call__(self, serve: Serve) -> Result:
        sizes, aspects = [], []
        n_seeds = seeds_hit = n_boxes = boxes_empty = 0
        for seeds, seed_map in self.inputs:
            box_map = pipeline.from_network(run_generator(serve, seed_map, self.divisor))[..., 0]
            boxes = decode.decode_box_map(
                box_map, bv=self.render.bv, value_range=(0.0, 1.0), oriented=self.render.oriented
            )
            inside = seeds_in_boxes(seeds, boxes)
            n_seeds, seeds_hit = n_seeds + len(seeds), seeds_hit + int(inside.any(axis=1).sum())
            n_boxes, boxes_empty = n_boxes + len(boxes), boxes_empty + int((~inside.any(axis=0)).sum())
            size, aspect = box_shape(boxes)
            sizes.append(size)
            aspects.append(aspect)
        sizes, aspects = np.concatenate(sizes), np.concatenate(aspects)
        found = {
            "box_size": distance(self.real_size, sizes, scale(self.real_size)) if n_boxes else None,
            "box_aspect_ratio": distance(self.real_aspect, aspects, scale(self.real_aspect))
            if n_boxes
            else None,
        }
        numbers = {
            "seeds_with_box": seeds_hit / n_seeds if n_seeds else None,
            "boxes_without_seed": boxes_empty / n_boxes if n_boxes else None,
            "boxes_per_seed": n_boxes / n_seeds if n_seeds else None,
            **found,
        }
        # Shapes alone would let a generator that drops a quarter of its seeds win (seen at
        # 9,000 steps of the oriented long run: aspect distance 0.22, 76 % of seeds with a box):
        # every seed without a box and every box without a seed adds its share.
        score = mean_distance(found)
        if n_seeds and n_boxes:
            score += (1.0 - numbers["seeds_with_box"]) + numbers["boxes_without_seed"]
        return Result(score, numbers)


class MaskEvaluator:
    """Stage 2: do the real boxes become nuclei of the real sizes and shapes, one per box?"""

    def __init__(self, fields: Sequence[Field], render: RenderConfig, divisor: Sequence[int], seed: int = 0):
        self.render, self.divisor = render, tuple(divisor)
        self.inputs = []
        for index, (_, labels) in enumerate(fields):
            boxes = geometry.boxes_from_labels(labels, oriented=render.oriented)
            rng = np.random.default_rng([seed, index])
            colors, _ = pipeline.color_nuclei(boxes, None, render.color_margin, rng)
            box_colors = geometry.color_lookup(boxes, colors)
            ellipses = geometry.render_colored_ellipses(boxes, box_colors, labels.shape)
            self.inputs.append((boxes, box_colors, ellipses))
        self.real = _check_real(realism.measure((None, labels) for _, labels in fields), MASK_DISTANCES)

    def __call__(self, serve: Serve) -> Result:
        synthetic, n_boxes, n_labels = [], 0, 0
        for boxes, box_colors, ellipses in self.inputs:
            mask = pipeline.from_network(run_generator(serve, ellipses, self.divisor))
            labels = np.zeros(mask.shape[:-1], np.int32)
            if len(boxes):
                labels = decode.decode_colored_mask(
                    mask, boxes, value_range=(0.0, 1.0), boundary_width=self.render.boundary_width,
                    box_colors=box_colors,
                )  # fmt: skip
                labels = relabel_sequential(np.asarray(labels, np.int32))[0]
            synthetic.append((None, labels))
            n_boxes, n_labels = n_boxes + len(boxes), n_labels + int(labels.max(initial=0))
        found = _distances(self.real, realism.measure(synthetic), MASK_DISTANCES)
        numbers = {**found, "labels_per_box": n_labels / n_boxes if n_boxes else None}
        return Result(mean_distance(found), numbers)


class ImageEvaluator:
    """Stage 3: do the real masks become images with the real contrast, texture and noise?"""

    def __init__(
        self,
        fields: Sequence[Field],
        render: RenderConfig,
        divisor: Sequence[int],
        stats: IntensityStats,
        norm: NormConfig,
        seed: int = 0,
        noise_channels: int = 0,
        sensor: SensorModel | None = None,
    ):
        self.divisor = tuple(divisor)
        self.noise_channels, self.seed, self.sensor = noise_channels, seed, sensor
        # Synthesis' `to_intensity` reads only these two fields of the loaded chain.
        self.scale = _IntensityScale(stats, norm)
        self.inputs = []
        for index, (_, labels) in enumerate(fields):
            rng = np.random.default_rng([seed, index])
            lut = geometry.color_labels(labels, render.color_margin, rng, oriented=render.oriented)
            self.inputs.append((labels, pipelines.render_patch(labels, lut, render, ("mask",))["mask"]))
        self.real = _check_real(realism.measure(fields), IMAGE_DISTANCES)

    def __call__(self, serve: Serve) -> Result:
        synthetic = []
        for index, (labels, mask) in enumerate(self.inputs):
            # The same noise at every check (stream 4 of the field, as synthesis's "texture").
            texture = np.random.default_rng([self.seed, index, 4])
            y = run_generator(serve, mask, self.divisor, self.noise_channels, texture)
            image = pipeline.to_intensity(y[..., 0], self.scale)
            if self.sensor is not None:  # judged as synthesis delivers it: with the camera noise
                image = self.sensor.apply(image, np.random.default_rng([self.seed, index, 3]))
            synthetic.append((image, labels))
        found = _distances(self.real, realism.measure(synthetic), IMAGE_DISTANCES)
        return Result(mean_distance(found), found)


@dataclasses.dataclass(frozen=True)
class _IntensityScale:
    stats: IntensityStats
    norm: NormConfig


def make_evaluator(
    cfg: StageConfig, stats: IntensityStats, sensor: SensorModel | None = None
) -> Callable[[Serve], Result]:
    """The check of `cfg.stage` on `cfg.evaluation.data` (fields read and rendered once, here).

    Stage 3 adds `sensor`'s camera noise to the painted images before measuring, as synthesis
    does: the generator should paint the clean signal, and is not scored on the noise it lacks.
    """
    fields = load_fields(cfg.evaluation.data, cfg.ndim, cfg.evaluation.crop)
    if cfg.stage == 1:
        return BoxEvaluator(fields, cfg.render, cfg.divisor)
    if cfg.stage == 2:
        return MaskEvaluator(fields, cfg.render, cfg.divisor, cfg.train.seed)
    return ImageEvaluator(
        fields, cfg.render, cfg.divisor, stats, cfg.norm, cfg.train.seed, cfg.generator.noise_channels, sensor
    )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def read_best(workdir: str | pathlib.Path) -> dict | None:
    """{"step", "score", "checkpoint"} of the best checkpoint of a run, or None.

    Read from the checkpoint itself, which holds its step and score beside the weights, so
    the record cannot disagree with the weights (`best.json` only mirrors it).
    """
    path = tf.train.latest_checkpoint(str(pathlib.Path(workdir) / BEST_DIR))
    if path is None:
        return None
    reader = tf.train.load_checkpoint(path)
    return {
        "step": int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")),
        "score": float(reader.get_tensor("score/.ATTRIBUTES/VARIABLE_VALUE")),
        "checkpoint": path,
    }


class BestCheckpoint:
    """The generator of the lowest score so far, in `<workdir>/best/` (one checkpoint) + best.json."""

    def __init__(self, generator: keras.Model, workdir: str | pathlib.Path):
        self.workdir = pathlib.Path(workdir)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_step")
        self._score = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_score")
        self._checkpoint = tf.train.Checkpoint(generator=generator, step=self._step, score=self._score)
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, str(self.workdir / BEST_DIR), max_to_keep=1
        )
        self.record = read_best(self.workdir)
        if self.record is not None:
            logging.info(
                "best realism score so far: %.4f at step %d", self.record["score"], self.record["step"]
            )

    def offer(self, step: int, score: float) -> bool:
        """Keeps the generator as it is now if `score` beats the best so far; True if it did."""
        if not math.isfinite(score) or (self.record is not None and score >= self.record["score"]):
            return False
        self._step.assign(step)
        self._score.assign(score)
        path = self._manager.save(checkpoint_number=step)
        self.record = {"step": int(step), "score": float(score), "checkpoint": path}
        io.write_json(self.workdir / BEST_JSON, {"step": int(step), "score": float(score)})
        return True

    def restore(self) -> dict | None:
        """Loads the best generator's weights into the generator; its record, or None if there is none."""
        if self.record is None:
            return None
        self._checkpoint.restore(self.record["checkpoint"]).assert_existing_objects_matched()
        return self.record


def read_log(workdir: str | pathlib.Path) -> list[dict]:
    """The checks of a run (`<workdir>/realism_eval.jsonl`), in step order; the last per step
    (a resumed run may have checked a step twice)."""
    path = pathlib.Path(workdir) / LOG
    if not path.exists():
        return []
    by_step = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                by_step[int(record["step"])] = record
            except (ValueError, KeyError, TypeError) as err:
                raise io.DataError(path, f"line {number} is not a realism check record: {err}") from err
    return [by_step[step] for step in sorted(by_step)]


def curves_chart(records: Sequence[Mapping], title: str = "Realism checks") -> np.ndarray:
    """(H, W, 3) uint8: the score and each logged number against the step, one small chart
    each (own y axis: the numbers differ by orders of magnitude), the exported best marked *."""
    if not records:
        raise ValueError("No realism check to plot.")
    names = sorted({k for r in records for k, v in r["numbers"].items() if v is not None})
    best = [r["step"] for r in records if r.get("best")]
    labels = [f"{r['step']:,}" + (" *" if best and r["step"] == best[-1] else "") for r in records]
    panels = [("score (mean distance, lower is better)", [r["score"] for r in records])]
    panels += [(name, [r["numbers"].get(name) for r in records]) for name in names]
    drawn = [
        charts.line_chart(labels, {name: [(v, None) for v in values]}, f"{title}: {name}", name)
        for name, values in panels
        if any(v is not None for v in values)
    ]
    return charts.tile(drawn, columns=2)


def write_curves(workdir: str | pathlib.Path, title: str = "Realism checks") -> pathlib.Path | None:
    """`<workdir>/realism_curves.png` from the run's log (written atomically); None without checks."""
    records = read_log(workdir)
    if not records:
        return None
    path = pathlib.Path(workdir) / CURVES
    io.write_png(path, curves_chart(records, title))
    return path


class Evaluation:
    """The checks of one run: called by the training loop, logs them, keeps the best checkpoint.

    Each check writes `realism/<number>` TensorBoard scalars (plus `realism/score` and
    `realism/seconds`), one line of `<workdir>/realism_eval.jsonl`:
    {"step", "score", "numbers", "seconds", "best"} (null for undefined numbers), and redraws
    `<workdir>/realism_curves.png` (every check so far, as a picture).
    """

    def __init__(
        self,
        every: int,
        evaluate: Callable[[Serve], Result],
        generator: keras.Model,
        workdir: str | pathlib.Path,
    ):
        if every < 1:
            raise ValueError(f"`every` must be >= 1. Received: every={every}")
        self.every, self.evaluate = every, evaluate
        self.serve = serving(generator)
        self.workdir = pathlib.Path(workdir)
        self.best = BestCheckpoint(generator, workdir)
        self.last: tuple[int, float] | None = None

    def due(self, step: int, final_step: int) -> bool:
        return step % self.every == 0 or step == final_step

    def run(self, step: int, summaries) -> Result:
        """Checks the generator at `step`; `summaries` is the run's `nucgen_tf.summaries.Summaries`."""
        start = time.perf_counter()
        result = self.evaluate(self.serve)
        seconds = time.perf_counter() - start
        numbers = {k: _finite(v) for k, v in result.numbers.items()}
        scalars = {f"realism/{k}": v for k, v in numbers.items() if v is not None}
        if math.isfinite(result.score):
            scalars["realism/score"] = result.score
        summaries.scalars(step, {**scalars, "realism/seconds": seconds})
        is_best = self.best.offer(step, result.score)
        self.last = (step, result.score)
        line = {
            "step": step, "score": _finite(result.score), "numbers": numbers,
            "seconds": round(seconds, 3), "best": is_best,
        }  # fmt: skip
        with open(self.workdir / LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(line, sort_keys=True) + "\n")
        write_curves(self.workdir, f"Realism checks of {self.workdir.name}")
        logging.info(
            "step %d: realism score %.4f%s (%.1f s)",
            step,
            result.score,
            " (best)" if is_best else "",
            seconds,
        )
        return result

    def select(self, which: str, step: int) -> dict:
        """Loads the generator to export ("best" or "latest") and says which it is, for the manifest."""
        if which == "best":
            record = self.best.restore()
            if record is not None:
                return {
                    "by": "realism",
                    "step": record["step"],
                    "score": record["score"],
                    "trained_steps": step,
                }
            logging.warning("no check gave a finite realism score: exporting the last step's generator")
        score = self.last[1] if self.last is not None and self.last[0] == step else None
        return {"by": "latest", "step": step, "score": _finite(score), "trained_steps": step}
