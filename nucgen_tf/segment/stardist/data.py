"""StarDist's training data: whole images normalized its way, and the patch stream.

Per patch the real or the extra (synthetic) set is picked with probability `extra_fraction`
for extra, an image uniformly, a crop uniformly, then random flips and YX rot90. Every
random choice is drawn from `numpy.random.default_rng((seed, step))`, so a resumed run
continues the same patch stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nucgen_tf import io
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment import schedule
from nucgen_tf.segment.data import LabeledImages
from nucgen_tf.segment.stardist.config import StardistTrainConfig
from nucgen_tf.segment.stardist.network import normalize_image


def load_images(pairs: Sequence[io.ImagePair], config: StardistTrainConfig) -> LabeledImages:
    """Reads and normalizes every pair (`nucgen_tf.io`, checked for `config.ndim`)."""
    return seg_data.read_images(pairs, config.ndim, lambda image: normalize_image(image, config.percentiles))


def _crop(image: np.ndarray, labels: np.ndarray, patch_shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random crop; sources smaller than the patch are padded (image with its
    minimum, labels with background)."""
    pads = [(0, max(p - s, 0)) for s, p in zip(image.shape, patch_shape)]
    if any(after for _, after in pads):
        image = np.pad(image, pads, constant_values=float(image.min()))
        labels = np.pad(labels, pads)
    starts = [int(rng.integers(0, s - p + 1)) for s, p in zip(image.shape, patch_shape)]
    window = tuple(slice(a, a + p) for a, p in zip(starts, patch_shape))
    return image[window], labels[window]


def sample_batch(
    real: LabeledImages, extra: LabeledImages | None, config: StardistTrainConfig, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batch `step` of the patch stream: (images (B, *P) float32, labels (B, *P) int32).

    A pure function of (config.seed, step), so a resumed run draws the batches it would
    have drawn without the interruption.
    """
    rng = np.random.default_rng((config.seed, step))
    fraction = schedule.extra_fraction_at(config, step)
    use_extra = extra is not None and len(extra) > 0 and fraction > 0
    xs, ys = [], []
    for _ in range(config.batch_size):
        chosen = extra if use_extra and rng.random() < fraction else real
        k = int(rng.integers(len(chosen)))
        x, y = _crop(chosen.images[k], chosen.labels[k], config.patch_shape, rng)
        if config.flips:
            for axis in range(config.ndim):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
        if config.rot90:
            turns = int(rng.integers(4))
            x, y = np.rot90(x, turns, axes=(-2, -1)), np.rot90(y, turns, axes=(-2, -1))
        xs.append(np.ascontiguousarray(x, np.float32))
        ys.append(np.ascontiguousarray(y, np.int32))
    return np.stack(xs), np.stack(ys)
