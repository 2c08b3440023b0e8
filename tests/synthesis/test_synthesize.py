"""`nucgen synthesize` end to end with tiny exported generators (untrained U-Nets and hand-set convs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from nucgen_tf import geometry, io
from nucgen_tf.config import SeedConfig
from nucgen_tf.synthesis import models, sampling, writers
from nucgen_tf.synthesis.options import SynthesisOptions
from nucgen_tf.synthesis.pipeline import ChainSettings, run_chain, run_stage, to_intensity
from nucgen_tf.synthesis.run import synthesize
from tests import tiny_generators

PATCH = {2: (64, 64), 3: (8, 32, 32)}
ODD = {2: (66, 70), 3: (9, 34, 30)}  # not multiples of the divisor 4
SEEDS = {2: SeedConfig(), 3: SeedConfig(density=8.0, sparse_min_distance=10.0, crowded_min_distance=6.0)}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Factory of exported model folders, made once per (kind, ndim)."""
    cache = {}

    def get(kind: str, ndim: int):
        if (kind, ndim) not in cache:
            folder = tmp_path_factory.mktemp(f"{kind}{ndim}d")
            if kind == "untrained":
                tiny_generators.export_untrained_models(
                    folder, PATCH[ndim], base_filters=4, depth=2, seeds=SEEDS[ndim]
                )
            else:
                radius = 5.0 if ndim == 2 else (2.0, 4.0, 4.0)
                tiny_generators.export_reference_models(
                    folder, PATCH[ndim], nucleus_radius=radius, seeds=SEEDS[ndim]
                )
            cache[kind, ndim] = folder
        return cache[kind, ndim]

    return get


@pytest.fixture(scope="session")
def loaded(exported):
    """Factory of loaded chains (loading costs ~1 s per stage), made once per (kind, ndim)."""
    cache = {}

    def get(kind: str, ndim: int):
        if (kind, ndim) not in cache:
            cache[kind, ndim] = models.load_generators(exported(kind, ndim))
        return cache[kind, ndim]

    return get


def _options(models_dir, out, **kw) -> SynthesisOptions:
    return SynthesisOptions(models=str(models_dir), out=str(out), **{"n": 3, **kw})


def _arrays(layout: writers.Layout, names):
    return {
        name: (tifffile.imread(layout.image_path(name)), tifffile.imread(layout.mask_path(name)))
        for name in names
    }


@pytest.mark.parametrize("ndim", [2, 3])
def test_end_to_end_writes_aligned_pairs_from_exactly_the_saved_labels(tmp_path, exported, loaded, ndim):
    models_dir = exported("untrained", ndim)
    manifest = synthesize(_options(models_dir, tmp_path, shape=ODD[ndim], save_intermediate=True))
    pairs = io.list_pairs(tmp_path)  # the images/ + masks/ contract of nucgen's readers
    assert [p.name for p in pairs] == ["sample_000000", "sample_000001", "sample_000002"]
    generators = loaded("untrained", ndim)
    for index, pair in enumerate(pairs):
        record = manifest["samples"][pair.name]
        image, mask = tifffile.imread(pair.image_path), tifffile.imread(pair.mask_path)
        assert image.dtype == np.uint16 and mask.dtype == np.uint16
        assert image.shape == mask.shape == ODD[ndim]
        assert image.max() <= 4095  # DEFAULT_STATS.max_value
        ids = np.unique(mask)
        assert ids.tolist() == list(range(int(mask.max()) + 1)) or ids.tolist() == list(
            range(1, mask.max() + 1)
        )
        assert record["counts"]["instances"] == int(mask.max()) > 0
        assert record["index"] == index and record["seed"] == [0, index]
        assert set(record["timings"]) >= {
            "stage1",
            "stage2",
            "stage3",
            "decode_box_map",
            "decode_colored_mask",
        }
        assert {"iou", "brighter_fraction", "score", "flagged"} <= set(record["alignment"])
        # The stage-3 input is the saved mask, recolored with the sample's own stream ...
        labels = mask.astype(np.int32)
        rng = sampling.sample_rngs(0, index)["colors_stage3"]
        colors = geometry.assign_colors(
            geometry.color_graph(geometry.boxes_from_labels(labels), labels, generators.render3.color_margin),
            rng=rng,
        )
        rendered = geometry.render_colored_mask(labels, geometry.color_lut(colors, int(labels.max()) + 1))
        saved_input = np.moveaxis(tifffile.imread(tmp_path / record["files"]["stage3_input"]), 0, -1)
        np.testing.assert_array_equal(rendered, saved_input)
        # ... and the saved image is what stage 3 makes of it.
        y = run_stage(generators.stages[3], rendered[None], ChainSettings(tile=(1024,), overlap=(64,)))
        np.testing.assert_array_equal(to_intensity(y[0, ..., 0], generators), image)
        seeds = np.loadtxt(tmp_path / record["files"]["seeds"], delimiter=",", skiprows=1, ndmin=2)
        assert (
            seeds.shape == (record["counts"]["seeds"], ndim) or seeds.size == record["counts"]["seeds"] == 0
        )
        assert (tmp_path / record["files"]["preview"]).stat().st_size > 1000
    assert manifest["models"]["stage2"]["sha256"] == models.content_hash(models_dir / "stage2")
    assert manifest["summary"]["samples"] == 3 and manifest["summary"]["complete"]
    assert json.loads((tmp_path / "manifest.json").read_text())["samples"] == manifest["samples"]


@pytest.mark.parametrize("ndim", [2, 3])
def test_reference_chain_turns_each_seed_into_one_bright_nucleus(tmp_path, exported, loaded, ndim):
    seeds = {2: [(0, 15, 15), (0, 45, 40), (1, 30, 30)], 3: [(0, 4, 8, 8), (0, 4, 22, 24), (1, 3, 16, 16)]}[
        ndim
    ]
    header = ["sample", *sampling.AXES[ndim]]
    csv = tmp_path / "seeds.csv"
    io.write_csv(csv, seeds, header)
    options = _options(exported("reference", ndim), tmp_path / "out", n=None, seeds_csv=str(csv))
    manifest = synthesize(options, loaded("reference", ndim))
    assert sorted(manifest["samples"]) == ["sample_000000", "sample_000001"]  # n = max(sample) + 1
    layout = writers.Layout(tmp_path / "out")
    for index in (0, 1):
        name = writers.sample_name(index)
        record = manifest["samples"][name]
        image, mask = (tifffile.imread(p) for p in (layout.image_path(name), layout.mask_path(name)))
        assert mask.shape == PATCH[ndim]  # default canvas: the stage-1 training patch
        points = [s[1:] for s in seeds if s[0] == index]
        assert record["arrangement"] == "csv" and record["counts"]["boxes"] == len(points)
        assert int(mask.max()) == len(points)
        assert sorted(int(mask[tuple(p)]) for p in points) == list(range(1, len(points) + 1))
        assert image[mask > 0].min() > image[mask == 0].max()  # nuclei bright, background dark
        assert not record["alignment"]["flagged"] and record["alignment"]["iou"] > 0.95
        assert record["mask_checks"] == {"labels_per_box": 1.0, "small_label_share": 0.0, "flagged": False}
    assert manifest["summary"]["labels_per_box_mean"] == 1.0
    assert manifest["summary"]["flagged_labels_per_box"] == []


def test_an_oriented_stage_1_gives_nuclei_turned_like_its_ovals(tmp_path):
    """Stage 1 paints blobs turned by 30 degrees and records oriented boxes: the chain decodes
    their axes, draws turned ellipses for stage 2, and the nuclei come out turned and elongated
    (axis-aligned decoding would make them upright)."""
    from skimage import measure

    folder = tiny_generators.export_reference_models(
        tmp_path / "models", (96, 96), nucleus_radius=(14.0, 6.0), turn_deg=30.0
    )
    chain = models.load_generators(folder)
    assert chain.render.oriented
    seeds = [np.array([[30.0, 30.0], [66.0, 62.0]])]
    rngs = [sampling.sample_rngs(0, 0)]
    (sample,) = run_chain(chain, seeds, rngs, (96, 96), ChainSettings())
    assert sample.boxes.oriented and int(sample.labels.max()) == 2
    for region in measure.regionprops(sample.labels):
        assert region.axis_major_length / region.axis_minor_length > 1.8
        # skimage's orientation: angle between the row axis and the major axis.
        assert abs(abs(np.rad2deg(region.orientation)) - 30.0) < 6.0


def test_margin_generates_beyond_the_canvas_and_cuts_nuclei_at_its_edge(loaded):
    """A seed 2 px from the edge: without a margin its nucleus is generated against the edge;
    with one it is generated whole beyond it and cut by the crop, like a real field's."""
    chain = loaded("reference", 2)
    seeds = [np.array([[2.0, 30.0], [32.0, 32.0], [-20.0, 10.0]])]  # the last: in the margin only
    plain, margin = (
        run_chain(chain, seeds, [sampling.sample_rngs(0, 0)], (64, 64), ChainSettings(margin=m))[0]
        for m in (0, 16)
    )
    for sample in (plain, margin):
        assert sample.labels.shape == sample.image.shape == sample.box_map.shape == (64, 64)
        assert sample.ellipses.shape == (64, 64, 3)
    assert int(margin.labels.max()) == 2 and sorted(np.unique(margin.labels).tolist()) == [0, 1, 2]
    assert len(margin.boxes) == 2  # the margin-only box is not on the canvas
    np.testing.assert_allclose(np.sort(margin.boxes.centers[:, 0]), [2.0, 32.0], atol=1.0)
    assert margin.report["margin"] == {
        "pixels": 16, "boxes_on_canvas": 2, "unmatched_boxes_on_canvas": 0, "instances_on_canvas": 2
    }  # fmt: skip
    edge = margin.labels[int(round(margin.boxes.centers[np.argmin(margin.boxes.centers[:, 0]), 0])), 30]
    # Cut by the edge: the nucleus reaches row 0 and keeps its full width there.
    width_at_edge = lambda labels, label: int(np.count_nonzero(labels[0] == label))  # noqa: E731
    assert edge > 0 and width_at_edge(margin.labels, edge) >= width_at_edge(plain.labels, plain.labels[2, 30])
    # The centre nucleus is the same with and without a margin (away from every edge).
    middle = (plain.labels == plain.labels[32, 32], margin.labels == margin.labels[32, 32])
    assert np.array_equal(*middle)


def test_margin_is_a_recorded_setting_with_seeds_over_the_margin(tmp_path, exported, loaded):
    options = _options(exported("reference", 2), tmp_path / "out", n=2, margin=24, previews=False)
    manifest = synthesize(options, loaded("reference", 2))
    assert manifest["settings"]["margin"] == 24
    layout = writers.Layout(tmp_path / "out")
    for name, record in manifest["samples"].items():
        mask = tifffile.imread(layout.mask_path(name))
        assert mask.shape == PATCH[2] and record["margin"]["instances_on_canvas"] == int(mask.max())
        assert record["counts"]["seeds"] >= record["margin"]["boxes_on_canvas"]
    # Another margin into the same folder is refused, not mixed in.
    with pytest.raises(io.DataError, match="margin: 24 -> None"):
        synthesize(_options(exported("reference", 2), tmp_path / "out", n=2, previews=False), loaded("reference", 2))
    # Folders written without a margin do not record one (they resume as before).
    plain = synthesize(_options(exported("reference", 2), tmp_path / "plain", n=1, previews=False), loaded("reference", 2))
    assert "margin" not in plain["settings"]


def test_rerun_skips_finished_samples_and_recomputes_only_a_deleted_one(tmp_path, exported, loaded):
    models_dir, chain = exported("untrained", 2), loaded("untrained", 2)
    synthesize(_options(models_dir, tmp_path, n=4, chunk=2), chain)
    layout = writers.Layout(tmp_path)
    names = [writers.sample_name(i) for i in range(4)]
    before = _arrays(layout, names)
    mtimes = {p: p.stat().st_mtime_ns for n in names for p in (layout.image_path(n), layout.mask_path(n))}
    layout.image_path(names[2]).unlink()
    time.sleep(0.01)
    manifest = synthesize(_options(models_dir, tmp_path, n=4, chunk=2), chain)
    assert manifest["run"]["computed"] == 1 and manifest["run"]["skipped"] == 3
    for path, mtime in mtimes.items():
        changed = path.stat().st_mtime_ns != mtime
        assert changed == (names[2] in path.name), path
    after = _arrays(layout, names)
    for name in names:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name]))
    assert sorted(manifest["samples"]) == names
    # A finished sample without a record (killed before the manifest write) is kept, not redone.
    stripped = json.loads((tmp_path / "manifest.json").read_text())
    original = stripped["samples"].pop(names[1])
    io.write_json(tmp_path / "manifest.json", stripped)
    mtime = layout.image_path(names[1]).stat().st_mtime_ns
    manifest = synthesize(_options(models_dir, tmp_path, n=4, chunk=2), chain)
    assert manifest["run"]["computed"] == 0 and layout.image_path(names[1]).stat().st_mtime_ns == mtime
    record = manifest["samples"][names[1]]
    assert record["recovered"] and record["counts"]["instances"] == int(before[names[1]][1].max())
    assert record["alignment"] == original["alignment"]
    with pytest.raises(io.DataError, match="manifest.json.*seed: 0 -> 1"):
        synthesize(_options(models_dir, tmp_path, n=4, seed=1), chain)


def test_two_shards_make_exactly_the_samples_of_one_run(tmp_path, exported, loaded):
    models_dir, chain = exported("untrained", 2), loaded("untrained", 2)
    whole = synthesize(_options(models_dir, tmp_path / "whole", n=5, chunk=2), chain)
    for k in (1, 0):
        shard = synthesize(
            _options(models_dir, tmp_path / "sharded", n=5, num_shards=2, shard_index=k), chain
        )
        assert sorted(r["index"] for r in shard["samples"].values()) == list(range(k, 5, 2))
    names = [writers.sample_name(i) for i in range(5)]
    a = _arrays(writers.Layout(tmp_path / "whole"), names)
    b = _arrays(writers.Layout(tmp_path / "sharded"), names)
    for name in names:
        for x, y in zip(a[name], b[name]):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    merged = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert sorted(merged["samples"]) == names and merged["summary"]["complete"]
    assert (tmp_path / "sharded" / "manifest.shard-0-of-2.json").is_file()
    for name in names:
        assert merged["samples"][name]["counts"] == whole["samples"][name]["counts"]


def test_cellpose_layout_writes_name_and_name_masks_side_by_side(tmp_path, exported, loaded):
    options = _options(exported("reference", 2), tmp_path, n=2, layout="cellpose", previews=False)
    synthesize(options, loaded("reference", 2))
    tiffs = sorted(p.name for p in tmp_path.glob("*.tif"))
    assert tiffs == [
        "sample_000000.tif",
        "sample_000000_masks.tif",
        "sample_000001.tif",
        "sample_000001_masks.tif",
    ]
    assert not (tmp_path / "images").exists() and not (tmp_path / "previews").exists()
    assert tifffile.imread(tmp_path / "sample_000001_masks.tif").dtype == np.uint16


def _copy_models(source, target):
    shutil.copytree(source, target)
    return target


def test_bad_models_folders_are_named_in_the_error(tmp_path, exported, loaded):
    good = exported("reference", 2)
    with pytest.raises(io.DataError, match=str(tmp_path / "nowhere")):
        models.load_generators(tmp_path / "nowhere")
    missing = _copy_models(good, tmp_path / "missing")
    shutil.rmtree(missing / "stage2")
    with pytest.raises(io.DataError, match=f"{missing / 'stage2'}: folder not found"):
        models.load_generators(missing)
    swapped = _copy_models(good, tmp_path / "swapped")
    shutil.rmtree(swapped / "stage2")
    shutil.copytree(good / "stage3", swapped / "stage2")
    with pytest.raises(io.DataError, match=f"{swapped / 'stage2'}: manifest says stage 3"):
        models.load_generators(swapped)
    mixed = _copy_models(good, tmp_path / "mixed")
    shutil.rmtree(mixed / "stage1")
    shutil.copytree(exported("reference", 3) / "stage1", mixed / "stage1")
    with pytest.raises(io.DataError, match=r"disagree on ndim: .*stage1 is 3D"):
        models.load_generators(mixed)
    with pytest.raises(io.DataError, match=f"{good / 'stage1'}: differs from the preloaded"):
        synthesize(_options(good, tmp_path / "out"), loaded("untrained", 2))


def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "synthesize", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        **kw,
    )


def test_cli_reports_a_bad_models_folder(tmp_path):
    proc = _cli("--models", str(tmp_path / "nope"), "--n", "1", "--out", str(tmp_path / "out"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and f"{tmp_path / 'nope'}: models folder not found" in err


@pytest.mark.slow
def test_sigkilled_run_resumes_without_redoing_recorded_samples(tmp_path, exported, loaded):
    models_dir = exported("untrained", 2)
    out = tmp_path / "out"
    proc = _cli("--models", str(models_dir), "--n", "6", "--chunk", "1", "--out", str(out), "--nopreviews")
    layout = writers.Layout(out)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if layout.image_path(writers.sample_name(1)).exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    recorded = json.loads((out / "manifest.json").read_text())["samples"]
    finished = [p.stem for p in (out / "images").glob("*.tif")]
    assert 1 <= len(recorded) <= len(finished) < 6 and set(recorded) <= set(finished)
    mtimes = {n: layout.image_path(n).stat().st_mtime_ns for n in finished}
    manifest = synthesize(_options(models_dir, out, n=6, chunk=1, previews=False), loaded("untrained", 2))
    assert manifest["summary"]["complete"] and manifest["run"]["skipped"] == len(finished)
    assert {n: layout.image_path(n).stat().st_mtime_ns for n in finished} == mtimes
    assert len(io.list_pairs(out)) == 6


def test_a_sample_without_seeds_is_an_empty_field(loaded):
    chain = loaded("untrained", 2)  # untrained nets paint noise for any input, empty or not
    rngs = [sampling.sample_rngs(0, i) for i in range(2)]
    seeds = [np.zeros((0, 2)), np.array([[100.0, 100.0]])]  # none, and one off the canvas
    samples = run_chain(chain, seeds, rngs, PATCH[2], ChainSettings())
    for sample in samples:
        assert sample.report["empty_field"] and sample.report["counts"]["boxes"] == 0
        assert sample.labels.shape == PATCH[2] and not sample.labels.any()
        assert sample.image.shape == PATCH[2]


def test_require_seed_drops_the_pieces_stage_1_painted_away_from_seeds(loaded, monkeypatch):
    from nucgen_tf.synthesis import pipeline

    chain = loaded("reference", 2)
    seeds = [np.array([[15.0, 15.0], [45.0, 40.0]])]
    # Stage 1 as a short-trained one behaves: an oval at each seed plus one where no seed is.
    ovals = geometry.Boxes(np.array([[15.0, 15.0], [45.0, 40.0], [20.0, 48.0]]), np.full((3, 2), 12.0))
    invented = 2.0 * geometry.render_box_map(ovals, PATCH[2])[None, ..., None] - 1.0

    def stage(model, stored, settings, texture=None):
        return invented if model is chain.stages[1] else run_stage(model, stored, settings, texture)

    monkeypatch.setattr(pipeline, "run_stage", stage)
    rngs = [sampling.sample_rngs(0, 0)]
    (every,) = run_chain(chain, seeds, rngs, PATCH[2], ChainSettings())
    (seeded,) = run_chain(chain, seeds, rngs, PATCH[2], ChainSettings(require_seed=True))
    assert len(every.boxes) == 3 and int(every.labels.max()) == 3
    assert len(seeded.boxes) == 2 and int(seeded.labels.max()) == 2
    assert seeded.report["decode_box_map"]["dropped_seedless"] == 1
    assert "dropped_seedless" not in every.report["decode_box_map"]
    assert seeded.labels[20, 48] == 0 and every.labels[20, 48] > 0


def test_bundle_command_writes_anywhere_with_out(exported, tmp_path):
    """`python -m nucgen_tf.commands.bundle --out DIR` compacts the three stages outside the
    package; a later bundle copies stages that are already compact as they are."""
    out = tmp_path / "bundles" / "mine"
    command = ["-m", "nucgen_tf.commands.bundle", f"--models={exported('untrained', 2)}", f"--out={out}"]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "bundle.json").read_text())
    assert sorted(record["stages"]) == ["stage1", "stage2", "stage3"] and record["bytes"] > 0
    chain = models.load_generators(out)
    assert all(chain.stages[k].manifest["format"] == "weights-float16" for k in (1, 2, 3))

    # Replacing one stage of that bundle: the other stages, already float16, are copied unchanged.
    from nucgen_tf.pretrained.bundle import bundle

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copytree(exported("untrained", 2) / "stage1", mixed / "stage1")  # a SavedModel
    for name in ("stage2", "stage3"):
        (mixed / name).symlink_to(out / name)
    second = tmp_path / "second"
    record = bundle(mixed, second)
    for name in ("stage2", "stage3"):
        for file in (out / name).iterdir():
            assert (second / name / file.name).read_bytes() == file.read_bytes()
        assert record["stages"][name]["source"] == str((out / name).resolve())
    assert json.loads((second / "stage1" / "nucgen_manifest.json").read_text())["format"] == "weights-float16"
    # Rebundling in place leaves the compact stages where they are.
    assert bundle(second, second)["stages"]["stage2"]["bytes"] == record["stages"]["stage2"]["bytes"]
    assert models.load_generators(second).stages[2].manifest["format"] == "weights-float16"


def test_realism_reference_writes_the_runs_report_next_to_the_manifest(tmp_path, exported, loaded):
    """The report compares the run with a real folder; here a second run plays the real data."""
    reference = tmp_path / "reference"
    synthesize(_options(exported("reference", 2), reference, n=4, seed=7), loaded("reference", 2))
    out = tmp_path / "out"
    options = _options(exported("reference", 2), out, n=4, realism_reference=str(reference))
    synthesize(options, loaded("reference", 2))
    report = json.loads((out / "realism.json").read_text())
    assert report["real"] == str(reference) and report["synthetic"] == str(out)
    solidity = report["statistics"]["solidity"]
    assert solidity["real_median"] > 0.8 and solidity["synthetic_median"] > 0.8
    assert (out / "realism.png").stat().st_size > 1000


def test_a_missing_realism_reference_is_refused_before_any_work(tmp_path, exported):
    options = _options(exported("reference", 2), tmp_path / "out", realism_reference=str(tmp_path / "nope"))
    with pytest.raises(io.DataError, match="nope.*not a folder"):
        synthesize(options)
    assert not (tmp_path / "out").exists()


def test_fitted_sensor_noise_is_added_to_images_and_can_be_turned_off(tmp_path, exported):
    models_dir = tmp_path / "models"
    shutil.copytree(exported("reference", 2), models_dir)
    manifest_path = models_dir / "stage3" / "nucgen_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sensor"] = {"model": "poisson-gaussian", "gain": 0.5, "offset_variance": 4.0, "max_value": 4095}
    manifest_path.write_text(json.dumps(manifest))
    chain = models.load_generators(models_dir)
    assert chain.sensor is not None and chain.sensor.gain == 0.5
    noisy = synthesize(_options(models_dir, tmp_path / "noisy", n=2), chain)
    clean = synthesize(_options(models_dir, tmp_path / "clean", n=2, sensor_noise="none"), chain)
    assert noisy["settings"]["sensor_noise"] == "fitted" and clean["settings"]["sensor_noise"] == "none"
    for name in ("sample_000000", "sample_000001"):
        (a, mask), (b, same_mask) = (
            _arrays(writers.Layout(tmp_path / kind), [name])[name] for kind in ("noisy", "clean")
        )
        np.testing.assert_array_equal(mask, same_mask)  # noise touches images only
        background = (mask == 0) & (b == np.median(b[mask == 0]))  # flat clean background
        assert b[background].std() == 0
        residual = a[background].astype(float) - b[background]
        expected = np.sqrt(0.5 * float(np.median(b[mask == 0])) + 4.0)
        assert residual.std() == pytest.approx(expected, rel=0.15)
        assert noisy["samples"][name]["sensor_noise"] and not clean["samples"][name]["sensor_noise"]
