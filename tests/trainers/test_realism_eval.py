"""Realism checks during training: what each stage measures, the best checkpoint, which one is exported."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nucgen_tf import geometry
from nucgen_tf.config import NormConfig, RenderConfig
from nucgen_tf.data.normalize import IntensityStats, normalize
from nucgen_tf.exported.generator import load_generator
from nucgen_tf.exported.manifest import read_manifest
from nucgen_tf.io import DataError
from nucgen_tf.synthesis import pipeline
from nucgen_tf.trainers import realism_eval, stages
from nucgen_tf.trainers.config import EvalConfig, StageConfig
from tests.conftest import _require
from tests.trainers.test_training_runs import _scalars_and_images, _tiny

CROP = 64
NAMES = {
    1: ("seeds_with_box", "boxes_without_seed", "boxes_per_seed", "box_size", "box_aspect_ratio"),
    2: (*realism_eval.MASK_DISTANCES, "labels_per_box"),
    3: realism_eval.IMAGE_DISTANCES,
}
DISTANCES = {
    1: ("box_size", "box_aspect_ratio"),
    2: realism_eval.MASK_DISTANCES,
    3: realism_eval.IMAGE_DISTANCES,
}


@pytest.fixture(scope="module")
def bbbc039_val(data_root):
    return _require(data_root / "bbbc039" / "val")


@pytest.fixture(scope="module")
def val_fields(bbbc039_val):
    return realism_eval.load_fields(bbbc039_val, 2, 128)[:3]


def _with_eval(cfg: StageConfig, data, **kw) -> StageConfig:
    return dataclasses.replace(cfg, evaluation=EvalConfig(data=str(data), crop=CROP, **kw))


def _lines(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / realism_eval.LOG).read_text().splitlines()]


# ----- helpers with known answers -----


def test_centre_crop_and_load_fields(bbbc039_val):
    assert realism_eval.centre_crop((10, 7), 4) == (slice(3, 7), slice(1, 5))
    assert realism_eval.centre_crop((3, 8, 8), 4) == (slice(0, 3), slice(2, 6), slice(2, 6))
    assert realism_eval.centre_crop((5, 6), 0) == (slice(0, 5), slice(0, 6))
    fields = realism_eval.load_fields(bbbc039_val, 2, CROP)
    assert len(fields) == 10
    for image, labels in fields:
        assert image.shape == labels.shape == (CROP, CROP) and labels.dtype == np.int32
        assert labels.max() == len(np.unique(labels)) - 1  # consecutive ids after the crop


def test_seeds_in_boxes_and_box_shape():
    boxes = geometry.Boxes(centers=[[5.0, 5.0], [20.0, 30.0]], extents=[[5.0, 3.0], [2.0, 8.0]])
    seeds = np.array([[7.0, 6.0], [7.6, 5.0], [20.0, 26.0], [50.0, 50.0]])
    np.testing.assert_array_equal(
        realism_eval.seeds_in_boxes(seeds, boxes),
        [[True, False], [False, False], [False, True], [False, False]],
    )
    size, aspect = realism_eval.box_shape(boxes)
    np.testing.assert_allclose(size, [15.0, 16.0])
    np.testing.assert_allclose(aspect, [5 / 3, 4.0])
    assert realism_eval.box_shape(geometry.Boxes.empty(3))[0].shape == (0,)


def test_real_fields_without_a_statistic_are_refused(val_fields):
    edge_only = [(image[:8], labels[:8]) for image, labels in val_fields]  # every nucleus cut by the edge
    with pytest.raises(ValueError, match=r"no real values of \['area'"):
        realism_eval.MaskEvaluator(edge_only, RenderConfig(), (4, 4))


def test_mean_distance():
    assert realism_eval.mean_distance({"a": 1.0, "b": 2.0}) == 1.5
    assert realism_eval.mean_distance({"a": 1.0, "b": None}) == np.inf
    assert realism_eval.mean_distance({"a": np.nan}) == np.inf


def _replay(outputs):
    """A fake generator returning `outputs` (network range, one per call) in order."""
    queue = list(outputs)
    return lambda x: queue.pop(0)[None]


def _background(channels: int):
    """A fake generator painting background only, on the three 128 x 128 fields."""
    return _replay(np.full((128, 128, channels), -1.0, np.float32) for _ in range(3))


def test_stage1_check_of_the_true_box_maps_is_perfect(val_fields):
    render = RenderConfig()
    evaluate = realism_eval.BoxEvaluator(val_fields, render, (4, 4))
    truth = [
        pipeline.to_network(
            geometry.render_box_map(geometry.boxes_from_labels(labels), labels.shape, render.bv)
        )
        for _, labels in val_fields
    ]
    result = evaluate(_replay(t[..., None] for t in truth))
    assert result.numbers["seeds_with_box"] == 1.0 and result.numbers["boxes_without_seed"] == 0.0
    assert result.numbers["boxes_per_seed"] == 1.0
    assert result.score < 0.02
    # Half the nuclei without a box: their shapes are still right, but the score says what is
    # missing (so a generator that drops seeds cannot win on shapes alone).
    halved = [
        pipeline.to_network(
            geometry.render_box_map(
                geometry.boxes_from_labels(labels).subset(slice(None, None, 2)), labels.shape, render.bv
            )
        )
        for _, labels in val_fields
    ]
    half = evaluate(_replay(t[..., None] for t in halved))
    assert 0.4 < half.numbers["seeds_with_box"] < 0.6
    assert half.score > result.score + 0.4
    # An empty box map: no box, so no distance and a score that never wins.
    empty = evaluate(_background(1))
    assert empty.numbers["seeds_with_box"] == 0.0 and empty.numbers["box_size"] is None
    assert empty.score == np.inf


def test_stage1_check_of_true_oriented_box_maps_is_perfect(val_fields):
    """Oriented boxes: the check compares turned ovals with the real nuclei's own axes."""
    render = RenderConfig(oriented=True)
    evaluate = realism_eval.BoxEvaluator(val_fields, render, (4, 4))
    truth = [
        pipeline.to_network(
            geometry.render_box_map(geometry.boxes_from_labels(labels, oriented=True), labels.shape, render.bv)
        )
        for _, labels in val_fields
    ]
    result = evaluate(_replay(t[..., None] for t in truth))
    assert result.numbers["seeds_with_box"] == 1.0 and result.numbers["boxes_without_seed"] == 0.0
    assert result.score < 0.03
    # Axis-aligned ovals of the same nuclei are judged against the oriented real shapes: rounder.
    aligned = [
        pipeline.to_network(geometry.render_box_map(geometry.boxes_from_labels(labels), labels.shape, render.bv))
        for _, labels in val_fields
    ]
    worse = evaluate(_replay(t[..., None] for t in aligned))
    assert worse.numbers["box_aspect_ratio"] > 5 * max(result.numbers["box_aspect_ratio"], 0.01)


def test_realism_curves_plot_the_last_check_of_each_step(tmp_path):
    lines = [
        {"step": 2, "score": 0.5, "numbers": {"a": 0.4, "b": None}, "best": True},
        {"step": 4, "score": 0.3, "numbers": {"a": 0.2, "b": 0.1}, "best": True},
        {"step": 4, "score": 0.35, "numbers": {"a": 0.25, "b": 0.1}, "best": False},  # resumed
    ]
    (tmp_path / realism_eval.LOG).write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = realism_eval.read_log(tmp_path)
    assert [r["step"] for r in records] == [2, 4] and records[1]["score"] == 0.35
    path = realism_eval.write_curves(tmp_path)
    assert path == tmp_path / realism_eval.CURVES and np.asarray(Image.open(path)).std() > 10
    assert realism_eval.write_curves(tmp_path / "no_checks") is None
    (tmp_path / realism_eval.LOG).write_text("{not json\n")
    with pytest.raises(DataError, match="line 1"):
        realism_eval.read_log(tmp_path)


def test_stage2_check_of_the_true_masks_is_perfect(val_fields):
    render = RenderConfig()
    evaluate = realism_eval.MaskEvaluator(val_fields, render, (4, 4))
    truth = []
    for (_, labels), (boxes, box_colors, _) in zip(val_fields, evaluate.inputs):
        lut = geometry.color_lut(dict(zip(boxes.ids.tolist(), box_colors.tolist())), int(labels.max()) + 1)
        truth.append(pipeline.to_network(geometry.render_colored_mask(labels, lut, render.boundary_width)))
    result = evaluate(_replay(truth))
    assert set(result.numbers) == set(NAMES[2])
    assert result.numbers["labels_per_box"] == 1.0
    assert result.score < 0.02
    # Stage 2 painting background only: no nucleus, so no distance and a score that never wins.
    empty = evaluate(_background(4))
    assert empty.numbers["labels_per_box"] == 0.0 and empty.numbers["area"] is None
    assert empty.score == np.inf


def test_stage3_check_of_the_real_images_is_near_perfect(val_fields):
    stats = IntensityStats(low=50.0, high=1500.0, span=1400.0, max_value=4095.0)
    norm = NormConfig()
    evaluate = realism_eval.ImageEvaluator(val_fields, RenderConfig(), (4, 4), stats, norm)
    lo, hi = 50.0, 1500.0  # pipeline.image_scale of these statistics
    truth = [normalize(np.clip(image, lo, hi), lo, hi)[..., None] for image, _ in val_fields]
    result = evaluate(_replay(truth))
    assert set(result.numbers) == set(NAMES[3])
    assert result.score < 0.05
    darker = evaluate(_replay(t * 0.5 - 0.5 for t in truth))
    assert darker.numbers["contrast"] > 0.5 and darker.score > 5 * result.score


def test_stage3_check_adds_the_camera_noise_before_judging(val_fields):
    """A generator that paints the clean signal is judged with the noise synthesis adds."""
    from scipy import ndimage

    from nucgen_tf.sensor import fit_sensor

    stats = IntensityStats(low=50.0, high=1500.0, span=1400.0, max_value=4095.0)
    lo, hi = 50.0, 1500.0
    clean = [normalize(ndimage.gaussian_filter(np.clip(i.astype(float), lo, hi), 2), lo, hi)[..., None]
             for i, _ in val_fields]  # fmt: skip
    sensor = fit_sensor(image for image, _ in val_fields)
    args = (val_fields, RenderConfig(), (4, 4), stats, NormConfig())
    bare = realism_eval.ImageEvaluator(*args)(_replay(clean))
    noisy = realism_eval.ImageEvaluator(*args, sensor=sensor)
    with_camera = noisy(_replay(clean))
    assert bare.numbers["background_noise"] > 3.0  # no noise at all: far from real
    assert with_camera.numbers["background_noise"] < 0.5 * bare.numbers["background_noise"]
    assert noisy(_replay(clean)).numbers == with_camera.numbers  # the same draw at every check


def test_stage3_check_gives_a_noisy_generator_the_same_noise_at_every_check(val_fields):
    stats = IntensityStats(low=50.0, high=1500.0, span=1400.0, max_value=4095.0)
    evaluate = realism_eval.ImageEvaluator(
        val_fields, RenderConfig(), (4, 4), stats, NormConfig(), noise_channels=1
    )
    seen = []

    def serve(x):
        seen.append(np.array(x))
        return np.tanh(x[..., -1:])

    evaluate(serve)
    evaluate(serve)
    assert len(seen) == 2 * len(val_fields) and all(x.shape[-1] == 5 for x in seen)
    for first, second in zip(seen[: len(val_fields)], seen[len(val_fields) :]):
        np.testing.assert_array_equal(first, second)
    assert abs(float(seen[0][..., -1].std()) - 1.0) < 0.1


# ----- tiny training runs -----


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_logs_realism_keeps_the_best_and_exports_it(tmp_path, bbbc039_train, bbbc039_val, stage):
    cfg = _tiny(stage, str(bbbc039_train), patch=(32, 32), steps=4, image_every=100)
    cfg = _with_eval(cfg, bbbc039_val, every=2)
    workdir = tmp_path / "run"
    manifest = read_manifest(stages.train(cfg, workdir))
    lines = _lines(workdir)
    assert [line["step"] for line in lines] == [2, 4]
    for line in lines:
        assert set(line["numbers"]) == set(NAMES[stage])
        distances = [line["numbers"][name] for name in DISTANCES[stage]]
        # An untrained stage 3 can paint every nucleus darker than the background: no
        # texture then, and a score (null) that never wins.
        if None in distances:
            assert line["score"] is None and not line["best"]
        else:
            # Stage 1 adds the shares of seeds without a box and boxes without a seed.
            missing = (
                (1.0 - line["numbers"]["seeds_with_box"]) + line["numbers"]["boxes_without_seed"]
                if stage == 1
                else 0.0
            )
            assert line["score"] == pytest.approx(np.mean(distances) + missing)
    lines = [line for line in lines if line["score"] is not None]
    assert lines and np.isfinite(lines[-1]["score"])
    best = min(lines, key=lambda line: line["score"])
    assert json.loads((workdir / "best.json").read_text()) == {"step": best["step"], "score": best["score"]}
    assert [line["best"] for line in lines] == [
        line is min(lines[: i + 1], key=lambda x: x["score"]) for i, line in enumerate(lines)
    ]
    assert len(list((workdir / "best").glob("ckpt-*.index"))) == 1
    assert manifest["selected"] == {
        "by": "realism", "step": best["step"], "score": best["score"], "trained_steps": 4
    }  # fmt: skip
    assert manifest["step"] == best["step"]
    tags, _ = _scalars_and_images(workdir / "tensorboard")
    expected = {f"realism/{name}" for name in NAMES[stage]} | {"realism/score", "realism/seconds"}
    assert expected <= tags
    curves = np.asarray(Image.open(workdir / realism_eval.CURVES))
    assert curves.ndim == 3 and curves.shape[1] >= 420 and curves.std() > 10


def _fake_scores(monkeypatch, scores):
    """Makes every check return the next of `scores` and record the generator's output."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 4)).astype("float32")
    outputs = []
    queue = list(scores)

    def make_evaluator(cfg, stats, sensor=None):
        def evaluate(serve):
            outputs.append(np.asarray(serve(x)))
            return realism_eval.Result(queue.pop(0), {"fake": 0.0})

        return evaluate

    monkeypatch.setattr(realism_eval, "make_evaluator", make_evaluator)
    return x, outputs


def test_best_is_kept_by_score_exported_and_known_after_resume(tmp_path, bbbc039_train, monkeypatch):
    x, outputs = _fake_scores(monkeypatch, [3.0, 1.0, 2.0, 1.5])
    cfg = _with_eval(
        _tiny(3, str(bbbc039_train), patch=(32, 32), steps=6, image_every=100, lr=5e-3), "unused", every=2
    )
    workdir = tmp_path / "run"
    target = stages.train(cfg, workdir)
    assert [line["score"] for line in _lines(workdir)] == [3.0, 1.0, 2.0]
    assert realism_eval.read_best(workdir)["step"] == 4
    assert json.loads((workdir / "best.json").read_text()) == {"step": 4, "score": 1.0}
    serve, manifest = load_generator(target)
    assert manifest["selected"] == {"by": "realism", "step": 4, "score": 1.0, "trained_steps": 6}
    exported = serve(x).numpy()
    np.testing.assert_allclose(exported, outputs[1], atol=1e-5)  # the step-4 generator ...
    assert np.abs(exported - outputs[2]).max() > 1e-3  # ... not the last one
    # The best checkpoint holds those weights.
    generator = stages.STAGES[3].make_model(cfg).generator
    tf.train.Checkpoint(generator=generator).restore(
        realism_eval.read_best(workdir)["checkpoint"]
    ).expect_partial()
    np.testing.assert_allclose(generator(x, training=False).numpy(), outputs[1], atol=1e-5)

    # Resumed: a score of 1.5 at step 8 would be a new run's best, but not this run's.
    resumed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=8))
    manifest = read_manifest(stages.train(resumed, workdir))
    assert [line["step"] for line in _lines(workdir)] == [2, 4, 6, 8]
    assert manifest["selected"] == {"by": "realism", "step": 4, "score": 1.0, "trained_steps": 8}
    assert json.loads((workdir / "best.json").read_text()) == {"step": 4, "score": 1.0}


def test_export_checkpoint_latest_exports_the_last_step(tmp_path, bbbc039_train, monkeypatch):
    x, outputs = _fake_scores(monkeypatch, [1.0, 3.0])
    cfg = _tiny(3, str(bbbc039_train), patch=(32, 32), steps=4, image_every=100, lr=5e-3)
    cfg = _with_eval(cfg, "unused", every=2, export_checkpoint="latest")
    serve, manifest = load_generator(stages.train(cfg, tmp_path / "run"))
    assert manifest["selected"] == {"by": "latest", "step": 4, "score": 3.0, "trained_steps": 4}
    assert manifest["step"] == 4
    np.testing.assert_allclose(serve(x).numpy(), outputs[1], atol=1e-5)
    assert np.abs(serve(x).numpy() - outputs[0]).max() > 1e-3  # not the best one
    assert realism_eval.read_best(tmp_path / "run")["step"] == 2  # still kept beside it


def test_no_finite_score_exports_the_last_step(tmp_path, bbbc039_train, monkeypatch):
    _fake_scores(monkeypatch, [np.inf])
    cfg = _with_eval(_tiny(3, str(bbbc039_train), patch=(32, 32), steps=2), "unused", every=2)
    manifest = read_manifest(stages.train(cfg, tmp_path / "run"))
    assert manifest["selected"] == {"by": "latest", "step": 2, "score": None, "trained_steps": 2}
    assert _lines(tmp_path / "run")[0]["score"] is None
    assert not (tmp_path / "run" / "best.json").exists()


def test_eval_off_leaves_the_run_as_before(tmp_path, bbbc039_train):
    cfg = _tiny(3, str(bbbc039_train), patch=(32, 32), steps=2)
    assert cfg.evaluation == EvalConfig() and not cfg.evaluation.every
    workdir = tmp_path / "run"
    manifest = read_manifest(stages.train(cfg, workdir))
    assert "selected" not in manifest and manifest["step"] == 2
    assert not (workdir / realism_eval.LOG).exists()
    assert not (workdir / "best").exists() and not (workdir / "best.json").exists()
    tags, _ = _scalars_and_images(workdir / "tensorboard")
    assert not [t for t in tags if t.startswith("realism/")]


def test_stage2_checks_realism_in_3d(tmp_path, stardist_3d):
    cfg = dataclasses.replace(_tiny(2, str(stardist_3d), patch=(8, 32, 32), steps=2), spacing=(1.0, 1.0, 1.0))
    cfg = dataclasses.replace(cfg, evaluation=EvalConfig(every=2, data=str(stardist_3d), crop=32))
    manifest = read_manifest(stages.train(cfg, tmp_path / "run3d"))
    (line,) = _lines(tmp_path / "run3d")
    assert line["step"] == 2 and set(line["numbers"]) == set(NAMES[2])
    assert line["numbers"]["labels_per_box"] > 0
    assert manifest["ndim"] == 3 and manifest["selected"]["by"] in ("realism", "latest")


def test_eval_config_is_validated():
    with pytest.raises(ValueError, match="Realism checks need `data`"):
        EvalConfig(every=5)
    with pytest.raises(ValueError, match="`every` must be >= 0"):
        EvalConfig(every=-1, data="d")
    with pytest.raises(ValueError, match="`crop` must be >= 0"):
        EvalConfig(crop=-1)
    with pytest.raises(ValueError, match="`export_checkpoint` must be one of"):
        EvalConfig(export_checkpoint="first")
