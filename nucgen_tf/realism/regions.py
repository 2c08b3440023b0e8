"""The nuclei of a label field as small windows, so per-nucleus work never scans the whole field.

Shared by the shape and the intensity statistics; any ndim.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage as ndi


def nucleus_windows(labels: np.ndarray, pad: int = 1) -> Iterator[tuple[int, tuple[slice, ...]]]:
    """Yields `(label, window)` per present label, its bounding box grown by `pad` (clipped).

    Labels may have gaps (in-memory masks are not relabelled); missing labels are skipped.
    """
    for index, box in enumerate(ndi.find_objects(labels)):
        if box is None:
            continue
        window = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, labels.shape))
        yield index + 1, window


def cut_by_border(labels: np.ndarray) -> dict[int, bool]:
    """label -> True if the nucleus touches the field's edge (its true shape is unknown)."""
    return {
        label: any(s.start == 0 or s.stop == n for s, n in zip(window, labels.shape))
        for label, window in nucleus_windows(labels, pad=0)
    }


def present_labels(labels: np.ndarray) -> np.ndarray:
    """The labels > 0 that occur, ascending (the order of every per-nucleus array)."""
    return np.asarray([label for label, _ in nucleus_windows(labels, pad=0)], dtype=np.int64)
