"""The phantom3d recipe's val split (issue 7): model selection data for the 3D experiment."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nucgen_tf import io, phantoms
from nucgen_tf.recipes import phantom3d

TINY = phantoms.PhantomConfig(shape=(16, 32, 32), spacing=(2.0, 1.0, 1.0), n_nuclei=2, radius=(5.0, 6.0))


def _arrays(root):
    return {str(p.relative_to(root)): io.read_image(p) for p in sorted(root.rglob("*.tif"))}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["split"], r["name"]) for r in csv.DictReader(f)]


def test_val_split_is_written_and_leaves_train_and_test_unchanged(tmp_path):
    common = {"snr": "high", "seed": 4, "config": TINY, "progress": False, "n_train": 1, "n_test": 1}
    phantom3d.generate(tmp_path / "plain", **common)
    phantom3d.generate(tmp_path / "val", n_val=2, **common)
    plain, with_val = _arrays(tmp_path / "plain"), _arrays(tmp_path / "val")
    assert set(with_val) - set(plain) == {
        f"high/val/{kind}/val_{level}.tif"
        for kind in ("images", "masks")
        for level in ("c00_0000", "c25_0001")
    }
    for key, array in plain.items():  # same seeds: train and test volumes do not depend on val
        np.testing.assert_array_equal(with_val[key], array)
    image, labels = io.read_pair(io.list_pairs(tmp_path / "val" / "high" / "val")[0], ndim=3)
    assert image.shape == labels.shape == TINY.shape and labels.max() == TINY.n_nuclei
    # The val volume is new: not a copy of the train volume with the same index.
    assert not np.array_equal(
        with_val["high/val/masks/val_c00_0000.tif"], plain["high/train/masks/train_c00_0000.tif"]
    )
    assert _rows(tmp_path / "val" / "high" / "manifest.csv") == [
        ("train", "train_c00_0000"),
        ("val", "val_c00_0000"),
        ("val", "val_c25_0001"),
        ("test", "test_c00_0000"),
    ]
    record = json.loads((tmp_path / "val" / "phantom3d.json").read_text())
    assert record["sizes"] == {"train": 1, "val": 2, "test": 1} and "val=2" in record["volume_seed"]
    assert json.loads((tmp_path / "plain" / "phantom3d.json").read_text())["sizes"] == {"train": 1, "test": 1}
    assert phantom3d.volume_seed(4, "val", 1) == [4, 2, 1]


def test_a_val_split_may_be_added_to_an_old_folder_but_other_changes_are_refused(tmp_path):
    common = {"snr": "high", "seed": 4, "config": TINY, "progress": False, "n_train": 1, "n_test": 0}
    phantom3d.generate(tmp_path, **common)
    phantom3d.generate(tmp_path, n_val=1, **common)  # made before val existed: extended
    assert len(io.list_pairs(tmp_path / "high" / "val")) == 1
    assert json.loads((tmp_path / "phantom3d.json").read_text())["sizes"]["val"] == 1
    with pytest.raises(io.DataError, match="other parameters"):
        phantom3d.generate(tmp_path, n_val=2, **common)
    with pytest.raises(io.DataError, match="other parameters"):
        phantom3d.generate(tmp_path, **{**common, "seed": 5}, n_val=1)


def test_rejects_a_negative_val_size(tmp_path):
    with pytest.raises(ValueError, match="n_val"):
        phantom3d.generate(tmp_path, config=TINY, progress=False, n_val=-1)


def test_volume_seed_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split"):
        phantom3d.volume_seed(1, "holdout", 0)
