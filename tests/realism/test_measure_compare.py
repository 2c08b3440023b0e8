"""measure / Measurements / compare / folder layouts: contracts the lead's code relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nucgen_tf import io, realism
from nucgen_tf.realism import distances, fields
from nucgen_tf.realism.intensity import IMAGE_STATISTICS
from nucgen_tf.realism.shapes import MASK_STATISTICS


def _field(seed: int, shape=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for label, (y, x) in enumerate(rng.integers(8, 56, size=(4, 2)), start=1):
        labels[max(0, y - 4) : y + 4, max(0, x - 5) : x + 5] = label
    image = rng.normal(100, 2, shape) + 300 * (labels > 0)
    return image, labels


def test_masks_only_measures_have_no_image_statistics():
    with_images = realism.measure([_field(0), _field(1)])
    masks_only = realism.measure([(None, _field(0)[1]), (None, _field(1)[1])])
    assert set(with_images.values) == set(MASK_STATISTICS) | set(IMAGE_STATISTICS)
    assert set(masks_only.values) == set(MASK_STATISTICS)
    report = realism.compare(with_images, masks_only, None)
    assert set(report.missing) == set(IMAGE_STATISTICS)
    assert report.statistics["area"].floor is None and report.statistics["area"].ratio is None


def test_measure_rejects_bad_fields():
    image, labels = _field(0)
    with pytest.raises(ValueError, match="same shape"):
        realism.measure([(image[:10], labels)])
    with pytest.raises(ValueError, match="integers"):
        realism.measure([(None, labels.astype(np.float32))])
    with pytest.raises(ValueError, match="at least one"):
        realism.measure([])
    with pytest.raises(ValueError, match="one rank"):
        realism.measure([(None, labels), (None, labels[None])])


def test_identical_sets_have_distance_zero_and_json_round_trips():
    m = realism.measure([_field(s) for s in range(4)])
    report = realism.compare(
        m, m, (realism.measure([_field(0), _field(2)]), realism.measure([_field(1), _field(3)]))
    )
    assert all(c.distance == 0.0 for c in report.statistics.values())
    assert all(c.ratio == 0.0 or c.ratio is None for c in report.statistics.values())
    document = json.loads(json.dumps(report.to_json()))
    assert set(document["statistics"]["area"]) >= {
        "real_median",
        "synthetic_median",
        "distance",
        "floor",
        "ratio",
    }
    assert "area" in realism.format_table(report)


def test_distance_is_wasserstein_over_real_iqr():
    real, synthetic = np.arange(100.0), np.arange(100.0) + 10
    assert distances.scale(real) == pytest.approx(49.5)
    assert distances.distance(real, synthetic, distances.scale(real)) == pytest.approx(10 / 49.5)
    rare = np.r_[np.zeros(95), np.ones(5)]  # IQR 0: falls back to the std
    assert distances.scale(rare) == pytest.approx(np.std(rare))
    assert distances.scale(np.ones(5)) == 1.0


def test_compare_rejects_2d_against_3d():
    m2 = realism.measure([(None, _field(0)[1])])
    m3 = realism.measure([(None, _field(0)[1][None].repeat(3, 0))])
    with pytest.raises(ValueError, match="rank"):
        realism.compare(m2, m3)


def test_folder_layouts_and_halves(tmp_path):
    pairs = [_field(s) for s in range(4)]
    for i, (image, labels) in enumerate(pairs):
        io.write_tiff(tmp_path / "std" / "images" / f"f{i}.tif", image.astype(np.uint16))
        io.write_labels(tmp_path / "std" / "masks" / f"f{i}.tif", labels)
        io.write_labels(tmp_path / "masks_only" / "masks" / f"f{i}.tif", labels)
        io.write_tiff(tmp_path / "cellpose" / f"f{i}.tif", image.astype(np.uint16))
        io.write_labels(tmp_path / "cellpose" / f"f{i}_masks.tif", labels)
    std = realism.measure_folder(tmp_path / "std")
    assert std.n_fields == 4 and "contrast" in std.values
    assert set(realism.measure_folder(tmp_path / "masks_only").values) == set(MASK_STATISTICS)
    cellpose = realism.measure_folder(tmp_path / "cellpose")
    np.testing.assert_array_equal(cellpose["contrast"], std["contrast"])
    first, second = fields.halves(fields.list_fields(tmp_path / "std"))
    assert [f.name for f in first] == ["f0", "f2"] and [f.name for f in second] == ["f1", "f3"]
    report = realism.compare_folders(tmp_path / "std", tmp_path / "cellpose")
    assert report.statistics["area"].distance == 0.0 and report.n_real_fields == 4


def test_folder_errors_name_the_path(tmp_path):
    with pytest.raises(io.DataError, match="nowhere"):
        realism.measure_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(io.DataError, match="empty"):
        realism.measure_folder(tmp_path / "empty")
    image, labels = _field(0)
    io.write_tiff(tmp_path / "bad" / "images" / "a.tif", image[:32].astype(np.uint16))
    io.write_labels(tmp_path / "bad" / "masks" / "a.tif", labels)
    with pytest.raises(io.DataError, match="does not match"):
        realism.measure_folder(tmp_path / "bad")
