"""Tests of the data-set-bounded percentile normalization."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from nucgen_tf.config import NormConfig
from nucgen_tf.data import normalize as nz


@pytest.fixture(scope="module")
def train_arrays(bbbc039_train):
    """All BBBC039 train images (uint16) and label masks, sorted by name."""
    names = sorted(p.name for p in (bbbc039_train / "images").glob("*.tif"))
    images = [tifffile.imread(bbbc039_train / "images" / n) for n in names]
    labels = [tifffile.imread(bbbc039_train / "masks" / n) for n in names]
    return images, labels


@pytest.fixture(scope="module")
def train_stats(train_arrays):
    return nz.dataset_intensity_stats(train_arrays[0], NormConfig())


def test_stats_of_bbbc039(train_stats):
    assert train_stats.dtype == "uint16"
    assert train_stats.max_value == 4095.0  # 12-bit data stored as uint16.
    assert train_stats.num_images == 20
    assert 100 < train_stats.low < 200  # Camera offset, well above 0.
    assert train_stats.high - train_stats.low > 500
    assert train_stats.span > 0


def test_stats_json_round_trip(train_stats):
    restored = nz.IntensityStats.from_dict(json.loads(json.dumps(train_stats.to_dict())))
    assert restored == train_stats


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_denormalize_inverts_normalize(dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(100, 4000, size=(17, 23)).astype(dtype)
    lo, hi = float(image.min()), float(image.max())
    x = nz.normalize(image, lo, hi)
    assert x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    back = nz.denormalize(x, lo, hi, dtype)
    assert back.dtype == dtype
    if np.issubdtype(dtype, np.integer):
        np.testing.assert_array_equal(back, image)
    else:
        np.testing.assert_allclose(back, image, rtol=1e-5)


def test_denormalize_clips_integer_range_and_max_value():
    out = nz.denormalize(np.array([-1.0, 0.0, 1.0, 3.0]), 100.0, 5000.0, np.uint16, max_value=4095)
    np.testing.assert_array_equal(out, [100, 2550, 4095, 4095])


def test_normalize_rejects_empty_range():
    with pytest.raises(ValueError, match="hi"):
        nz.normalize(np.zeros((4, 4)), 3.0, 3.0)


def test_stats_reject_no_images():
    with pytest.raises(ValueError, match="no images"):
        nz.dataset_intensity_stats([], NormConfig())


def test_stats_reject_flat_data_set():
    with pytest.raises(ValueError, match="no contrast"):
        nz.dataset_intensity_stats([np.full((8, 8), 7, np.uint16)], NormConfig())


def test_real_image_nuclei_bright_background_dark(train_arrays, train_stats):
    config = NormConfig()
    image, labels = train_arrays[0][0], train_arrays[1][0]
    lo, hi = nz.image_range(image, train_stats, config)
    x = nz.normalize(image, lo, hi)
    far = ndi.distance_transform_edt(labels == 0) > 20
    assert np.median(x[far]) < -0.9
    assert np.median(x[labels > 0]) > -0.2
    # The brightest nuclei reach the top of the range.
    assert np.percentile(x[labels > 0], 99) > 0.95


@pytest.mark.parametrize("index", [0, 1])
def test_empty_field_stays_dark(train_arrays, train_stats, index):
    """A field of pure camera background must not be stretched into fake nuclei.

    The field is resampled from a real image's pixels that lie > 20 px from every
    annotated nucleus (the first two train images, whose far background holds no
    unannotated debris).
    """
    config = NormConfig()
    image, labels = train_arrays[0][index], train_arrays[1][index]
    background = image[ndi.distance_transform_edt(labels == 0) > 20]
    field = np.random.default_rng(index).choice(background, size=(256, 256))
    lo, hi = nz.image_range(field, train_stats, config)
    x = nz.normalize(field, lo, hi)
    assert np.mean(x < -0.5) >= 0.999
    # Control: a plain per-image percentile stretch makes most of that noise look bright,
    # so the assertion above is not trivially true.
    plain = nz.normalize(field, *np.percentile(field, (config.low_percentile, config.high_percentile)))
    assert np.mean(plain > -0.5) > 0.5


def test_constant_field_gives_finite_dark_output(train_stats):
    field = np.full((32, 32), 150, np.uint16)
    lo, hi = nz.image_range(field, train_stats, NormConfig())
    assert hi > lo
    x = nz.normalize(field, lo, hi)
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, -1.0)


def test_image_range_keeps_bright_image_span(train_arrays, train_stats):
    """A normal image's own percentiles win over the floor."""
    config = NormConfig()
    image = train_arrays[0][0]
    lo, hi = nz.image_range(image, train_stats, config)
    p_lo, p_hi = np.percentile(image, (config.low_percentile, config.high_percentile))
    assert (lo, hi) == (pytest.approx(p_lo), pytest.approx(p_hi))


# ----- cached statistics keyed by their source files (issue 18, item 1) -----


def _write_images(folder, scales):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scale in enumerate(scales):
        path = folder / f"i{i}.tif"
        tifffile.imwrite(path, (np.arange(256, dtype=np.uint16).reshape(16, 16) * scale).astype(np.uint16))
        paths.append(path)
    return paths


def test_cached_stats_recomputed_when_source_files_change(tmp_path):
    cache = tmp_path / "run" / "intensity_stats.json"
    paths = _write_images(tmp_path / "data", [1, 1])
    first = nz.cached_intensity_stats(cache, paths, NormConfig())
    # The user "fixes the data": same names, new content (and a new size/mtime).
    _write_images(tmp_path / "data", [4, 4])
    second = nz.cached_intensity_stats(cache, paths, NormConfig())
    assert second.max_value == 4 * first.max_value
    assert json.loads(cache.read_text())["max_value"] == second.max_value


def test_cached_stats_reused_when_source_files_are_unchanged(tmp_path):
    cache = tmp_path / "intensity_stats.json"
    paths = _write_images(tmp_path / "data", [1, 2])
    first = nz.cached_intensity_stats(cache, paths, NormConfig())
    record = json.loads(cache.read_text())
    record["max_value"] = 12345.0  # Marks the file: a reuse returns it unchanged.
    cache.write_text(json.dumps(record))
    assert nz.cached_intensity_stats(cache, paths, NormConfig()).max_value == 12345.0
    assert first.max_value != 12345.0


def test_cached_stats_recomputed_when_a_file_is_added(tmp_path):
    cache = tmp_path / "intensity_stats.json"
    paths = _write_images(tmp_path / "data", [1, 1])
    nz.cached_intensity_stats(cache, paths, NormConfig())
    more = _write_images(tmp_path / "data", [1, 1, 8])
    assert nz.cached_intensity_stats(cache, more, NormConfig()).num_images == 3


def test_cached_stats_recompute_an_old_file_without_record(tmp_path, caplog):
    cache = tmp_path / "intensity_stats.json"
    paths = _write_images(tmp_path / "data", [2])
    old = nz.IntensityStats(low=1.0, high=2.0, span=1.0, max_value=3.0, num_images=1)
    cache.write_text(json.dumps(old.to_dict()))  # As written before the source record existed.
    with caplog.at_level("INFO", logger="absl"):
        stats = nz.cached_intensity_stats(cache, paths, NormConfig())
    assert stats.max_value == 510.0
    assert "no record of the files" in caplog.text
    assert "source" in json.loads(cache.read_text())


def test_cached_stats_recomputed_for_other_percentiles(tmp_path):
    cache = tmp_path / "intensity_stats.json"
    paths = _write_images(tmp_path / "data", [1])
    first = nz.cached_intensity_stats(cache, paths, NormConfig())
    second = nz.cached_intensity_stats(cache, paths, NormConfig(high_percentile=50.0))
    assert second.high < first.high
