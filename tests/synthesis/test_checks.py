"""Tests for nucgen_tf.synthesis.checks: labels per box and small labels of a decoded sample."""

from __future__ import annotations

import numpy as np

from nucgen_tf.geometry import Boxes
from nucgen_tf.synthesis.checks import mask_checks


def _discs(centers, radius: float, shape=(64, 64)) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(centers, start=1):
        labels[(grid[0] - y) ** 2 + (grid[1] - x) ** 2 <= radius**2] = k
    return labels


def test_one_whole_nucleus_per_box_passes():
    labels = _discs([(16, 16), (40, 44)], 8.0)
    boxes = Boxes([[16.0, 16.0], [40.0, 44.0]], [[17.0, 17.0], [17.0, 17.0]])
    assert mask_checks(labels, boxes, unmatched_boxes=0) == {
        "labels_per_box": 1.0,
        "small_label_share": 0.0,
        "flagged": False,
    }


def test_shattered_nuclei_are_flagged():
    labels = _discs([(16, 16), (40, 44)], 8.0)
    labels[labels == 1] = np.where(np.indices((64, 64))[1] < 16, 1, 3)[labels == 1]  # halves
    labels[(labels == 2) & (np.indices((64, 64))[0] < 38)] = 4
    labels[(labels == 2) & (np.indices((64, 64))[1] < 42)] = 5
    boxes = Boxes([[16.0, 16.0], [40.0, 44.0]], [[17.0, 17.0], [17.0, 17.0]])
    checks = mask_checks(labels, boxes, unmatched_boxes=0)
    assert checks["labels_per_box"] == 2.5 and checks["flagged"]
    assert checks["small_label_share"] > 0  # pieces under a quarter of the box oval
    assert not mask_checks(labels, boxes, unmatched_boxes=0, max_labels_per_box=3.0)["flagged"]


def test_boxes_without_a_label_do_not_count():
    labels = _discs([(16, 16)], 8.0)
    boxes = Boxes([[16.0, 16.0], [40.0, 44.0]], [[17.0, 17.0], [17.0, 17.0]])
    assert mask_checks(labels, boxes, unmatched_boxes=1)["labels_per_box"] == 1.0
    assert mask_checks(np.zeros((8, 8), np.int32), Boxes.empty(2), 0)["small_label_share"] is None
