"""3-class probabilities -> instance labels, any ndim: seeds, then seeded watershed.

1. Seeds: connected components (face connectivity) of P(interior) > `seed_threshold`.
   The network learns a boundary class between touching nuclei, so their interiors are
   separate components; seeds smaller than `min_seed_size` are dropped.
2. Foreground: P(interior) + P(boundary) > `foreground_threshold`.
3. Growth: `skimage.segmentation.watershed` of the seeds over the elevation
   1 - P(interior), restricted to the foreground. The boundary class is a ridge of that
   elevation between touching nuclei, so two growing seeds meet on the predicted boundary;
   the background probability would be flat (near 0) across a contact, leaving the split
   to the flooding order. Foreground pieces that hold no seed stay background.
4. Instances smaller than `min_size` are removed and the rest numbered 1..N.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from nucgen_tf.segment.config import InstanceConfig


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zeroes components smaller than `min_size` pixels; keeps label values."""
    if min_size <= 1 or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels = np.where(small[labels], 0, labels)
    return labels


def instances_from_probabilities(probs: np.ndarray, config: InstanceConfig | None = None) -> np.ndarray:
    """Instance labels from (background, interior, boundary) probabilities.

    Args:
        probs: (*spatial, 3) class probabilities (channel order of
            `nucgen_tf.models.segmenters.CLASSES`), spatial rank 2 or 3.
        config: thresholds and minimum sizes; defaults to `InstanceConfig()`.

    Returns:
        (*spatial) int32 labels, 0 = background, 1..N in raster order of the seeds.
    """
    probs = np.asarray(probs)
    if probs.ndim not in (3, 4) or probs.shape[-1] != 3:
        raise ValueError(
            f"`probs` must be (*spatial, 3) with 2 or 3 spatial axes. Received: shape={probs.shape}"
        )
    config = InstanceConfig() if config is None else config
    ndim = probs.ndim - 1
    interior = probs[..., 1].astype(np.float32)
    foreground = (interior + probs[..., 2]) > config.foreground_threshold
    face = ndi.generate_binary_structure(ndim, 1)
    seeds, n = ndi.label((interior > config.seed_threshold) & foreground, structure=face)
    if n == 0:
        return np.zeros(probs.shape[:-1], np.int32)
    seeds = _remove_small(seeds, config.min_seed_size)
    labels = watershed(1.0 - interior, markers=seeds, mask=foreground, connectivity=1)
    labels = _remove_small(labels, config.min_size)
    return relabel_sequential(labels)[0].astype(np.int32, copy=False)
