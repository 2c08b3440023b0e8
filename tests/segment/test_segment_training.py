"""Training runs of the segmenter: smoke (2D/3D), resume, learning, data mixing, real data."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from scipy import ndimage as ndi

from nucgen_tf import eval as nuc_eval
from nucgen_tf import io, phantoms
from nucgen_tf.data import normalize as nz
from nucgen_tf.models.segmenters import SegmenterConfig
from nucgen_tf.segment import predict as sp
from nucgen_tf.segment import training
from nucgen_tf.segment.config import InstanceConfig, SegmentTrainConfig
from tests.helpers import write_disc_pairs

TINY = SegmenterConfig(base_filters=4, depth=2)
PATCH = {2: (32, 32), 3: (8, 32, 32)}


def _write_phantoms(root: pathlib.Path, ndim: int, seeds, shape, kind: str = "clustered") -> pathlib.Path:
    for seed in seeds:
        image, labels = phantoms.example(ndim, shape=shape, seed=seed, kind=kind)
        io.write_tiff(root / "images" / f"p{seed:02d}.tif", image)
        io.write_labels(root / "masks" / f"p{seed:02d}.tif", labels)
    return root


def _write_discs(root: pathlib.Path, seeds, shape=(96, 96), cell: int = 16) -> pathlib.Path:
    return write_disc_pairs(root, seeds, shape, cell, keep=0.6)


def _smoke_config(ndim: int, steps: int = 2) -> SegmentTrainConfig:
    # 2D trains under a mixed policy (bfloat16, emulated on most CPUs: slow but tiny here).
    precision = "mixed_bfloat16" if ndim == 2 else "float32"
    return SegmentTrainConfig(
        network=TINY, patch_shape=PATCH[ndim], batch_size=2, steps=steps, eval_every=2, precision=precision
    )


def _smoke_run(root: pathlib.Path, ndim: int) -> tuple[pathlib.Path, pathlib.Path]:
    shape = (96, 96) if ndim == 2 else (12, 40, 40)
    data = _write_phantoms(root / "data", ndim, range(2), shape)
    return data, training.train_segmenter([data], data, root / "model", _smoke_config(ndim))


@pytest.fixture(scope="module")
def smoke_2d(tmp_path_factory):
    """(data folder, model folder) of a 2-step 2D training with validation."""
    return _smoke_run(tmp_path_factory.mktemp("smoke_2d"), 2)


def test_mixed_precision_run_saves_a_float32_model(smoke_2d):
    import keras

    _, out = smoke_2d
    assert keras.config.dtype_policy().name == "float32"  # the run restored the global policy
    meta = json.loads((out / sp.SIDECAR_FILE).read_text())
    assert meta["training_precision"] == "mixed_bfloat16"
    model = sp.load_segmenter(out).model
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


@pytest.mark.parametrize("ndim", [2, 3])
def test_two_step_smoke(ndim, smoke_2d, tmp_path):
    data, out = smoke_2d if ndim == 2 else _smoke_run(tmp_path, 3)
    meta = json.loads((out / sp.SIDECAR_FILE).read_text())
    assert meta["ndim"] == ndim and meta["num_train_images"] == 2
    assert meta["step"] == 2 and set(meta["val_scores"]) >= {"instance_f1", "object_f1", "pixel_f1"}
    assert meta["intensity_stats"]["dtype"] == "uint16"
    history = json.loads((out / "history.json").read_text())["history"]
    assert [h["step"] for h in history] == [2]

    image = io.read_image(data / "images" / "p00.tif")[..., 1:, 3:]  # any size, not a multiple
    labels = sp.predict_instances(out, image)
    assert labels.shape == image.shape and labels.dtype == np.int32


def test_resume_continues_from_checkpoint(smoke_2d, tmp_path):
    """Two more steps start at the step-2 checkpoint (a restart would log step 2 twice)."""
    data, model = smoke_2d
    out = shutil.copytree(model, tmp_path / "model")
    training.train_segmenter([data], data, out, _smoke_config(2, steps=4))
    history = json.loads((out / "history.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("-4")


def test_cli_predict_writes_uint16_labels(smoke_2d, tmp_path):
    """`nucgen segment predict` (the real dispatcher, in a subprocess) writes what the API predicts."""
    data, model = smoke_2d
    pred = tmp_path / "pred"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nucgen_tf.commands.nucgen",
            "segment",
            "predict",
            "--model",
            str(model),
            "--images",
            str(data),
            "--out",
            str(pred),
            "--min_size",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    segmenter = sp.load_segmenter(model)
    instances = dataclasses.replace(segmenter.config.instances, min_size=1)
    for pair in io.list_pairs(data):
        written = tifffile.imread(pred / f"{pair.name}.tif")
        assert written.dtype == np.uint16
        expected = segmenter.instances(io.read_image(pair.image_path), instances)
        np.testing.assert_array_equal(written, expected)


def test_learns_bright_nuclei(tmp_path):
    """A tiny U-Net finds separate phantom nuclei on held-out images after 100 steps.

    No batch norm: with Keras' momentum of 0.99 the moving statistics need a few hundred
    steps to settle, longer than this test runs.
    """
    train_dir = _write_discs(tmp_path / "train", range(4))
    val_dir = _write_discs(tmp_path / "val", range(10, 12))
    config = SegmentTrainConfig(
        network=SegmenterConfig(base_filters=8, depth=2, norm="none"),
        instances=InstanceConfig(min_seed_size=4, min_size=10),
        patch_shape=(64, 64),
        batch_size=4,
        steps=100,
        eval_every=50,
        lr=3e-3,
    )
    out = training.train_segmenter([train_dir], val_dir, tmp_path / "model", config)
    segmenter = sp.load_segmenter(out)
    scores = []
    for pair in io.list_pairs(val_dir):
        image, truth = io.read_pair(pair)
        scores.append(nuc_eval.score(truth, segmenter.instances(image)))
    pooled = nuc_eval.pool(scores)
    assert pooled.n_true > 30
    assert pooled.pixel_f1 > 0.85
    assert pooled.object_f1 > 0.85
    meta = json.loads((out / sp.SIDECAR_FILE).read_text())
    assert meta["val_scores"]["object_f1"] == pytest.approx(pooled.object_f1)  # the saved model is the best
    history = json.loads((out / "history.json").read_text())["history"]
    assert max(h["object_f1"] for h in history) == pytest.approx(pooled.object_f1)


def test_extra_fraction_sets_the_mix():
    """Patches come from the extra set with probability extra_fraction, whatever its size."""
    real = training.ImageSet(["r"], [np.full((16, 16), -1, np.float32)], [np.zeros((16, 16), np.uint8)])
    extra = training.ImageSet(
        [f"e{i}" for i in range(5)], [np.full((16, 16), 1, np.float32)] * 5, [np.ones((16, 16), np.uint8)] * 5
    )
    config = SegmentTrainConfig(
        network=TINY, patch_shape=(8, 8), batch_size=50, extra_fraction=0.25, steps=1, eval_every=1
    )
    batches = list(training.patch_dataset(real, extra, config).take(8))
    images = np.concatenate([b[0].numpy() for b in batches])
    targets = np.concatenate([b[1].numpy() for b in batches])
    from_extra = images[:, 0, 0, 0] > 0
    assert 0.18 < from_extra.mean() < 0.32
    np.testing.assert_array_equal(targets[from_extra], 1)  # images and targets stay paired
    again = next(iter(training.patch_dataset(real, extra, config)))
    np.testing.assert_array_equal(again[0].numpy(), batches[0][0].numpy())  # deterministic
    only_real = next(iter(training.patch_dataset(real, None, config)))
    assert np.all(only_real[0].numpy() < 0)


def test_loss_weights_boundary():
    loss = training.segmentation_loss((1.0, 1.0, 5.0))
    y_pred = tf.constant([[[0.5, 0.25, 0.25]]], tf.float32)
    ce = -np.log(0.25)
    assert float(loss(tf.constant([[2]]), y_pred)) == pytest.approx(5 * ce, rel=1e-5)
    assert float(loss(tf.constant([[1]]), y_pred)) == pytest.approx(ce, rel=1e-5)
    dice = training.segmentation_loss((1.0, 1.0, 1.0), dice_weight=1.0)
    perfect = tf.constant([[[0.0, 1.0, 0.0]]])
    assert float(dice(tf.constant([[1]]), perfect)) == pytest.approx(0.0, abs=1e-5)


def test_rejects_missing_folder(tmp_path):
    with pytest.raises(io.DataError, match="not found"):
        training.train_segmenter(
            [tmp_path / "nope"],
            None,
            tmp_path / "m",
            SegmentTrainConfig(network=TINY, patch_shape=(32, 32), steps=1, eval_every=1),
        )


def test_bbbc039_model_is_quiet_on_an_empty_field(bbbc039_train, tmp_path):
    """A segmenter trained briefly on BBBC039 finds nuclei in a real field but ~none in pure background.

    The empty field is resampled from the pixels of a real image that lie > 20 px from every
    annotated nucleus (camera background); the data-set-bounded normalization must keep
    its noise dark, and the network must not paint nuclei on it.
    """
    config = SegmentTrainConfig(
        network=SegmenterConfig(base_filters=8, depth=3, norm="none"),
        patch_shape=(64, 64),
        batch_size=4,
        steps=80,
        eval_every=80,
        lr=3e-3,
    )
    out = training.train_segmenter([bbbc039_train], None, tmp_path / "model", config)
    segmenter = sp.load_segmenter(out)
    pair = io.list_pairs(bbbc039_train)[0]
    image, labels = io.read_pair(pair)
    crop = (slice(0, 256), slice(0, 256))
    found = segmenter.instances(image[crop])
    n_true = len(np.unique(labels[crop])) - 1
    assert found.max() > 0.5 * n_true  # control: it does find nuclei

    background = image[ndi.distance_transform_edt(labels == 0) > 20]
    field = np.random.default_rng(0).choice(background, size=(256, 256))
    empty = segmenter.instances(field)
    assert empty.max() <= 2
    assert np.count_nonzero(empty) < 0.002 * empty.size
    # Control: stretched onto the full range, as a plain per-image percentile normalization
    # would, the same noise looks like nuclei to this model, so the test can fail.
    norm = segmenter.config.norm
    plain = nz.normalize(field, *np.percentile(field, (norm.low_percentile, norm.high_percentile)))
    probs = sp.predict_probabilities(segmenter.model, plain, segmenter.config.network)
    assert np.mean(probs[..., 0] < 0.5) > 0.1


def test_rerun_after_fixing_the_data_uses_new_intensity_stats(tmp_path):
    """A run folder left by a failed start must not keep the old data's intensity scale."""
    data = _write_phantoms(tmp_path / "data", 2, range(2), (96, 96))
    out = tmp_path / "model"
    config = _smoke_config(2, steps=2)
    stale = nz.IntensityStats(low=1.0, high=824.0, span=800.0, max_value=881.0, num_images=2)
    out.mkdir()
    io.write_json(out / "intensity_stats.json", stale.to_dict())  # Left by the failed run.
    training.train_segmenter([data], None, out, config)
    meta = json.loads((out / sp.SIDECAR_FILE).read_text())
    assert meta["intensity_stats"]["max_value"] != 881.0
    images = [io.read_image(p) for p in sorted((data / "images").glob("*.tif"))]
    assert meta["intensity_stats"]["max_value"] == float(max(i.max() for i in images))
