"""Which nuclei touch another one: the clumps the paper's method is meant to help with.

The realism report (share of touching nuclei) and the scores on touching nuclei alone
(`nucgen_tf.eval.metrics`) use this one definition; any ndim.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def touching_flags(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per id in `ids`, True if one of its pixels has another nonzero label among its 3^ndim
    neighbours (diagonal contact counts: two nuclei meeting at a corner are one clump to a
    thresholding segmenter).

    Args:
        labels: integer label field, 0 = background.
        ids: (n,) labels > 0 present in `labels`.

    Returns:
        (n,) bool.
    """
    labels = np.asarray(labels)
    ids = np.asarray(ids, np.int64)
    if not len(ids):
        return np.zeros(0, bool)
    big = np.iinfo(labels.dtype).max if np.issubdtype(labels.dtype, np.integer) else np.inf
    larger = ndi.maximum_filter(labels, size=3, mode="constant", cval=0) != labels
    smaller = ndi.minimum_filter(np.where(labels > 0, labels, big), size=3, mode="constant", cval=big) != labels
    contact = (labels > 0) & (larger | smaller)
    return np.asarray(ndi.maximum(contact, labels, ids), bool).reshape(-1)
