"""StarDist as the second segmenter family: config checks, patches, targets, train -> resume -> predict.

Tests that run StarDist need the `stardist` package: they skip without it on a developer
machine but fail under CI=true (as the real-data fixtures in conftest.py do), so that a CI
run cannot pass by skipping them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nucgen_tf import io, phantoms
from nucgen_tf.eval import pool
from nucgen_tf.eval.evaluate import evaluate_folders
from nucgen_tf.segment import stardist as sdf
from nucgen_tf.segment.stardist import loop as sd_loop
from tests.helpers import write_disc_pairs


@pytest.fixture(scope="module")
def stardist():
    try:
        import stardist as module
    except ImportError:
        message = "stardist is not installed (pip install 'stardist==0.9.2')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return module


def _tiny(ndim: int, **kw) -> sdf.StardistTrainConfig:
    base = {
        2: dict(patch_shape=(32, 32), n_rays=8, grid=(2, 2)),
        3: dict(patch_shape=(8, 32, 32), n_rays=12, grid=(1, 2, 2), anisotropy=(2.0, 1.0, 1.0)),
    }[ndim]
    return sdf.StardistTrainConfig(
        **{**base, "batch_size": 2, "steps": 2, "eval_every": 2, "unet_n_filter_base": 4, "unet_n_depth": 2,
           **kw}
    )  # fmt: skip


def _write_discs(root: pathlib.Path, seeds, shape=(64, 64), cell: int = 16) -> pathlib.Path:
    return write_disc_pairs(root, seeds, shape, cell, keep=0.7)


# ----- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(patch_shape=(64,)), "patch_shape"),
        (dict(steps=30, eval_every=20), "multiple of `eval_every`"),
        (dict(n_rays=2), "n_rays"),
        (dict(grid=(2, 2, 2)), "grid"),
        (dict(patch_shape=(40, 40)), "multiple of 2\\*\\*unet_n_depth"),
        (dict(anisotropy=(2.0, 1.0)), "anisotropy"),
        (dict(patch_shape=(64, 32)), "rot90"),
        (dict(extra_fraction=1.5), "extra_fraction"),
        (dict(percentiles=(99.8, 1.0)), "percentiles"),
        (dict(select_on="val_loss"), "select_on"),
        (dict(lr=0.0), "lr"),
    ],
)  # fmt: skip
def test_config_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sdf.StardistTrainConfig(**kwargs)


def test_config_error_names_the_value():
    with pytest.raises(ValueError, match=r"Received: n_rays=2"):
        sdf.StardistTrainConfig(n_rays=2)


@pytest.mark.parametrize("ndim", [2, 3])
def test_config_ndim_and_model_name(ndim):
    config = _tiny(ndim)
    assert config.ndim == ndim
    name = sdf.model_name(config)
    assert name.startswith(f"StarDist ({ndim}D, {config.n_rays} rays")
    assert "x".join(map(str, config.grid)) in name


# ----- patches and targets --------------------------------------------------------------------


def _images(value: float, n: int, shape=(40, 40)) -> sdf.LabeledImages:
    labels = np.zeros(shape, np.int32)
    labels[5:15, 5:15] = 1
    return sdf.LabeledImages(
        [f"i{k}" for k in range(n)], [np.full(shape, value, np.float32)] * n, [labels] * n
    )


def test_sample_batch_is_a_function_of_seed_and_step():
    config = _tiny(2, batch_size=4)
    real = sdf.LabeledImages(
        ["r"], [np.random.default_rng(0).random((40, 40), np.float32)], [np.zeros((40, 40), np.int32)]
    )
    x1, y1 = sdf.sample_batch(real, None, config, step=7)
    x2, _ = sdf.sample_batch(real, None, config, step=7)
    x3, _ = sdf.sample_batch(real, None, config, step=8)
    assert x1.shape == (4, 32, 32) and y1.shape == (4, 32, 32)
    assert x1.dtype == np.float32 and y1.dtype == np.int32
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0.0), (1.0, 1.0)])
def test_sample_batch_extra_fraction_extremes(fraction, expected):
    config = _tiny(2, batch_size=4, extra_fraction=fraction)
    x, _ = sdf.sample_batch(_images(0.0, 2), _images(1.0, 3), config, step=0)
    assert np.all(x.reshape(4, -1).mean(axis=1) == expected)


def test_sample_batch_mixes_real_and_extra():
    config = _tiny(2, batch_size=4, extra_fraction=0.25)
    per_patch = np.concatenate(
        [
            sdf.sample_batch(_images(0.0, 2), _images(1.0, 3), config, s)[0].reshape(4, -1).mean(1)
            for s in range(50)
        ]
    )
    assert 0.15 < per_patch.mean() < 0.35  # 200 patches, a quarter of them extra


def test_sample_batch_pads_small_sources():
    config = _tiny(2, batch_size=2, flips=False, rot90=False)
    small = sdf.LabeledImages(["s"], [np.full((20, 24), 3.0, np.float32)], [np.ones((20, 24), np.int32)])
    x, y = sdf.sample_batch(small, None, config, step=0)
    assert x.shape == (2, 32, 32)
    assert np.count_nonzero(y[0]) == 20 * 24  # the source pixels, the padding is background
    np.testing.assert_array_equal(x[0], 3.0)  # padded with the image minimum


@pytest.mark.parametrize("ndim", [2, 3])
def test_targets_of_a_disc(stardist, ndim):
    config = _tiny(ndim, grid=(1,) * ndim, anisotropy=(1.0, 1.0, 1.0) if ndim == 3 else ())
    model = sdf.build_stardist(config)
    shape = config.patch_shape
    centre = tuple(s // 2 for s in shape)
    radius = 3 if ndim == 3 else 6
    grid = np.indices(shape)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
    labels = np.where(ball, 7, 0).astype(np.int32)[None]
    prob, dist = sdf.stardist_targets(labels, model)
    assert prob.shape == (1, *shape, 1) and dist.shape == (1, *shape, config.n_rays + 1)
    assert prob[(0, *centre, 0)] == pytest.approx(1.0)
    assert np.all(prob[0, ..., 0][~ball] == 0) and np.all(prob[0, ..., 0][ball] > 0)
    # Every ray from the centre ends at the sphere (StarDist counts up to the first outside
    # pixel, so up to a pixel diagonal beyond it), and the mask channel is prob.
    rays = dist[(0, *centre)][:-1]
    assert np.all(rays >= radius - 0.5) and np.all(rays <= radius + math.sqrt(ndim)), rays
    np.testing.assert_array_equal(dist[0, ..., -1], prob[0, ..., 0])


# ----- model, prediction ----------------------------------------------------------------------


def test_load_stardist_names_the_missing_file(tmp_path):
    with pytest.raises(io.DataError, match="stardist.json: not found"):
        sdf.load_stardist(tmp_path)


class _Interrupt(Exception):
    pass


def test_train_resume_predict_2d(stardist, tmp_path, monkeypatch):
    train = _write_discs(tmp_path / "train", seeds=[1, 2, 3])
    val = _write_discs(tmp_path / "val", seeds=[9])
    synthetic = _write_discs(tmp_path / "synthetic", seeds=[11, 12])
    out = tmp_path / "run"
    config = _tiny(2, steps=8, eval_every=4, lr=1e-2)

    steps_seen = []
    original_sample = sdf.sample_batch

    def spy(real, extra, cfg, step):
        steps_seen.append(step)
        return original_sample(real, extra, cfg, step)

    monkeypatch.setattr(sd_loop, "sample_batch", spy)
    original_validate = sdf.validate

    def validate_then_crash(model, images, thresholds):
        if steps_seen[-1] + 1 == 8:
            raise _Interrupt  # a kill after the step-4 checkpoint, before step 8 is saved
        return original_validate(model, images, thresholds)

    monkeypatch.setattr(sd_loop, "validate", validate_then_crash)
    with pytest.raises(_Interrupt):
        sdf.train_stardist([train], val, out, config, extra_dirs=[synthetic])
    assert steps_seen == list(range(8))
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history["history"]] == [4]

    # The rerun continues from the step-4 checkpoint (weights, optimizer and step).
    monkeypatch.setattr(sd_loop, "validate", original_validate)
    steps_seen.clear()
    assert sdf.train_stardist([train], val, out, config, extra_dirs=[synthetic]) == out
    assert steps_seen == list(range(4, 8))
    history = json.loads((out / "history.json").read_text())["history"]
    assert [h["step"] for h in history] == [4, 8]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert history[1]["loss"] < history[0]["loss"]  # the resumed run kept learning

    # A finished folder returns at once; other settings are refused.
    steps_seen.clear()
    sdf.train_stardist([train], val, out, config, extra_dirs=[synthetic])
    assert steps_seen == []
    with pytest.raises(io.DataError, match="run.json: this folder holds a StarDist run with other settings"):
        sdf.train_stardist([train], val, out, _tiny(2, steps=12, eval_every=4, lr=1e-2))

    segmenter = sdf.load_stardist(out)
    meta = segmenter.meta
    assert meta["finished"] and meta["step"] in (4, 8) and meta["num_extra_images"] == 2
    assert set(meta["thresholds"]) == {"prob", "nms"} and meta["threshold_tuning"]["kept"] in (
        "tuned",
        "default",
    )
    assert segmenter.thresholds == meta["thresholds"]
    assert (out / "model" / "weights_best.h5").is_file() and (out / "model" / "config.json").is_file()

    written = sdf.predict_folder(out, val, tmp_path / "pred")
    assert [p.name for p in written] == ["d09.tif"]
    assert io.read_labels(written[0]).shape == (64, 64)
    scores = pool(evaluate_folders(tmp_path / "pred", val, ndim=2).values())
    assert scores.n_images == 1 and scores.n_true > 0
    for value in (scores.pixel_f1, scores.instance_f1, scores.object_f1):
        assert math.isfinite(value) and 0.0 <= value <= 1.0
    image = io.read_image(val / "images" / "d09.tif")
    np.testing.assert_array_equal(sdf.predict_instances(segmenter, image), io.read_labels(written[0]))
    crop = sdf.predict_instances(segmenter, image[:50, 3:60])  # no multiple of the network's stride
    assert crop.shape == (50, 57) and crop.dtype == np.int32
    ids = np.unique(crop)
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, crop.max() + 1))
    with pytest.raises(ValueError, match="2D; the image must have 2 non-empty axes"):
        segmenter.instances(np.zeros((4, 8, 8)))


def test_train_and_predict_3d_without_validation(stardist, tmp_path):
    root = tmp_path / "train3d"
    rng = np.random.default_rng(3)
    centers = np.array([[4.0, 8.0, 8.0], [4.0, 24.0, 20.0], [5.0, 12.0, 26.0]])
    labels = phantoms.ellipsoid_labels(
        centers, (10, 32, 32), rng, radius_range=(3.0, 4.0), elongation=(1.0, 1.2)
    )
    io.write_tiff(root / "images" / "v.tif", phantoms.fluorescence_image(labels, rng))
    io.write_labels(root / "masks" / "v.tif", labels)
    config = _tiny(3, anisotropy=())  # anisotropy estimated from the masks
    out = sdf.train_stardist([root], None, tmp_path / "run3d", config)
    segmenter = sdf.load_stardist(out)
    assert segmenter.ndim == 3 and segmenter.meta["step"] == 2 and segmenter.meta["val_scores"] == {}
    assert segmenter.thresholds == sdf.DEFAULT_THRESHOLDS
    assert len(segmenter.meta["anisotropy"]) == 3 and min(segmenter.meta["anisotropy"]) == pytest.approx(1.0)
    # 10 slices: no multiple of the network's stride in Z.
    prediction = sdf.predict_instances(out, io.read_image(root / "images" / "v.tif"))
    assert prediction.shape == (10, 32, 32) and prediction.dtype == np.int32
    ids = np.unique(prediction)
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, prediction.max() + 1))
    written = sdf.predict_folder(segmenter, root, tmp_path / "pred3d")
    np.testing.assert_array_equal(io.read_labels(written[0], ndim=3), prediction)


def _nucgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_trains_and_predicts_stardist(stardist, tmp_path):
    """`nucgen segment train --family=stardist`, then `predict` finds the family by itself."""
    train = _write_discs(tmp_path / "train", seeds=[1, 2])
    out, pred = tmp_path / "run", tmp_path / "pred"
    result = _nucgen(
        "segment", "train", "--family=stardist", f"--data={train}", f"--out={out}", "--patch=32,32",
        "--batch=2", "--steps=2", "--eval_every=2", "--filters=4", "--depth=2", "--rays=8", "--grid=2,2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    segmenter = sdf.load_stardist(out)
    config = segmenter.config
    assert (config.n_rays, config.unet_n_filter_base, config.unet_n_depth) == (8, 4, 2)
    assert config.lr == sdf.StardistTrainConfig().lr  # not given: StarDist's default, not the U-Net's
    result = _nucgen(
        "segment", "predict", f"--model={out}", f"--images={train}", f"--out={pred}", "--prob_thresh=0.3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = _nucgen(
        "segment", "predict", f"--model={out}", f"--images={train}", f"--out={pred}", "--min_size=3"
    )
    assert result.returncode != 0 and "--min_size do(es) not apply to a stardist segmenter" in result.stderr
    image = io.read_image(train / "images" / "d01.tif")
    expected = sdf.predict_instances(segmenter, image, prob_thresh=0.3)
    np.testing.assert_array_equal(io.read_labels(pred / "d01.tif"), expected)


def test_cli_refuses_flags_of_the_other_family(tmp_path):
    out = f"--out={tmp_path / 'o'}"
    result = _nucgen("segment", "train", "--family=stardist", f"--data={tmp_path}", out, "--dice_weight=1")
    assert result.returncode != 0
    assert "--dice_weight do(es) not apply to a stardist segmenter" in result.stderr
    assert not (tmp_path / "o").exists()
