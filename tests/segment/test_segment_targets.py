"""Tests of labels -> 3-class targets."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf.segment.targets import BACKGROUND, BOUNDARY, INTERIOR, one_hot, three_class_target


def _touching_pair_2d() -> np.ndarray:
    labels = np.zeros((7, 9), np.int32)
    labels[1:6, 1:5] = 1
    labels[1:6, 5:8] = 2
    return labels


def test_touching_pair_2d_exact():
    target = three_class_target(_touching_pair_2d())
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 2, 2, 2, 2, 2, 2, 2, 0],
            [0, 2, 1, 1, 2, 2, 1, 2, 0],
            [0, 2, 1, 1, 2, 2, 1, 2, 0],
            [0, 2, 1, 1, 2, 2, 1, 2, 0],
            [0, 2, 2, 2, 2, 2, 2, 2, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(target, expected)
    assert target.dtype == np.uint8


@pytest.mark.parametrize("ndim", [2, 3])
def test_cube_counts(ndim):
    """A 4^ndim block: a 2^ndim core is interior, the rest of the block boundary."""
    labels = np.zeros((8,) * ndim, np.int32)
    labels[(slice(2, 6),) * ndim] = 5
    target = three_class_target(labels)
    assert np.count_nonzero(target == INTERIOR) == 2**ndim
    assert np.count_nonzero(target == BOUNDARY) == 4**ndim - 2**ndim
    assert np.count_nonzero(target == BACKGROUND) == 8**ndim - 4**ndim


@pytest.mark.parametrize("ndim", [2, 3])
def test_width_two(ndim):
    labels = np.zeros((10,) * ndim, np.int32)
    labels[(slice(1, 9),) * ndim] = 1
    target = three_class_target(labels, width=2)
    assert np.count_nonzero(target == INTERIOR) == 4**ndim
    assert np.count_nonzero(target == BOUNDARY) == 8**ndim - 4**ndim


def test_canvas_edge_is_not_boundary():
    """A nucleus cut by the image border has no boundary along the border."""
    labels = np.zeros((6, 6), np.int32)
    labels[:, :3] = 1
    target = three_class_target(labels)
    np.testing.assert_array_equal(target[:, :2], INTERIOR)
    np.testing.assert_array_equal(target[:, 2], BOUNDARY)


def test_touching_interiors_never_touch():
    """Between two touching nuclei both sides are boundary: interiors are face-separated."""
    from scipy import ndimage as ndi

    target = three_class_target(_touching_pair_2d())
    _, n = ndi.label(target == INTERIOR)
    assert n == 2


def test_one_hot():
    target = np.array([[0, 1], [2, 1]], np.uint8)
    probs = one_hot(target)
    assert probs.shape == (2, 2, 3) and probs.dtype == np.float32
    np.testing.assert_array_equal(probs.argmax(-1), target)
    np.testing.assert_array_equal(probs.sum(-1), 1.0)


def test_rejects_float_labels():
    with pytest.raises(ValueError, match="integers"):
        three_class_target(np.zeros((4, 4), np.float32))


def test_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        three_class_target(np.zeros((4, 4), np.int32), width=0)
