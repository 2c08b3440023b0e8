"""Evaluation of instance segmentations, 2D and 3D: the paper's pixel and instance F1, object F1, AP.

    >>> from nucgen_tf import eval as nuc_eval
    >>> scores = nuc_eval.score(y_true, y_pred)          # doctest: +SKIP
    >>> pooled = nuc_eval.pool([scores_a, scores_b])      # doctest: +SKIP
    >>> pooled.pixel_f1, pooled.instance_f1, pooled.object_f1, pooled.mean_ap  # doctest: +SKIP

`nucgen evaluate --pred DIR --truth DIR` scores folders of label TIFFs (nucgen_tf.eval.evaluate).
"""

from nucgen_tf.eval.matching import Matches, Overlap, check_label_pair, match, overlap_table
from nucgen_tf.eval.metrics import (
    DSB_THRESHOLDS,
    F1_FIGURES,
    PAPER_IOU,
    Counts,
    Scores,
    pool,
    score,
    scores_from_overlap,
)
from nucgen_tf.eval.touching import touching_flags

__all__ = [
    "DSB_THRESHOLDS",
    "F1_FIGURES",
    "PAPER_IOU",
    "Counts",
    "Matches",
    "Overlap",
    "Scores",
    "check_label_pair",
    "match",
    "overlap_table",
    "pool",
    "score",
    "scores_from_overlap",
    "touching_flags",
]
