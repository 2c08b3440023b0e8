"""The three-stage chain for a batch of samples: seeds -> boxes -> labels -> image.

Every representation is built by `nucgen_tf.geometry` in the stored range [0, 1] and goes
to a network as `2 x - 1`; network outputs come back as `(y + 1) / 2`, clipped. Stage 1's
box map is decoded to boxes, the boxes are graph-colored and drawn as stage 2's ellipses,
stage 2's colored mask is decoded to labels, and the FINAL labels (after decoding,
splitting and relabelling) are colored afresh and drawn as stage 3's input, so the image
is generated from exactly the labels that are saved.

A stage-3 generator with noise channels (`GeneratorConfig.noise_channels`) gets standard
Gaussian noise appended to its input, drawn from the sample's own "texture" stream for the
whole (padded) canvas at once, so that a sample stays a function of (seed, index) and tiles
cut from the canvas see the same noise as one pass would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from absl import logging
from skimage.segmentation import relabel_sequential

from nucgen_tf import geometry
from nucgen_tf.data.normalize import denormalize
from nucgen_tf.synthesis.models import Generators, StageModel
from nucgen_tf.synthesis.tiling import round_up, run_tiled


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """How the chain runs (not what it draws).

    Attributes:
        tile: largest tile per axis (0 = one pass; see `tiling.plan_tiles`).
        overlap: tile overlap per axis.
        batch_size: canvases or tiles per network call (1 = bit-reproducible).
        box_threshold: stage-1 decoding threshold (None = the decoder's default).
        min_box_size: stage-1 components with fewer pixels are dropped (counted); None = the
            decoder's default (2**ndim).
        split_touching: split touching ovals of the box map.
        require_seed: only box-map pieces that hold a seed point become boxes (drops what
            stage 1 painted away from every seed; off = the paper's rule, every piece).
        sensor_noise: add the stage-3 manifest's camera noise (`sensor.SensorModel`) to the
            generated images; off = the generator's clean images.
        margin: pixels generated beyond every side of the canvas and cropped off at the end.
            Nuclei then run past the canvas edge as in a microscope field (whole nuclei cut by
            the edge) instead of being generated against it (thin slivers, painted white);
            seeds may lie in the margin. 0 = the canvas only.
    """

    tile: int | tuple[int, ...] = 0
    overlap: int | tuple[int, ...] = 64
    batch_size: int = 1
    box_threshold: float | None = None
    min_box_size: int | None = None
    split_touching: bool = True
    require_seed: bool = False
    sensor_noise: bool = True
    margin: int = 0

    def __post_init__(self):
        if self.margin < 0:
            raise ValueError(f"`margin` must be >= 0. Received: margin={self.margin}")


@dataclasses.dataclass
class Sample:
    """Everything one sample produced; maps in the stored range [0, 1].

    Attributes:
        seeds: (N, ndim) seed coordinates.
        seed_map: (*spatial) stage-1 input.
        box_map: (*spatial) stage-1 output.
        boxes: decoded boxes.
        box_colors: (N,) palette index of each box in the stage-2 input (guides the cut).
        ellipses: (*spatial, 3) stage-2 input.
        colored_mask: (*spatial, 4) stage-2 output.
        labels: (*spatial) int32 final labels 1..N, consecutive.
        stage3_input: (*spatial, 4) colored mask rendered from `labels`.
        image: (*spatial) generated image on the training data's intensity scale, with the
            fitted camera noise when `ChainSettings.sensor_noise` and the models have one.
        report: JSON-ready counts, decode reports and timings.
    """

    seeds: np.ndarray
    seed_map: np.ndarray
    box_map: np.ndarray | None = None
    boxes: geometry.Boxes | None = None
    box_colors: np.ndarray | None = None
    ellipses: np.ndarray | None = None
    colored_mask: np.ndarray | None = None
    labels: np.ndarray | None = None
    stage3_input: np.ndarray | None = None
    image: np.ndarray | None = None
    report: dict = dataclasses.field(default_factory=dict)


def to_network(stored: np.ndarray) -> np.ndarray:
    """Stored range [0, 1] -> network range [-1, 1], float32."""
    return (2.0 * np.asarray(stored, np.float32) - 1.0).astype(np.float32)


def from_network(y: np.ndarray) -> np.ndarray:
    """Network range -> stored range [0, 1], clipped, float32."""
    return np.clip((np.asarray(y, np.float32) + 1.0) * 0.5, 0.0, 1.0)


def with_texture_noise(
    x: np.ndarray, divisor: Sequence[int], channels: int, rngs: Sequence[np.random.Generator]
) -> np.ndarray:
    """Network inputs padded for the network, with `channels` channels of N(0, 1) noise appended.

    Args:
        x: (B, *spatial, C) network-range inputs.
        divisor: per-axis size multiple of the network; `x` is padded at its far end with
            -1 (background) up to it, as `tiling.run_tiled` would, and the noise is drawn for
            the padded canvas.
        channels: noise channels.
        rngs: one generator per sample (synthesis: its "texture" stream).

    Returns:
        (B, *padded, C + channels) float32.
    """
    if len(rngs) != len(x):
        raise ValueError(f"Texture noise needs one generator per sample ({len(x)}). Received: {len(rngs)}")
    spatial = x.shape[1:-1]
    padded = tuple(round_up(s, d) for s, d in zip(spatial, divisor))
    grow = [(0, 0)] + [(0, p - s) for p, s in zip(padded, spatial)] + [(0, 0)]
    x = np.pad(np.asarray(x, np.float32), grow, constant_values=-1.0)
    noise = np.stack([rng.standard_normal((*padded, channels), dtype=np.float32) for rng in rngs])
    return np.concatenate([x, noise], axis=-1)


def run_stage(
    model: StageModel,
    stored: np.ndarray,
    settings: ChainSettings,
    texture: Sequence[np.random.Generator] | None = None,
) -> np.ndarray:
    """Run one generator on a (B, *spatial[, C]) stack of stored-range maps.

    Args:
        model: the generator.
        stored: the inputs in the stored range.
        settings: tiling and batching.
        texture: per sample, the generator of its texture noise (its "texture" stream);
            needed when `model.noise_channels` > 0, unused otherwise.

    Returns:
        (B, *spatial, C_out) network-range outputs (channel axis kept).
    """
    x = to_network(stored)
    if x.ndim == model.manifest["ndim"] + 1:
        x = x[..., None]
    if not model.noise_channels:
        return run_tiled(model, x, model.divisor, settings.tile, settings.overlap, settings.batch_size)
    if texture is None:
        raise ValueError(
            f"{model.path} takes {model.noise_channels} noise channel(s): pass `texture`, one numpy "
            "generator per sample"
        )
    spatial = x.shape[1:-1]
    x = with_texture_noise(x, model.divisor, model.noise_channels, texture)
    y = run_tiled(model, x, model.divisor, settings.tile, settings.overlap, settings.batch_size)
    return y[(slice(None), *(slice(0, s) for s in spatial))]


def image_scale(generators: Generators) -> tuple[float, float]:
    """(lo, hi) intensities that the stage-3 network range [-1, 1] maps to.

    The training data's normalization maps an image's low percentile to -1 and its high
    percentile, but at least `low + min_span_fraction * span`, to +1; synthesis uses the
    data set's typical values of both.
    """
    stats, norm = generators.stats, generators.norm
    lo = float(stats.low)
    hi = max(float(stats.high), lo + norm.min_span_fraction * float(stats.span))
    return lo, hi


def to_intensity(y: np.ndarray, generators: Generators) -> np.ndarray:
    """Network-range image -> the training data's dtype and scale, clipped to [0, max_value]."""
    lo, hi = image_scale(generators)
    stats = generators.stats
    image = denormalize(y, lo, hi, dtype=stats.dtype, max_value=stats.max_value)
    if not np.issubdtype(image.dtype, np.unsignedinteger):
        image = np.clip(image, 0, stats.max_value).astype(image.dtype)
    return image


def color_nuclei(
    boxes: geometry.Boxes, labels: np.ndarray | None, margin: float, rng: np.random.Generator
) -> tuple[dict[int, int], float]:
    """Palette colors for the nuclei; the margin is halved until the palette suffices.

    Returns:
        ({id: palette index}, the margin used). A dense 3D canvas can need more than the
        12 palette colors at the trained margin; a smaller margin is logged and recorded
        rather than failing the whole job. If even margin 0 (overlapping ellipses only) needs
        more, colors are reused (margin -1 is recorded): same-colored touching nuclei are
        still separated by the k-terminal cut, whose terminals are the box centres.
    """
    used = margin
    while True:
        graph = geometry.color_graph(boxes, labels, used)
        try:
            return geometry.assign_colors(graph, rng=rng), used
        except ValueError:
            if used == 0:
                logging.warning("the palette is too small even at margin 0: reusing colors")
                colors = geometry.assign_colors(graph, n_colors=max(len(graph), 1))
                return {node: color % len(geometry.PALETTE) for node, color in colors.items()}, -1.0
            used = used / 2 if used > 0.5 else 0.0
            logging.warning(
                "coloring needs more than the palette at margin %.2f; retrying at %.2f", used * 2, used
            )


def _decode_boxes(
    box_map: np.ndarray, bv: float, settings: ChainSettings, seeds: np.ndarray, oriented: bool = False
) -> tuple[geometry.Boxes, dict]:
    """Stage-1 decoding plus the counts it does not report itself (nothing is dropped silently)."""
    from nucgen_tf.postprocess import decode

    boxes, decoded = decode.decode_box_map(
        box_map,
        bv=bv,
        threshold=settings.box_threshold,
        min_size=settings.min_box_size,
        split_touching=settings.split_touching,
        value_range=(0.0, 1.0),
        seeds=seeds if settings.require_seed else None,
        return_report=True,
        oriented=oriented,
    )
    min_size = settings.min_box_size if settings.min_box_size is not None else 2**box_map.ndim
    components = geometry.label_box_map(box_map, bv=bv, threshold=settings.box_threshold)
    sizes = np.bincount(components.ravel())[1:]
    kept = int(np.count_nonzero(sizes >= min_size))
    # boxes - kept > 0: touching ovals were split; < 0: components that gave no box.
    report = {
        "components": int(len(sizes)),
        "dropped_small": int(len(sizes) - kept),
        "boxes": len(boxes),
        "boxes_minus_kept_components": len(boxes) - kept,
    }
    if settings.require_seed:
        report["dropped_seedless"] = decoded["dropped_seedless"]
    elif len(boxes) < kept:
        logging.warning(
            "stage-1 decoding: %d components of >= %d px gave only %d boxes", kept, min_size, len(boxes)
        )
    return boxes, report


def _decode_labels(
    mask: np.ndarray, boxes: geometry.Boxes, box_colors: np.ndarray, boundary_width: int
) -> tuple[np.ndarray, dict]:
    from nucgen_tf.postprocess import decode

    labels, report = decode.decode_colored_mask(
        mask, boxes, value_range=(0.0, 1.0), boundary_width=boundary_width, box_colors=box_colors,
        return_report=True,
    )
    return np.asarray(labels), dict(report)


def _stamp(sample: Sample, key: str, seconds: float) -> None:
    timings = sample.report.setdefault("timings", {})
    timings[key] = round(timings.get(key, 0.0) + seconds, 6)


def _timed_stage(
    model: StageModel,
    samples: list[Sample],
    inputs: list[np.ndarray],
    settings: ChainSettings,
    key: str,
    texture: Sequence[np.random.Generator] | None = None,
) -> np.ndarray:
    start = time.perf_counter()
    out = run_stage(model, np.stack(inputs), settings, texture)
    share = (time.perf_counter() - start) / len(samples)
    for sample in samples:
        _stamp(sample, key, share)
    return out


def crop_sample(sample: Sample, margin: int, shape: Sequence[int]) -> Sample:
    """The canvas `shape` of a sample generated with `margin` extra pixels on every side.

    Maps and the image are cropped; labels are cut and renumbered 1..N (nuclei wholly in the
    margin are gone, the others keep the shapes they had on the larger canvas); seeds and
    boxes move to canvas coordinates, and only boxes whose centre is on the canvas stay.
    `report["margin"]` counts what the crop kept.
    """
    window = tuple(slice(margin, margin + int(s)) for s in shape)
    for name in ("seed_map", "box_map", "ellipses", "colored_mask", "stage3_input", "image"):
        value = getattr(sample, name)
        if value is not None:
            setattr(sample, name, value[window])
    sample.seeds = sample.seeds - margin
    if sample.boxes is not None:
        centers = sample.boxes.centers - margin
        inside = np.all((centers >= -0.5) & (centers < np.asarray(shape) - 0.5), axis=1)
        kept = sample.boxes.subset(inside)
        sample.boxes = geometry.Boxes(kept.centers - margin, kept.extents, kept.ids, kept.axes)
        if sample.box_colors is not None:
            sample.box_colors = sample.box_colors[inside]
    if sample.labels is not None:
        sample.labels = relabel_sequential(sample.labels[window])[0].astype(np.int32)
        unmatched = 0
        if sample.boxes is not None and len(sample.boxes):
            pixels = np.clip(np.rint(sample.boxes.centers).astype(np.int64), 0, np.asarray(shape) - 1)
            unmatched = int(np.count_nonzero(sample.labels[tuple(pixels.T)] == 0))
        sample.report["margin"] = {
            "pixels": int(margin),
            "boxes_on_canvas": 0 if sample.boxes is None else len(sample.boxes),
            "unmatched_boxes_on_canvas": unmatched,
            "instances_on_canvas": int(sample.labels.max(initial=0)),
        }
    return sample


def run_chain(
    generators: Generators,
    seeds: Sequence[np.ndarray],
    rngs: Sequence[dict[str, np.random.Generator]],
    shape: Sequence[int],
    settings: ChainSettings,
) -> list[Sample]:
    """Generate one sample per seed array (all on a canvas of `shape`).

    Args:
        generators: the loaded chain.
        seeds: per sample, (N, ndim) seed coordinates on the canvas; with
            `settings.margin`, they may lie up to `margin` pixels beyond it.
        rngs: per sample, the generators of `sampling.sample_rngs` (colorings are drawn from
            "colors_stage2" and "colors_stage3", the camera noise from "sensor" and the
            stage-3 generator's noise channels, if it has any, from "texture").
        shape: canvas shape.
        settings: tiling, batching, decoding settings and the margin (generated on
            `shape + 2 margin`, then `crop_sample`).

    Returns:
        One `Sample` per input, in order.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != generators.ndim:
        raise ValueError(
            f"`shape` must have {generators.ndim} sizes for these models. Received: shape={shape}"
        )
    margin = settings.margin
    if not margin:
        return _run_canvas(generators, seeds, rngs, shape, settings)
    canvas = tuple(s + 2 * margin for s in shape)
    shifted = [np.asarray(points, np.float64).reshape(-1, len(shape)) + margin for points in seeds]
    samples = _run_canvas(generators, shifted, rngs, canvas, settings)
    return [crop_sample(sample, margin, shape) for sample in samples]


def _run_canvas(
    generators: Generators,
    seeds: Sequence[np.ndarray],
    rngs: Sequence[dict[str, np.random.Generator]],
    shape: tuple[int, ...],
    settings: ChainSettings,
) -> list[Sample]:
    """`run_chain` on exactly the canvas `shape` (no margin)."""
    r1, r2, r3 = generators.render, generators.render2, generators.render3
    samples = []
    for points in seeds:
        start = time.perf_counter()
        points = np.asarray(points, np.float64).reshape(-1, len(shape))
        inside = np.all((points >= -0.5) & (points < np.asarray(shape) - 0.5), axis=1)
        sample = Sample(points, geometry.render_seed_map(points, shape, radius=r1.seed_radius))
        sample.report["counts"] = {"seeds": int(len(points)), "seeds_off_canvas": int((~inside).sum())}
        _stamp(sample, "seed_map", time.perf_counter() - start)
        samples.append(sample)

    box_maps = _timed_stage(generators.stages[1], samples, [s.seed_map for s in samples], settings, "stage1")
    for sample, box_map, rng in zip(samples, box_maps, rngs):
        start = time.perf_counter()
        sample.box_map = from_network(box_map[..., 0])
        counts = sample.report["counts"]
        if counts["seeds"] == counts["seeds_off_canvas"]:
            # No seed on the canvas: an empty field. Stage 1 never saw an empty seed map in
            # training and paints it flat gray, which would decode to one canvas-sized box.
            sample.box_map = np.zeros_like(sample.box_map)
            sample.report["empty_field"] = True
        sample.boxes, report = _decode_boxes(sample.box_map, r1.bv, settings, sample.seeds, r1.oriented)
        sample.report["decode_box_map"] = report
        sample.report["counts"]["boxes"] = len(sample.boxes)
        _stamp(sample, "decode_box_map", time.perf_counter() - start)
        start = time.perf_counter()
        colors, margin = color_nuclei(sample.boxes, None, r2.color_margin, rng["colors_stage2"])
        sample.report["color_margin_stage2"] = margin
        sample.box_colors = geometry.color_lookup(sample.boxes, colors)
        lut = geometry.color_lut(colors, int(sample.boxes.ids.max(initial=0)) + 1)
        sample.ellipses = geometry.render_representations(
            ("ellipses",), r2, boxes=sample.boxes, shape=shape, lut=lut
        )["ellipses"]
        _stamp(sample, "ellipses", time.perf_counter() - start)

    masks = _timed_stage(generators.stages[2], samples, [s.ellipses for s in samples], settings, "stage2")
    for sample, mask, rng in zip(samples, masks, rngs):
        start = time.perf_counter()
        sample.colored_mask = mask = from_network(mask)
        if len(sample.boxes):
            labels, report = _decode_labels(mask, sample.boxes, sample.box_colors, r2.boundary_width)
        else:  # nothing to shape: stage 2's output on empty ellipses is not decoded into nuclei
            labels, report = np.zeros(shape, np.int32), {"n_instances": 0, "no_boxes": True}
        labels = relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)
        sample.labels = labels
        sample.report["decode_colored_mask"] = report
        sample.report["counts"]["instances"] = int(labels.max(initial=0))
        _stamp(sample, "decode_colored_mask", time.perf_counter() - start)
        start = time.perf_counter()
        final_boxes = geometry.boxes_from_labels(labels, oriented=r3.oriented)
        colors, margin = color_nuclei(final_boxes, labels, r3.color_margin, rng["colors_stage3"])
        sample.report["color_margin_stage3"] = margin
        lut = geometry.color_lut(colors, int(labels.max(initial=0)) + 1)
        sample.stage3_input = geometry.render_representations(
            ("mask",), r3, labels=labels, boxes=final_boxes, lut=lut
        )["mask"]
        _stamp(sample, "stage3_input", time.perf_counter() - start)

    images = _timed_stage(
        generators.stages[3], samples, [s.stage3_input for s in samples], settings, "stage3",
        texture=[rng["texture"] for rng in rngs],
    )  # fmt: skip
    noise = settings.sensor_noise and generators.sensor is not None
    for sample, image, rng in zip(samples, images, rngs):
        sample.image = to_intensity(image[..., 0], generators)
        if noise:  # the generator paints the clean signal; the camera adds its noise
            sample.image = generators.sensor.apply(sample.image, rng["sensor"])
        sample.report["sensor_noise"] = bool(noise)
    return samples
