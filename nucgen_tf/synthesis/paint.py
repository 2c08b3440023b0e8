"""A paint job (`nucgen paint`): stage 3 alone on your own masks -> aligned image + instance-mask pairs.

    nucgen paint --masks my_data/train --out painted/
    nucgen paint --masks cellpose_folder --models runs/bbbc039/models --out painted/ --sensor_noise none

`--masks` is a folder of instance-label TIFFs, a data folder with masks/ (its images/ are
ignored) or a Cellpose-layout folder (`<name>_masks.tif`). Mask k (in name order) is
colored exactly as synthesis colors its final labels (`pipeline.color_nuclei`, the stage-3
manifest's margin, the stream "colors_stage3" of SeedSequence([--seed, k])), rendered as
the stage-3 input, painted by the stage-3 generator (tiled on large canvases, padded to its
size multiple; a generator with noise channels draws them from the stream "texture"), put on
the training data's intensity scale and given the fitted camera noise (stream "sensor").
Writes images/, masks/ (the input labels, 1..N), previews/ and manifest.json; a rerun skips
finished masks and refuses other settings. `paint_labels` is
the one place where given labels are painted: the r+p2p and p+CycleGAN baselines use it.

It reuses synthesis's pieces and its manifest format; its flags are in `nucgen_tf.commands`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
from absl import logging

from nucgen_tf import geometry, io, viz
from nucgen_tf.io import DataError
from nucgen_tf.synthesis import alignment, sampling, writers
from nucgen_tf.synthesis.models import ImageStage, load_image_stage
from nucgen_tf.synthesis.options import SENSOR_NOISE
from nucgen_tf.synthesis.pipeline import ChainSettings, color_nuclei, image_scale, run_stage, to_intensity
from nucgen_tf.synthesis.run import carried_records, smallest_canvas, write_realism

COMMAND = "paint"


@dataclasses.dataclass(frozen=True)
class PaintOptions:
    """A paint job.

    Attributes:
        masks: folder of label TIFFs, a data folder with masks/, or a Cellpose-layout folder.
        out: output folder.
        models: a folder holding stage3/, or a stage-3 export.
        seed: base seed; mask k (in name order) draws from SeedSequence([seed, k]).
        tile, overlap, batch: as `nucgen synthesize` (large canvases in blended tiles).
        sensor_noise: "fitted" draws the stage-3 manifest's camera noise; "none" keeps the
            generator's clean images.
        previews: write previews/<name>.png (image + contours).
        min_alignment: flag samples whose alignment score is lower.
        realism_reference: optional real folder; its realism report goes next to the manifest.
    """

    masks: str
    out: str
    models: str
    seed: int = 0
    tile: tuple[int, ...] = (1024,)
    overlap: tuple[int, ...] = (64,)
    batch: int = 1
    sensor_noise: str = "fitted"
    previews: bool = True
    min_alignment: float = 0.5
    realism_reference: str | None = None

    def __post_init__(self):
        for name in ("tile", "overlap"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.seed < 0:
            raise ValueError(f"`seed` must be >= 0. Received: seed={self.seed}")
        if self.batch < 1:
            raise ValueError(f"`batch` must be >= 1. Received: batch={self.batch}")
        if not self.tile or min(self.tile) < 0 or not self.overlap or min(self.overlap) < 0:
            raise ValueError(
                f"`tile` and `overlap` must be >= 0. Received: tile={self.tile}, overlap={self.overlap}"
            )
        if self.sensor_noise not in SENSOR_NOISE:
            raise ValueError(f"`sensor_noise` must be one of {SENSOR_NOISE}. Received: {self.sensor_noise!r}")


@dataclasses.dataclass(frozen=True)
class Painted:
    """One painted mask: `image` on the data's intensity scale, the stage-3 input, a JSON report."""

    image: np.ndarray
    stage3_input: np.ndarray
    report: dict


def paint_labels(
    painter: ImageStage,
    labels: np.ndarray,
    colors_rng: np.random.Generator,
    sensor_rng: np.random.Generator,
    settings: ChainSettings,
    texture_rng: np.random.Generator | None = None,
) -> Painted:
    """Paint instance labels with stage 3, as synthesis paints its final labels.

    Args:
        painter: the loaded stage 3 (`models.load_image_stage`, or a chain's stage 3).
        labels: (*spatial) int labels, 0 = background, any canvas size (padded with
            background up to what the network takes, cropped back).
        colors_rng: draws the palette coloring (synthesis: the sample's "colors_stage3").
        sensor_rng: draws the camera noise (synthesis: "sensor"); may be `colors_rng`.
        settings: tiling, batching and `sensor_noise`.
        texture_rng: draws the noise channels of a generator that takes them (synthesis:
            "texture"), after the coloring and before the camera noise; None = `sensor_rng`.

    Returns:
        The image, in the dtype and scale of the generator's training images.
    """
    labels = np.asarray(labels)
    if labels.ndim != painter.ndim:
        raise ValueError(
            f"`labels` must be {painter.ndim}D for this generator. Received: shape={labels.shape}"
        )
    boxes = geometry.boxes_from_labels(labels, oriented=painter.render.oriented)
    colors, margin = color_nuclei(boxes, labels, painter.render.color_margin, colors_rng)
    lut = geometry.color_lut(colors, int(labels.max(initial=0)) + 1)
    stage3_input = np.asarray(
        geometry.render_colored_mask(labels, lut, painter.render.boundary_width), np.float32
    )
    # Stored-range 0 is the network's -1, the background `run_tiled` pads with too.
    grow = [(0, max(n - s, 0)) for n, s in zip(smallest_canvas(painter), labels.shape)]
    padded = np.pad(stage3_input, grow + [(0, 0)]) if any(g for _, g in grow) else stage3_input
    texture = [sensor_rng if texture_rng is None else texture_rng]
    y = run_stage(painter.model, padded[None], settings, texture)[0, ..., 0]
    image = to_intensity(y[tuple(slice(0, s) for s in labels.shape)], painter)
    noise = settings.sensor_noise and painter.sensor is not None
    if noise:  # the generator paints the clean signal; the camera adds its noise
        image = painter.sensor.apply(image, sensor_rng)
    return Painted(image, stage3_input, {"color_margin_stage3": margin, "sensor_noise": bool(noise)})


def write_pair(
    layout: writers.Layout, name: str, image: np.ndarray, labels: np.ndarray, preview: bool
) -> dict:
    """Write a painted pair (+ preview: image + contours); the image last, so it marks a done pair.

    Returns:
        {kind: path relative to the layout root}.
    """
    files = {}
    io.write_labels(layout.mask_path(name), labels)
    files["mask"] = layout.relative(layout.mask_path(name))
    if preview:
        shown = viz.overlay_contours(viz.display_range(image), labels)
        io.write_png(layout.preview_path(name), viz.panel_grid([shown], labels.ndim))
        files["preview"] = layout.relative(layout.preview_path(name))
    io.write_tiff(layout.image_path(name), image)
    files["image"] = layout.relative(layout.image_path(name))
    return files


def _settings(options: PaintOptions, painter: ImageStage, masks: pathlib.Path) -> dict:
    """What decides a sample's files: a rerun into the same --out must not change any of it."""
    return {
        "command": COMMAND,
        "masks": str(masks.resolve()),
        "models": {"stage3": painter.model.sha256},
        "seed": options.seed,
        "tile": list(options.tile),
        "overlap": list(options.overlap),
        "batch": options.batch,
        "sensor_noise": options.sensor_noise if painter.sensor is not None else "none",
    }


def _carried(out: pathlib.Path, settings: dict) -> dict[str, dict]:
    """Records of an --out written before with the same settings (synthesis's check)."""
    for manifest in writers.read_manifests(out):
        if manifest.get("settings", {}).get("command") != COMMAND:
            raise DataError(
                manifest["_path"],
                f"{out} holds samples of nucgen synthesize, not of nucgen paint; use a new --out",
            )
    return carried_records(out, settings)


def paint(options: PaintOptions) -> dict:
    """Run (or resume) a paint job.

    Returns:
        The manifest written last.

    Raises:
        DataError: a missing or bad mask folder or file, a mask whose rank differs from the
            generator's, an --out that is a file or holds other settings.
    """
    from nucgen_tf.eval.evaluate import label_files, read_checked_labels

    started = time.perf_counter()
    out = pathlib.Path(options.out)
    if out.exists() and not out.is_dir():
        raise DataError(
            out, "--out is a file, not a folder; give a new folder or one written by nucgen paint"
        )
    if options.realism_reference and not pathlib.Path(options.realism_reference).is_dir():
        raise DataError(options.realism_reference, "--realism_reference is not a folder")
    masks = label_files(options.masks)  # before the seconds of model loading
    painter = load_image_stage(options.models)
    if options.sensor_noise == "fitted" and painter.sensor is None:
        logging.warning(
            "%s has no fitted sensor model (exported before it was recorded): images stay noise-free",
            painter.model.path,
        )
    settings = _settings(options, painter, pathlib.Path(options.masks))
    known = _carried(out, settings)
    layout = writers.Layout(out)
    header = {
        "settings": settings,
        "flags": dataclasses.asdict(options),
        "models": {"stage3": painter.model.describe()},
        "n": len(masks),
        "seeding": "mask k (in name order) draws from numpy SeedSequence([seed, k]): its coloring from the "
        "stream 'colors_stage3', its camera noise from 'sensor', the generator's noise channels (if any) "
        "from 'texture' (nucgen_tf.synthesis.sampling.sample_rngs)",
    }
    chain = ChainSettings(
        tile=options.tile,
        overlap=options.overlap,
        batch_size=options.batch,
        sensor_noise=options.sensor_noise == "fitted",
    )
    empty_level = float(np.mean(image_scale(painter)))  # an empty field is judged as synthesis does
    path = writers.manifest_path(out)
    records: dict[str, dict] = {}
    run = {"computed": 0, "skipped": 0}
    for index, (name, source) in enumerate(masks.items()):
        labels = read_checked_labels(source, painter.ndim)
        if writers.is_complete(layout, name, labels.shape):
            records[name] = known.get(name) or writers.recover_record(
                layout, name, index, options.seed, options.min_alignment
            )
            run["skipped"] += 1
            continue
        rngs = sampling.sample_rngs(options.seed, index)
        start = time.perf_counter()
        painted = paint_labels(
            painter, labels, rngs["colors_stage3"], rngs["sensor"], chain, texture_rng=rngs["texture"]
        )
        seconds = time.perf_counter() - start
        report = alignment.alignment_report(
            painted.image, labels, options.min_alignment, empty_threshold=empty_level
        )
        records[name] = {
            "index": index,
            "seed": [options.seed, index],
            "source": str(source),
            "files": write_pair(layout, name, painted.image, labels, options.previews),
            "counts": {"instances": int(labels.max(initial=0))},
            "alignment": report,
            "timings": {"stage3": round(seconds, 6)},
            **painted.report,
        }
        if report["flagged"]:
            logging.log_first_n(logging.WARNING, "%s: alignment score %.3f < --min_alignment %.3f", 10,
                                name, report["score"], options.min_alignment)  # fmt: skip
        run["computed"] += 1
        run["elapsed_s"] = round(time.perf_counter() - started, 3)
        writers.write_manifest(path, {**header, "run": run}, records, len(masks))
    run["elapsed_s"] = round(time.perf_counter() - started, 3)
    manifest = writers.write_manifest(path, {**header, "run": run}, records, len(masks))
    summary = manifest["summary"]
    if summary["flagged"]:
        logging.warning(
            "%d of %d images below --min_alignment=%s: %s. A broken or untrained stage-3 generator, or "
            "masks unlike its training masks, look like this; check the previews.",
            len(summary["flagged"]), summary["samples"], options.min_alignment,
            ", ".join(summary["flagged"][:10]),
        )  # fmt: skip
    logging.info("%s: %d painted, %d skipped in %.1f s; %d nuclei, mean alignment %s", path, run["computed"],
                 run["skipped"], time.perf_counter() - started, summary["instances_total"],
                 summary["alignment_mean"])  # fmt: skip
    if options.realism_reference:
        write_realism(options.realism_reference, out, layout)
    return manifest
