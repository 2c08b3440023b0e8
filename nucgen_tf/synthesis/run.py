"""A synthesis job (`nucgen synthesize`): three exported generators -> aligned image + instance-mask pairs.

    nucgen synthesize --models runs/exported --n 1000 --out synthetic/
    nucgen synthesize --models M --n 1000 --out S --num_shards 4 --shard_index 2   # one of 4 workers
    nucgen synthesize --models M --seeds_csv my_seeds.csv --shape 520,696 --out S
    nucgen synthesize --n 100 --out S --arrangement fitted --arrangement_data data/bbbc039/train

`--models` holds stage1/, stage2/ and stage3/ (folders written by `nucgen train`); without it
the generators bundled in `nucgen_tf/pretrained/bbbc039_2d` are used. Sample i
draws its seed points from SeedSequence([--seed, i]); stage 1 turns them into a box map,
decoded into boxes; stage 2 turns the colored boxes into a colored mask + boundary, decoded
into labels; stage 3 turns the final labels, re-rendered, into an image on the training
data's intensity scale. A rerun skips samples whose image and mask exist and are readable
(refusing an --out made with other settings); shards split the job by i % num_shards and
produce the same files as one process would. See `nucgen_tf.synthesis` for the pieces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import time

import numpy as np
from absl import logging

from nucgen_tf.io import DataError
from nucgen_tf.postprocess.decode import DECODING
from nucgen_tf.progress import Progress
from nucgen_tf.synthesis import alignment, arrangement_fit, checks, sampling, writers
from nucgen_tf.synthesis.models import (
    STAGE_DIRS,
    Generators,
    content_hash,
    load_generators,
    manifest_arrangement,
    seed_geometry,
)
from nucgen_tf.synthesis.options import SynthesisOptions
from nucgen_tf.synthesis.pipeline import ChainSettings, image_scale, run_chain
from nucgen_tf.synthesis.tiling import round_up

REALISM_JSON, REALISM_PNG = "realism.json", "realism.png"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during synthesis, raised after the finished samples were recorded in the manifest.

    Attributes:
        written: samples of this shard whose files are complete.
        total: samples of this shard.
    """

    def __init__(self, written: int, total: int):
        self.written, self.total = written, total
        super().__init__(
            f"interrupted; {written} of {total} samples written; rerun the same command to resume"
        )


def smallest_canvas(generators: Generators) -> tuple[int, ...]:
    """The smallest canvas per axis that all three generators take.

    A canvas is padded up to a multiple of the divisor, and the U-Net's deepest level holds
    padded / divisor px, which its mirrored k x k convolutions can pad only if it has more
    than k // 2 px (found by trying: the bundled 16-divisor generators fail on 16 px with
    TensorFlow's "paddings must be less than the dimension size" and run on 17). A manifest's
    generator config says which architecture pads where (`generators.smallest_input`);
    without one, the unet3x3 rule on the manifest's divisor applies.
    """
    need = [1] * generators.ndim
    for model in generators.stages.values():
        values = model.manifest.get("config", {}).get("generator")
        if values:
            from nucgen_tf.config import from_dict
            from nucgen_tf.models.config import GeneratorConfig
            from nucgen_tf.models.generators import smallest_input

            sizes = smallest_input(from_dict(GeneratorConfig, values), generators.ndim)
        else:
            sizes = tuple(d + 1 for d in model.divisor)  # unet3x3 with 3x3 kernels
        need = [max(n, s) for n, s in zip(need, sizes)]
    return tuple(need)


def _check_canvas(options: SynthesisOptions, generators: Generators, shape: tuple[int, ...]) -> None:
    """Refuses a --shape or --tile the generators cannot take, before anything is written."""
    need = smallest_canvas(generators)
    divisor = tuple(max(m.divisor[a] for m in generators.stages.values()) for a in range(generators.ndim))
    typical = tuple(round_up(n, d) for n, d in zip(need, divisor))
    if any(s < n for s, n in zip(shape, need)):
        raise ValueError(
            f"--shape {_csv(shape)} is too small for these generators ({options.models}): each axis needs "
            f"at least {_csv(need)} px, e.g. --shape {_csv(typical)}"
        )
    tiles = options.tile if len(options.tile) == len(shape) else options.tile * len(shape)
    for tile, size, d, smallest in zip(tiles, shape, divisor, typical):
        if tile and tile < size and max(d, tile // d * d) < smallest:  # tiles are cut to divisor multiples
            raise ValueError(
                f"--tile {_csv(options.tile)} is too small for these generators: tiles need at least "
                f"{_csv(typical)} px"
            )


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def _seed_config(options: SynthesisOptions, base):
    overrides = {
        "density": options.density,
        "cluster_radius": options.cluster_radius,
        "cluster_size": options.cluster_size,
        "sparse_min_distance": options.sparse_min_distance,
        "crowded_min_distance": options.crowded_min_distance,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _file_hash(path: str) -> str:
    return "sha256:" + hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _arrangement(
    options: SynthesisOptions, generators: Generators | None
) -> tuple[str, arrangement_fit.FittedArrangement | None]:
    """The arrangement drawn from and, for "fitted", its fit.

    The fit comes from --arrangement_fit, is fitted to --arrangement_data, or else is the one
    stage 1 recorded of its training masks; models exported before stage 1 recorded it fall
    back to "mixed" with a warning. Runs before the models are loaded (their ndim and spacing
    come from the stage-1 manifest), so a bad file or folder is reported at once.
    """
    if options.seeds_csv:
        return "csv", None
    if options.arrangement != "fitted":
        return options.arrangement, None
    given = options.arrangement_data or options.arrangement_fit
    if given:
        # The file or folder first: its message should not wait for (or hide behind) the models'.
        arrangement_fit.check_source(options.arrangement_data, options.arrangement_fit)
    fit = arrangement_fit.load_fit(options.arrangement_fit) if options.arrangement_fit else None
    if generators is not None:
        ndim, spacing = generators.ndim, generators.spacing
    else:
        ndim, spacing = seed_geometry(options.models)
    if options.arrangement_data:  # masks are fitted at the models' pixel size (physical distances)
        fit = arrangement_fit.load_or_fit(options.arrangement_data, spacing=tuple(options.spacing) or spacing)
    if not given:
        fit = manifest_arrangement(options.models)
        if fit is None:
            logging.warning(
                "%s: stage 1 carries no arrangement fit (exported before it was recorded); drawing the "
                "mixed artificial arrangements instead (give --arrangement_data to fit real masks)",
                pathlib.Path(options.models) / STAGE_DIRS[0],
            )
            return "mixed", None
    source = given or pathlib.Path(options.models) / STAGE_DIRS[0]
    if fit.ndim != ndim:
        raise DataError(source, f"holds a {fit.ndim}D arrangement fit, but the generators are {ndim}D")
    return "fitted", fit


def _generation_settings(options, generators, shape, seed_config, spacing, arrangement, fit=None) -> dict:
    """What decides a sample's files: a rerun into the same --out must not change any of it."""
    return {
        "models": {k: v["sha256"] for k, v in generators.describe().items()},
        "seed": options.seed,
        "shape": list(shape),
        "arrangement": arrangement,
        # Only with --arrangement fitted, so that folders written before it resume unchanged.
        **({"arrangement_fit": fit.to_dict()} if fit is not None else {}),
        "seed_config": dataclasses.asdict(seed_config),
        "spacing": list(spacing) if spacing else None,
        "seeds_csv": _file_hash(options.seeds_csv) if options.seeds_csv else None,
        "batch": options.batch,
        "tile": list(options.tile),
        "overlap": list(options.overlap),
        "layout": options.layout,
        "prefix": options.prefix,
        "box_threshold": options.box_threshold,
        "min_box_size": options.min_box_size,
        "split_touching": options.split_touching,
        # The stage-2 rule: samples decoded by the old palette-component rule are not mixed in.
        "decoding": DECODING,
        "sensor_noise": options.sensor_noise if generators.sensor is not None else "none",
        # Only when on, so that folders written before the option resume unchanged.
        **({"require_seed": True} if options.require_seed else {}),
        **({"margin": options.margin} if options.margin else {}),
    }


def carried_records(out: pathlib.Path, settings: dict) -> dict[str, dict]:
    """The finished samples' records of the folder's manifests, refusing other settings (a rerun resumes)."""
    records: dict[str, dict] = {}
    for manifest in writers.read_manifests(out):
        diff = writers.settings_mismatch(manifest.get("settings", {}), settings)
        if diff:
            details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
            raise DataError(
                manifest["_path"],
                f"{out} holds samples made with other settings ({details}); use a new --out",
            )
        records.update(manifest.get("samples", {}))
    return records


def synthesize(options: SynthesisOptions, generators: Generators | None = None) -> dict:
    """Run (or resume) a synthesis job.

    Args:
        options: the job.
        generators: the chain of `options.models` loaded already (loading takes ~1 s per
            stage; notebooks and tests reuse it); checked against the folder's content hashes.

    Returns:
        The manifest this process wrote last.
    """
    started = time.perf_counter()
    out = pathlib.Path(options.out)
    if out.exists() and not out.is_dir():  # before the seconds of model loading
        raise DataError(
            out, "--out is a file, not a folder; give a new folder or one written by nucgen synthesize"
        )
    if options.realism_reference and not pathlib.Path(options.realism_reference).is_dir():
        raise DataError(options.realism_reference, "--realism_reference is not a folder")
    arrangement, fit = _arrangement(options, generators)
    if generators is None:
        generators = load_generators(options.models)
    else:
        for k, model in generators.stages.items():
            path = pathlib.Path(options.models) / STAGE_DIRS[k - 1]
            if content_hash(path) != model.sha256:
                raise DataError(path, f"differs from the preloaded generator of {model.path}")
    shape = tuple(options.shape) or generators.patch_shape
    if len(shape) != generators.ndim:
        raise ValueError(
            f"`shape` must have {generators.ndim} sizes for these models. Received: shape={shape}"
        )
    _check_canvas(options, generators, shape)
    seed_config = _seed_config(options, generators.seeds)
    spacing = tuple(options.spacing) or generators.spacing
    csv_seeds = sampling.read_seeds_csv(options.seeds_csv, generators.ndim) if options.seeds_csv else None
    n = options.n if options.n is not None else max(csv_seeds, default=-1) + 1
    if csv_seeds and max(csv_seeds) >= n:
        raise DataError(options.seeds_csv, f"has rows for sample {max(csv_seeds)} but --n={n}")
    layout = writers.Layout(out, options.layout)
    settings = _generation_settings(options, generators, shape, seed_config, spacing, arrangement, fit)
    header = {
        "settings": settings,
        "flags": dataclasses.asdict(options),
        "models": generators.describe(),
        "n": n,
        "shard": {"index": options.shard_index, "num_shards": options.num_shards},
        "seeding": "sample i draws from numpy SeedSequence([seed, i]).spawn(3): seeds, stage-2 and "
        "stage-3 colorings (nucgen_tf.synthesis.sampling.sample_rngs)",
    }
    known = carried_records(out, settings)
    mine = [i for i in range(n) if i % options.num_shards == options.shard_index]
    records, todo, recovered = {}, [], []
    for i in mine:
        name = writers.sample_name(i, options.prefix)
        if not writers.is_complete(layout, name, shape):
            todo.append(i)
        elif name in known:
            records[name] = known[name]
        else:  # written, then killed before the chunk's manifest: rebuild its record from the files
            records[name] = writers.recover_record(layout, name, i, options.seed, options.min_alignment)
            recovered.append(name)
    if recovered:
        logging.warning(
            "%d finished samples had no manifest record (e.g. a run killed mid-chunk); kept them and rebuilt "
            "counts and alignment from their files: %s",
            len(recovered),
            ", ".join(recovered[:10]),
        )
    logging.info(
        "%s: %d samples in this shard, %d done, %d to generate (shape %s, %dD)",
        out,
        len(mine),
        len(records),
        len(todo),
        shape,
        generators.ndim,
    )
    path = writers.manifest_path(out, options.shard_index, options.num_shards)
    canvas = tuple(s + 2 * options.margin for s in shape)
    chain = ChainSettings(
        tile=options.tile,
        overlap=options.overlap,
        batch_size=options.batch,
        box_threshold=options.box_threshold,
        min_box_size=options.min_box_size,
        split_touching=options.split_touching,
        require_seed=options.require_seed,
        sensor_noise=options.sensor_noise == "fitted",
        margin=options.margin,
    )
    if options.sensor_noise == "fitted" and generators.sensor is None:
        logging.warning(
            "%s has no fitted sensor model (exported before it was recorded): images stay noise-free",
            generators.stages[3].path,
        )
    # An empty field is judged against the data set's levels, not Otsu (see alignment).
    empty_level = float(np.mean(image_scale(generators)))
    run = {"computed": 0, "skipped": len(records)}
    manifest = writers.write_manifest(path, {**header, "run": run}, records, len(mine))
    try:
        with Progress(len(mine), f"{out}", "sample", initial=len(records)) as bar:
            for first in range(0, len(todo), options.chunk):
                chunk = todo[first : first + options.chunk]
                rngs = [sampling.sample_rngs(options.seed, i) for i in chunk]
                seeds, kinds = [], []
                for i, rng in zip(chunk, rngs):
                    if csv_seeds is not None:
                        kind, points = "csv", csv_seeds.get(i, np.zeros((0, generators.ndim)))
                    else:
                        # Drawn over the margin too (nuclei cut by the edge), in canvas coordinates.
                        kind, points = sampling.draw_seeds(
                            arrangement, canvas, rng["seeds"], seed_config, spacing, fit=fit
                        )
                        points = points - options.margin
                    kinds.append(kind)
                    seeds.append(points)
                for i, kind, sample in zip(chunk, kinds, run_chain(generators, seeds, rngs, shape, chain)):
                    name = writers.sample_name(i, options.prefix)
                    report = alignment.alignment_report(
                        sample.image, sample.labels, options.min_alignment, empty_threshold=empty_level
                    )
                    unmatched = sample.report.get("decode_colored_mask", {}).get("n_unmatched_boxes", 0)
                    if "margin" in sample.report:  # the boxes and labels left on the canvas
                        unmatched = sample.report["margin"]["unmatched_boxes_on_canvas"]
                    mask_report = checks.mask_checks(
                        sample.labels, sample.boxes, unmatched, options.max_labels_per_box
                    )
                    start = time.perf_counter()
                    files = writers.write_sample(
                        layout, name, sample, options.save_intermediate, options.previews
                    )
                    sample.report["timings"]["write"] = round(time.perf_counter() - start, 6)
                    records[name] = {
                        "index": i,
                        "seed": [options.seed, i],
                        "arrangement": kind,
                        "files": files,
                        "alignment": report,
                        "mask_checks": mask_report,
                        **sample.report,
                    }
                    if mask_report["flagged"]:
                        logging.log_first_n(
                            logging.WARNING,
                            "%s: %.2f labels per stage-1 box > --max_labels_per_box %.2f (shattered nuclei?)",
                            10,
                            name,
                            mask_report["labels_per_box"],
                            options.max_labels_per_box,
                        )
                    if report["flagged"]:  # the first few here, all of them in the summary and the manifest
                        logging.log_first_n(
                            logging.WARNING,
                            "%s: alignment score %.3f < --min_alignment %.3f (iou %.3f, brighter %s)",
                            10,
                            name,
                            report["score"],
                            options.min_alignment,
                            report["iou"],
                            report["brighter_fraction"],
                        )
                run["computed"] += len(chunk)
                run["elapsed_s"] = round(time.perf_counter() - started, 3)
                manifest = writers.write_manifest(path, {**header, "run": run}, records, len(mine))
                bar.update(len(chunk))
    except KeyboardInterrupt as stop:  # every sample in `records` has its files: keep them
        run["computed"] = len(records) - run["skipped"]
        run["elapsed_s"] = round(time.perf_counter() - started, 3)
        writers.write_manifest(path, {**header, "run": run}, records, len(mine))
        raise Interrupted(len(records), len(mine)) from stop
    summary = manifest["summary"]
    if summary["flagged"]:
        logging.warning(
            "%d of %d samples below --min_alignment=%s (mean score %s): %s. A broken or "
            "untrained stage-3 generator looks like this; check the previews.",
            len(summary["flagged"]),
            summary["samples"],
            options.min_alignment,
            summary["alignment_mean"],
            ", ".join(summary["flagged"][:10]),
        )
    if summary["flagged_labels_per_box"]:
        logging.warning(
            "%d of %d samples hold more than --max_labels_per_box=%s labels per stage-1 box: %s. "
            "Stage 2 painted broken shapes there; look at their previews.",
            len(summary["flagged_labels_per_box"]),
            summary["samples"],
            options.max_labels_per_box,
            ", ".join(summary["flagged_labels_per_box"][:10]),
        )
    logging.info(
        "%s: %d computed, %d skipped in %.1f s; %d instances in total, %s labels per box",
        path,
        run["computed"],
        run["skipped"],
        time.perf_counter() - started,
        summary["instances_total"],
        "n/a" if summary["labels_per_box_mean"] is None else f"{summary['labels_per_box_mean']:.3f}",
    )
    complete = options.num_shards == 1
    if options.num_shards > 1:
        merged = writers.merge_shards(out, header, n, options.num_shards)
        if merged is not None:
            complete = True
            logging.info("all %d shards complete: merged into %s", options.num_shards, out / writers.MANIFEST)
    if options.realism_reference and complete:
        write_realism(options.realism_reference, out, layout)
    return manifest


def write_realism(reference: str, out: pathlib.Path, layout: writers.Layout) -> None:
    """The whole run's realism report against a real folder, next to the manifest."""
    from nucgen_tf.realism import format_table
    from nucgen_tf.realism.outputs import write_report

    start = time.perf_counter()
    report, _ = write_report(reference, out, out / REALISM_JSON, out / REALISM_PNG)
    logging.info(
        "realism vs %s (%.1f s): %s, %s\n%s",
        reference, time.perf_counter() - start, out / REALISM_JSON, out / REALISM_PNG, format_table(report),
    )  # fmt: skip
