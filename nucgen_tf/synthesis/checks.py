"""Are a sample's masks whole nuclei? A cheap per-sample check beside the alignment check.

The alignment check compares foregrounds only, so it stayed at 0.92-0.98 while the old
decoder shattered every nucleus into 2-9 pieces. Stage 2 exists to give one shape to each
stage-1 box, so two numbers catch a shattered mask without any reference data:

- `labels_per_box`: final labels / boxes that got a label (1.0 = one nucleus per box; the
  decoder may add box-less nuclei, so slightly above 1 is legitimate).
- `small_label_share`: share of labels smaller than a quarter of the median box oval
  (scale-free, any ndim; ~150 px for BBBC039's ~600-px nuclei, where real masks hold 9 %).

A sample is flagged when labels_per_box > `max_labels_per_box`.
"""

from __future__ import annotations

import numpy as np

from nucgen_tf.geometry import Boxes, oval_volume

SMALL_FRACTION = 0.25


def mask_checks(
    labels: np.ndarray, boxes: Boxes, unmatched_boxes: int, max_labels_per_box: float = 1.5
) -> dict:
    """{labels_per_box, small_label_share, flagged} of one decoded sample (JSON-ready).

    Args:
        labels: (*spatial) final instance labels 1..N.
        boxes: the stage-1 boxes the labels were decoded from.
        unmatched_boxes: boxes that got no label (the decoder's `n_unmatched_boxes`).
        max_labels_per_box: flag threshold.
    """
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    sizes = sizes[sizes > 0]
    with_label = len(boxes) - int(unmatched_boxes)
    per_box = len(sizes) / with_label if with_label > 0 else (0.0 if len(sizes) == 0 else float(len(sizes)))
    small = None
    if len(boxes) and len(sizes):
        floor = SMALL_FRACTION * float(np.median(oval_volume(boxes.extents)))
        small = float(np.mean(sizes < floor))
    return {
        "labels_per_box": round(float(per_box), 4),
        "small_label_share": None if small is None else round(small, 4),
        "flagged": bool(per_box > max_labels_per_box),
    }
