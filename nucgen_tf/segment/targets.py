"""Instance labels -> 3-class training targets (background / interior / boundary), any ndim.

The boundary class is the inner boundary of every instance (`geometry.boundary_map`): the
pixels of a nucleus that have a face-neighbour of another label or of background, widened
inward by `width` face-steps. Where two nuclei touch, both sides get boundary, so their
interiors never touch and the interior class alone separates them; this is the target of
the 3-class U-Nets used on BBBC039 and the DSB 2018 (Caicedo et al. 2019). The canvas edge
is not a boundary, so a target computed on a whole image and then cropped equals the
target of the crop everywhere except where a crop cuts through a nucleus.
"""

from __future__ import annotations

import numpy as np

from nucgen_tf.geometry import boundary_map

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def three_class_target(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Class index per pixel: 0 background, 1 interior, 2 boundary.

    Args:
        labels: (*spatial) integer instance labels, 0 = background.
        width: boundary width in pixels (face-steps inward from the outline), >= 1.

    Returns:
        (*spatial) uint8 class map.

    Example:
        >>> three_class_target(np.array([[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 2, 2, 2]]))
        array([[0, 2, 1, 1],
               [0, 2, 1, 1],
               [0, 2, 2, 2],
               [0, 2, 2, 2]], dtype=uint8)
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be integers. Received: dtype={labels.dtype}")
    if labels.ndim not in (2, 3):
        raise ValueError(f"`labels` must be 2D or 3D. Received: shape={labels.shape}")
    target = (labels != 0).astype(np.uint8)  # INTERIOR where foreground
    target[boundary_map(labels, width)] = BOUNDARY
    return target


def one_hot(target: np.ndarray) -> np.ndarray:
    """(*spatial) class map -> (*spatial, 3) float32 one-hot probabilities."""
    target = np.asarray(target)
    if target.size and (target.min() < 0 or target.max() > BOUNDARY):
        raise ValueError(
            f"`target` must hold classes 0, 1, 2. Received: range [{target.min()}, {target.max()}]"
        )
    return np.eye(3, dtype=np.float32)[target.astype(np.intp)]
