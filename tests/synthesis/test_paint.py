"""`nucgen paint`: stage 3 alone on given masks, with tiny hand-set (reference) exported generators."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from nucgen_tf import geometry, io
from nucgen_tf.synthesis import models, sampling
from nucgen_tf.synthesis.paint import PaintOptions, paint
from nucgen_tf.synthesis.pipeline import ChainSettings, run_stage, to_intensity
from tests import tiny_generators
from tests.helpers import write_disc_pairs

PATCH = {2: (64, 64), 3: (8, 32, 32)}
# Canvases that are not multiples of the divisor 4, and the grid cell of their nuclei.
CANVAS = {2: ((66, 70), 16), 3: ((10, 34, 30), 10)}
SENSOR = {"model": "poisson-gaussian", "gain": 2.0, "offset_variance": 9.0, "max_value": 4095}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Factory of reference model folders, made once per (ndim, with a fitted camera)."""
    cache = {}

    def get(ndim: int, sensor: bool = False):
        if (ndim, sensor) not in cache:
            folder = tmp_path_factory.mktemp(f"reference{ndim}d")
            radius = 5.0 if ndim == 2 else (2.0, 4.0, 4.0)
            tiny_generators.export_reference_models(folder, PATCH[ndim], nucleus_radius=radius)
            if sensor:
                path = folder / "stage3" / "nucgen_manifest.json"
                path.write_text(json.dumps({**json.loads(path.read_text()), "sensor": SENSOR}))
            cache[ndim, sensor] = folder
        return cache[ndim, sensor]

    return get


def _masks(root, ndim: int):
    shape, cell = CANVAS[ndim]
    return write_disc_pairs(root, seeds=[0, 1], shape=shape, cell=cell)


def _options(masks, out, models_dir, **kw) -> PaintOptions:
    return PaintOptions(masks=str(masks), out=str(out), models=str(models_dir), **kw)


@pytest.mark.parametrize("ndim", [2, 3])
def test_painted_images_are_aligned_with_exactly_the_input_labels(tmp_path, reference, ndim):
    data = _masks(tmp_path / "data", ndim)
    gappy = io.read_labels(data / "masks" / "d01.tif") * 3  # labels 3, 6, ...: written as 1..N
    io.write_labels(data / "masks" / "d01.tif", gappy)
    models_dir = reference(ndim)
    manifest = paint(_options(data, tmp_path / "out", models_dir, sensor_noise="none"))
    painter = models.load_image_stage(models_dir)
    pairs = io.list_pairs(tmp_path / "out")
    assert [p.name for p in pairs] == ["d00", "d01"]
    for index, pair in enumerate(pairs):
        record = manifest["samples"][pair.name]
        image, mask = tifffile.imread(pair.image_path), tifffile.imread(pair.mask_path)
        labels = io.read_labels(data / "masks" / f"{pair.name}.tif")
        np.testing.assert_array_equal(mask, labels)
        assert mask.max() == len(np.unique(mask)) - 1 > 0
        assert image.dtype == np.uint16 and image.shape == CANVAS[ndim][0]
        assert record["alignment"]["score"] > 0.9 and not record["alignment"]["flagged"]
        assert record["index"] == index and record["seed"] == [0, index]
        assert record["counts"]["instances"] == int(mask.max())
        # The stage-3 input is what synthesis renders from final labels, with the sample's stream.
        rng = sampling.sample_rngs(0, index)["colors_stage3"]
        graph = geometry.color_graph(geometry.boxes_from_labels(labels), labels, painter.render.color_margin)
        lut = geometry.color_lut(geometry.assign_colors(graph, rng=rng), int(labels.max()) + 1)
        rendered = geometry.render_colored_mask(labels, lut, painter.render.boundary_width)
        y = run_stage(painter.model, rendered[None], ChainSettings(tile=(1024,), overlap=(64,)))
        np.testing.assert_array_equal(to_intensity(y[0, ..., 0], painter), image)
        assert (tmp_path / "out" / record["files"]["preview"]).stat().st_size > 500
    assert manifest["models"]["stage3"]["sha256"] == models.content_hash(models_dir / "stage3")
    assert manifest["settings"]["command"] == "paint" and manifest["summary"]["complete"]


def test_tiny_canvases_are_padded_and_tiles_match_one_pass(tmp_path, reference):
    folder = tmp_path / "masks"
    tiny = np.zeros((3, 41), np.int32)  # 3 px < the 5 px the network takes: padded, cropped back
    tiny[:, 10:17] = 1
    io.write_labels(folder / "tiny.tif", tiny)
    big = io.read_labels(_masks(tmp_path / "data", 2) / "masks" / "d01.tif")
    io.write_labels(folder / "big.tif", big)
    one_pass = paint(_options(folder, tmp_path / "one", reference(2), sensor_noise="none"))
    tiled = paint(
        _options(folder, tmp_path / "tiled", reference(2), sensor_noise="none", tile=(32,), overlap=(16,))
    )
    image = io.read_image(tmp_path / "one" / "images" / "tiny.tif")
    assert image.shape == (3, 41) and image[:, 10:17].min() > image[:, 25:].max()
    assert one_pass["samples"]["tiny"]["alignment"]["score"] == pytest.approx(1.0)
    a = io.read_image(tmp_path / "one" / "images" / "big.tif").astype(int)
    b = io.read_image(tmp_path / "tiled" / "images" / "big.tif").astype(int)
    assert a.shape == b.shape == CANVAS[2][0] and np.abs(a - b).max() <= 1  # a 1x1 conv: no seams
    assert tiled["settings"]["tile"] == [32]


def test_rerun_skips_finished_masks_and_other_settings_are_refused(tmp_path, reference):
    data = _masks(tmp_path / "data", 2)
    out = tmp_path / "out"
    paint(_options(data, out, reference(2)))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    (out / "images" / "d01.tif").unlink()
    again = paint(_options(data, out, reference(2)))
    assert again["run"] == {"computed": 1, "skipped": 1, "elapsed_s": again["run"]["elapsed_s"]}
    assert (out / "images" / "d00.tif").stat().st_mtime_ns == before[out / "images" / "d00.tif"]
    assert sorted(again["samples"]) == ["d00", "d01"]
    with pytest.raises(io.DataError, match=r"other settings \(seed: 0 -> 1\); use a new --out"):
        paint(_options(data, out, reference(2), seed=1))


def test_cellpose_layout_masks_are_read_and_their_images_ignored(tmp_path, reference):
    data = _masks(tmp_path / "data", 2)
    folder = tmp_path / "cellpose"
    for pair in io.list_pairs(data):
        io.write_tiff(folder / f"{pair.name}.tif", io.read_image(pair.image_path))
        io.write_labels(folder / f"{pair.name}_masks.tif", io.read_labels(pair.mask_path))
    manifest = paint(_options(folder, tmp_path / "out", reference(2)))
    assert sorted(manifest["samples"]) == ["d00", "d01"]
    for pair in io.list_pairs(tmp_path / "out"):
        np.testing.assert_array_equal(
            io.read_labels(pair.mask_path), io.read_labels(folder / f"{pair.name}_masks.tif")
        )


def test_sensor_noise_changes_only_the_images_by_the_fitted_amount(tmp_path, reference):
    data = _masks(tmp_path / "data", 2)
    made = {}
    for noise in ("fitted", "none"):
        manifest = paint(_options(data, tmp_path / noise, reference(2, sensor=True), sensor_noise=noise))
        assert manifest["settings"]["sensor_noise"] == noise
        made[noise] = [io.read_pair(p) for p in io.list_pairs(tmp_path / noise)]
    for (noisy, mask), (clean, same_mask) in zip(made["fitted"], made["none"]):
        np.testing.assert_array_equal(mask, same_mask)
        level = float(np.median(clean[mask == 0]))
        flat = (mask == 0) & (clean == level)
        assert flat.sum() > 1000
        expected = np.sqrt(SENSOR["gain"] * level + SENSOR["offset_variance"])
        assert (noisy[flat].astype(float) - clean[flat]).std() == pytest.approx(expected, rel=0.1)


def test_load_image_stage_takes_a_models_folder_or_the_export_and_refuses_others(tmp_path, reference):
    folder = reference(2)
    assert (
        models.load_image_stage(folder).model.sha256
        == models.load_image_stage(folder / "stage3").model.sha256
    )
    with pytest.raises(io.DataError, match="no stage3/ and no nucgen_manifest.json"):
        models.load_image_stage(tmp_path)
    with pytest.raises(io.DataError, match="manifest says stage 1, but the folder is used as stage 3"):
        models.load_image_stage(folder / "stage1")


def _nucgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "paint", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_end_to_end_and_one_line_messages_for_bad_folders(tmp_path, reference):
    data = _masks(tmp_path / "data", 2)
    out = tmp_path / "out"
    done = _nucgen(f"--masks={data}", f"--out={out}", f"--models={reference(2)}", "--seed=4")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 4 and manifest["summary"]["samples"] == 2
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["d00.png", "d01.png"]
    for masks, problem in (
        (tmp_path / "nowhere", "folder not found"),
        (data / "images", "holds intensities"),
    ):
        failed = _nucgen(f"--masks={masks}", f"--out={tmp_path / 'bad'}", f"--models={reference(2)}")
        assert failed.returncode != 0 and "Traceback" not in failed.stderr
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith(f"nucgen paint: {masks}: ") and problem in last
        assert failed.stderr.count(str(masks)) == 1
