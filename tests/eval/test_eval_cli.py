"""`nucgen evaluate` and its library functions on tiny folders of label TIFFs."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nucgen_tf import io
from nucgen_tf.eval import evaluate


def lift(labels: np.ndarray, ndim: int) -> np.ndarray:
    return labels if ndim == 2 else np.stack([labels, labels])


def two_pairs(ndim: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (truth, pred). a: one nucleus split 60/40 px; b: one perfect, one 9 px missed."""
    truth_a, pred_a = np.zeros((20, 40), np.int32), np.zeros((20, 40), np.int32)
    truth_a[0:10, 0:10] = 1
    pred_a[0:10, 0:6], pred_a[0:10, 6:10] = 1, 2
    truth_b, pred_b = np.zeros((20, 40), np.int32), np.zeros((20, 40), np.int32)
    truth_b[0:10, 0:10], truth_b[15:18, 30:33] = 1, 2
    pred_b[0:10, 0:10] = 1
    return {"a": (lift(truth_a, ndim), lift(pred_a, ndim)), "b": (lift(truth_b, ndim), lift(pred_b, ndim))}


def write_folders(
    root: pathlib.Path, ndim: int, truth_as_data_folder: bool
) -> tuple[pathlib.Path, pathlib.Path]:
    pred_dir = root / "pred"
    truth_dir = root / "test"
    masks = truth_dir / "masks" if truth_as_data_folder else truth_dir
    for name, (truth, pred) in two_pairs(ndim).items():
        io.write_labels(masks / f"{name}.tif", truth)
        io.write_labels(pred_dir / f"{name}.tif", pred)
    if truth_as_data_folder:  # images/ beside masks/ must not be mistaken for labels
        io.write_tiff(truth_dir / "images" / "a.tif", np.ones(two_pairs(ndim)["a"][0].shape, np.uint16))
    return pred_dir, truth_dir


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("truth_as_data_folder", [False, True], ids=["tiffs", "data_folder"])
def test_evaluate_folders_per_image_and_pooled(tmp_path, ndim, truth_as_data_folder):
    pred_dir, truth_dir = write_folders(tmp_path, ndim, truth_as_data_folder)
    per_image = evaluate.evaluate_folders(pred_dir, truth_dir, ndim=ndim)
    assert list(per_image) == ["a", "b"]
    d = 1 if ndim == 2 else 2
    assert (per_image["a"].instance.tp, per_image["a"].instance.fp) == (60 * d, 40 * d)
    assert per_image["b"].pixel_f1 == pytest.approx(200 / 209)
    doc = evaluate.report(per_image, pred_dir, truth_dir)
    pooled = doc["pooled"]
    assert pooled["n_images"] == 2 and (pooled["n_true"], pooled["n_pred"]) == (3, 3)
    assert pooled["pixel"]["tp"] == 200 * d and pooled["pixel_f1"] == pytest.approx(400 / 409)
    assert pooled["instance_f1"] == pytest.approx(320 / 409)
    assert pooled["object_f1"] == pytest.approx(2 / 3)
    assert pooled["mean_ap"] == pytest.approx((3 * 0.5 + 7 * 0.2) / 10)
    assert doc["images"]["a"]["objects"][0] == {
        "threshold": 0.5, "tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "ap": 0.5,
    }  # fmt: skip
    table = evaluate.format_table(per_image, evaluate.pool(per_image.values()))
    assert table.splitlines()[-1].split() == "pooled (n=2) 3 3 0.9780 0.7824 0.7824 0.6667 0 0.0000 0.2900".split()


def test_cli_writes_table_and_json(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path, 2, truth_as_data_folder=True)
    out = tmp_path / "scores" / "eval.json"
    result = subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "evaluate", f"--pred={pred_dir}",
         f"--truth={truth_dir}", f"--json={out}", "--ndim=2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["image", "true", "pred"] and lines[1].split()[0] == "a"
    assert lines[-1].startswith("pooled (n=2)")
    doc = json.loads(out.read_text())
    assert set(doc) == {"pred", "truth", "thresholds", "pooled", "images"}
    assert doc["pooled"]["pixel_f1"] == pytest.approx(400 / 409) and doc["images"]["b"]["n_true"] == 2
    assert doc["thresholds"][0] == 0.5 and doc["thresholds"][-1] == 0.95 and len(doc["thresholds"]) == 10
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]  # no temporary left behind


def test_prediction_without_true_mask_names_both_paths(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path, 2, truth_as_data_folder=True)
    io.write_labels(pred_dir / "c.tif", np.zeros((20, 40), np.int32))
    with pytest.raises(io.DataError, match="prediction has no true mask with the same name") as info:
        evaluate.evaluate_folders(pred_dir, truth_dir)
    assert str(info.value).startswith(f"{pred_dir / 'c.tif'}: ")
    assert str(info.value).endswith(f"expected {truth_dir / 'masks' / 'c.tif'}")


def test_true_mask_without_prediction_is_an_error_unless_partial(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path, 2, truth_as_data_folder=False)
    (pred_dir / "b.tif").unlink()
    with pytest.raises(io.DataError, match=r"b\.tif: true mask has no prediction.*--partial") as info:
        evaluate.evaluate_folders(pred_dir, truth_dir)
    assert info.value.path == truth_dir / "b.tif"
    assert list(evaluate.evaluate_folders(pred_dir, truth_dir, partial=True)) == ["a"]


def test_shape_mismatch_names_both_files(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path, 2, truth_as_data_folder=False)
    io.write_labels(pred_dir / "a.tif", np.zeros((20, 41), np.int32))
    with pytest.raises(
        io.DataError, match=r"prediction shape \(20, 41\) does not match .*a\.tif shape \(20, 40\)"
    ):
        evaluate.evaluate_folders(pred_dir, truth_dir)


def test_wrong_rank_is_reported(tmp_path):
    pred_dir, truth_dir = write_folders(tmp_path, 3, truth_as_data_folder=False)
    with pytest.raises(io.DataError, match="expected 2 dimensions"):
        evaluate.evaluate_folders(pred_dir, truth_dir, ndim=2)


def test_folder_without_label_files(tmp_path):
    (tmp_path / "empty" / "masks").mkdir(parents=True)
    with pytest.raises(io.DataError, match=r"empty: no \*\.tif or \*\.tiff label files here nor in masks/"):
        evaluate.label_files(tmp_path / "empty")


def test_missing_folder(tmp_path):
    with pytest.raises(io.DataError, match="nowhere: folder not found"):
        evaluate.label_files(tmp_path / "nowhere")
