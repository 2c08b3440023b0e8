"""Tests for nucgen_tf.sensor: the Poisson-Gaussian camera model, its fit and its draws."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf import io
from nucgen_tf.sensor import SensorModel, block_samples, fit_sensor


def _flat_fields(model: SensorModel, rng: np.random.Generator, n: int = 40) -> list[np.ndarray]:
    """Flat fields from dark to bright (levels 20-2000) read through a known camera."""
    return [model.apply(np.full((192, 192), level), rng, np.uint16) for level in np.geomspace(20, 2000, n)]


@pytest.mark.parametrize("gain, read_noise", [(0.3, 4.0), (1.0, 8.0), (0.15, 2.0)])
def test_fit_recovers_a_planted_gain_and_read_noise_within_10_percent(gain, read_noise):
    true = SensorModel(gain, read_noise**2, 4095.0)
    fitted = fit_sensor(_flat_fields(true, np.random.default_rng(1)), max_value=4095)
    assert fitted.gain == pytest.approx(gain, rel=0.1)
    assert fitted.read_noise == pytest.approx(read_noise, rel=0.1)
    assert fitted.fitted_on["images"] == 40


def test_fit_ignores_edges_of_bright_objects():
    """Blocks straddling an object's edge have large variance; the low quantile skips them."""
    true = SensorModel(0.3, 16.0, 4095.0)
    rng = np.random.default_rng(2)
    grid = np.indices((192, 192))
    fields = []
    for level in np.geomspace(20, 2000, 40):
        clean = np.full((192, 192), level)
        clean[(grid[0] - 96) ** 2 + (grid[1] - 96) ** 2 < 50**2] = 3 * level  # a bright disc
        fields.append(true.apply(clean, rng, np.uint16))
    assert fit_sensor(fields, max_value=4095).gain == pytest.approx(0.3, rel=0.1)


def test_apply_draws_the_model_variance_and_keeps_the_mean():
    model = SensorModel(0.5, -50.0, 4095.0)  # pedestal 100: no shot noise below it
    rng = np.random.default_rng(0)
    for level in (150.0, 900.0):
        noisy = model.apply(np.full((256, 256), level), rng, np.float64)
        assert noisy.mean() == pytest.approx(level, abs=0.5)
        assert noisy.var() == pytest.approx(0.5 * level - 50.0, rel=0.05)
    assert model.pedestal == 100.0 and model.read_noise == 0.0


def test_apply_is_reproducible_and_clips_to_the_integer_range():
    model = SensorModel(2.0, 25.0, 4095.0)
    clean = np.array([[0, 10, 4090, 4095]], np.uint16)
    a = model.apply(clean, np.random.default_rng(5))
    b = model.apply(clean, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint16 and a.max() <= 4095


def test_block_samples_see_white_noise_and_ignore_a_ramp():
    rng = np.random.default_rng(3)
    ramp = np.add.outer(np.arange(128.0), 2.0 * np.arange(128.0))
    means, variances = block_samples(ramp + rng.normal(0, 3.0, ramp.shape))
    assert len(means) == 16 * 16
    assert np.median(variances) == pytest.approx(9.0, rel=0.25)


def test_round_trip_and_bad_manifest_entries():
    model = SensorModel(0.48, -53.2, 4095.0, {"images": 20})
    assert SensorModel.from_dict(model.to_dict()) == model
    with pytest.raises(ValueError, match="Unknown sensor model"):
        SensorModel.from_dict({"model": "gaussian", "gain": 1, "offset_variance": 0, "max_value": 1})
    with pytest.raises(ValueError, match="gain"):
        SensorModel(0.0, 1.0)


def test_fit_on_real_bbbc039_matches_its_background_noise(bbbc039_train):
    pairs = io.list_pairs(bbbc039_train)
    model = fit_sensor((io.read_image(p.image_path, 2) for p in pairs), max_value=4095)
    # The real background (~150 gray levels) has a noise std of ~4.4-4.8 (docs/realism.md).
    assert 3.8 < model.noise_std(150.0) < 5.2
    assert model.gain > 0.1
