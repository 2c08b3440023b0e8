"""The report ranks real BBBC039 data and its degraded copies as a person would."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf import realism
from nucgen_tf.realism.measurements import STATISTICS, Measurements


@pytest.fixture(scope="module")
def reports(real_fields, cases):
    halves = (realism.measure(real_fields[0::2]), realism.measure(real_fields[1::2]))
    real = Measurements.concat(halves)
    return {name: realism.compare(real, realism.measure(fields), halves) for name, fields in cases.items()}


def test_other_real_data_sits_near_the_floor(reports):
    other = reports["other"].statistics
    assert set(other) == set(STATISTICS)
    ratios = np.asarray([c.ratio for c in other.values()])
    assert np.median(ratios) < 1.5
    assert ratios.max() < 4.0
    assert max(c.distance for c in other.values()) < 0.7


def test_real_measurements_match_known_bbbc039_figures(reports):
    s = reports["other"].statistics
    assert 500 < s["area"].real_median < 800
    assert 1.4 < s["aspect_ratio"].real_median < 1.7
    assert 0.95 < s["solidity"].real_median < 0.98
    assert 0.15 < s["touching"].real_mean < 0.4
    assert 0.03 < s["small"].real_mean < 0.15
    assert 0.18 < s["texture"].real_median < 0.3
    assert 0.18 < s["edge_sharpness"].real_median < 0.3
    assert 3.5 < s["background_noise"].real_median < 6.0


@pytest.mark.parametrize("name", ["area", "solidity", "touching"])
def test_shattered_masks_are_clearly_worse(reports, name):
    shattered, other = reports["shattered"].statistics[name], reports["other"].statistics[name]
    assert shattered.distance > 3 * other.distance
    assert shattered.ratio > 3


def test_shattered_masks_move_the_right_way(reports):
    s = reports["shattered"].statistics
    assert s["area"].synthetic_median < s["area"].real_median / 3
    assert s["solidity"].synthetic_median < s["solidity"].real_median
    assert s["touching"].synthetic_mean > 0.9
    assert s["clump_size"].synthetic_median >= 3


def test_blurred_images_lose_edge_sharpness(reports):
    blurred, other = (
        reports["blurred"].statistics["edge_sharpness"],
        reports["other"].statistics["edge_sharpness"],
    )
    assert blurred.distance > 3 * other.distance
    assert blurred.synthetic_median < 0.8 * blurred.real_median


def test_noise_free_background_is_caught(reports):
    noise_free = reports["noise_free"].statistics["background_noise"]
    other = reports["other"].statistics["background_noise"]
    assert noise_free.distance > 3 * other.distance
    assert noise_free.synthetic_median < 0.3 * noise_free.real_median
    # the nuclei are untouched, so their statistics stay where real data puts them
    assert reports["noise_free"].statistics["texture"].distance == pytest.approx(
        reports["other"].statistics["texture"].distance, abs=0.1
    )
