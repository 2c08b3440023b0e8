"""`nucgen evaluate` refuses inputs that are not label masks, and reads the cellpose layout (issue 18, 3)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from nucgen_tf import io
from nucgen_tf.eval import evaluate
from tests.eval.test_eval_cli import two_pairs


def test_an_images_folder_is_refused_with_one_message(bbbc039_train):
    with pytest.raises(io.DataError, match=r"images: an images/ folder holds intensities, not labels"):
        evaluate.evaluate_folders(bbbc039_train / "images", bbbc039_train)


def test_a_real_intensity_image_is_refused(bbbc039_train, tmp_path):
    """An intensity TIFF in a folder with any other name: uint16 with hundreds of values in tiny regions."""
    name = sorted((bbbc039_train / "images").glob("*.tif"))[0].name
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / name).write_bytes((bbbc039_train / "images" / name).read_bytes())
    with pytest.raises(io.DataError, match=r"looks like an intensity image, not instance labels \(uint16"):
        evaluate.evaluate_folders(pred, bbbc039_train, partial=True)


def test_a_float_image_is_refused(tmp_path):
    truth, _ = two_pairs(2)["a"]
    io.write_labels(tmp_path / "truth" / "a.tif", truth)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "a.tif", truth.astype(np.float32) * 0.5)
    with pytest.raises(io.DataError, match=r"a.tif: float32 values are intensities or probabilities, not"):
        evaluate.evaluate_folders(tmp_path / "pred", tmp_path / "truth")


def test_real_label_masks_pass_the_check(bbbc039_train):
    for path in sorted((bbbc039_train / "masks").glob("*.tif"))[:5]:
        evaluate.check_labels(path, io.read_image(path))


def test_cellpose_layout_is_read_by_name(tmp_path):
    """`synthesize --layout cellpose`: <name>.tif (image) + <name>_masks.tif side by side."""
    for name, (truth, pred) in two_pairs(2).items():
        io.write_labels(tmp_path / "truth" / f"{name}_masks.tif", truth)
        io.write_tiff(tmp_path / "truth" / f"{name}.tif", (truth * 700 + 100).astype(np.uint16))
        io.write_labels(tmp_path / "pred" / f"{name}.tif", pred)
    assert sorted(evaluate.label_files(tmp_path / "truth")) == ["a", "b"]
    per_image = evaluate.evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    assert per_image["b"].pixel_f1 == pytest.approx(200 / 209)
