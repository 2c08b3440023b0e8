"""Tests of 3-class probabilities -> instance labels."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf import eval as nuc_eval
from nucgen_tf import phantoms
from nucgen_tf.segment.config import InstanceConfig
from nucgen_tf.segment.instances import instances_from_probabilities
from nucgen_tf.segment.targets import one_hot, three_class_target

KEEP_ALL = InstanceConfig(min_seed_size=1, min_size=1)


def _blocks(ndim: int) -> np.ndarray:
    """Three boxes: two touching along a face, one apart; labels 1, 2, 3 in raster order."""
    labels = np.zeros((8, 24, 24) if ndim == 3 else (24, 24), np.int32)
    lead = (slice(1, 7),) if ndim == 3 else ()
    labels[lead + (slice(2, 10), slice(2, 10))] = 1
    labels[lead + (slice(2, 10), slice(10, 17))] = 2
    labels[lead + (slice(14, 22), slice(5, 13))] = 3
    return labels


@pytest.mark.parametrize("ndim", [2, 3])
def test_perfect_maps_reproduce_touching_blocks(ndim):
    labels = _blocks(ndim)
    out = instances_from_probabilities(one_hot(three_class_target(labels)), KEEP_ALL)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("ndim", [2, 3])
def test_perfect_maps_of_phantom_nuclei(ndim):
    """Clumped ellipsoidal nuclei: every nucleus found, all pixels but a few contact corners right."""
    shape = (128, 128) if ndim == 2 else (24, 64, 64)
    _, labels = phantoms.example(ndim, shape=shape, seed=0)
    out = instances_from_probabilities(one_hot(three_class_target(labels)), KEEP_ALL)
    scores = nuc_eval.score(labels, out)
    assert scores.n_pred == scores.n_true == labels.max() > 5
    assert scores.pixel_f1 == 1.0
    assert scores.objects_at(0.9).f1 == 1.0
    assert scores.instance_matched.f1 > 0.99


def test_soft_probabilities_and_thresholds():
    """Seeds come from P(interior) > seed_threshold; growth stops where background wins."""
    labels = _blocks(2)
    probs = 0.8 * one_hot(three_class_target(labels)) + 0.2 / 3
    out = instances_from_probabilities(probs, KEEP_ALL)
    np.testing.assert_array_equal(out, labels)
    # No pixel has P(interior) > 0.9: no seeds, no nuclei.
    none = instances_from_probabilities(
        probs, InstanceConfig(seed_threshold=0.9, min_seed_size=1, min_size=1)
    )
    assert none.max() == 0 and none.shape == labels.shape


def test_min_size_and_min_seed_size():
    labels = np.zeros((20, 20), np.int32)
    labels[2:12, 2:12] = 1  # 100 px, 64 px interior
    labels[14:18, 14:18] = 2  # 16 px, 4 px interior
    probs = one_hot(three_class_target(labels))
    np.testing.assert_array_equal(instances_from_probabilities(probs, KEEP_ALL), labels)
    big_only = (labels == 1).astype(np.int32)
    np.testing.assert_array_equal(
        instances_from_probabilities(probs, InstanceConfig(min_seed_size=1, min_size=17)), big_only
    )
    np.testing.assert_array_equal(
        instances_from_probabilities(probs, InstanceConfig(min_seed_size=5, min_size=1)), big_only
    )


def test_empty_probabilities():
    probs = np.zeros((16, 16, 3), np.float32)
    probs[..., 0] = 1.0
    out = instances_from_probabilities(probs)
    assert out.shape == (16, 16) and out.dtype == np.int32 and out.max() == 0


def test_rejects_wrong_channels():
    with pytest.raises(ValueError, match="spatial, 3"):
        instances_from_probabilities(np.zeros((8, 8, 2), np.float32))


def test_config_rejects_threshold_of_one():
    with pytest.raises(ValueError, match="seed_threshold"):
        InstanceConfig(seed_threshold=1.0)
