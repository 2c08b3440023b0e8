"""The data of the p + CycleGAN baseline: parametric polygon masks (domain A) and real images (B).

Mahmood et al. (2019) train an unpaired CycleGAN between random star-convex polygon masks
(`nucgen_tf.phantoms.polygons`, sizes and counts fitted to the real training masks) and real
images. Here the masks are rendered as our stage 3's input (4-channel colored mask +
boundary), so the baseline trains in `trainers.stages` like the paper's stages and differs
from them only by this data. Element i of the mask stream draws from numpy
SeedSequence([seed, i, stream]): a seed fixes the stream, independent of thread scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from nucgen_tf import geometry, io
from nucgen_tf.config import PatchConfig, RenderConfig
from nucgen_tf.data import pipelines
from nucgen_tf.phantoms.polygons import PolygonConfig, fit_polygon_config, fit_spacing, polygon_labels

# Mixed into the training masks' seeds, so that they never share random numbers with the
# samples the baseline generates (`experiments.baselines`).
_TRAIN_STREAM = 0x9017


def fitted_polygons(
    data: io.PathLike, shape: Sequence[int], min_gap: int = 1, max_files: int = 0
) -> PolygonConfig:
    """Parametric mask settings fitted to the real masks of `data`, on a canvas of `shape`.

    Sizes, counts and the grid's anisotropy (`fit_spacing`) all come from the real masks
    (the first `max_files` of them when set, as the training images).
    """
    pairs = io.list_pairs(data)
    labels = [io.read_labels(p.mask_path) for p in (pairs[:max_files] if max_files else pairs)]
    return fit_polygon_config(labels, shape, min_gap=min_gap, spacing=fit_spacing(labels))


def colored_mask(labels: np.ndarray, render: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """(*spatial, 4) float32 colored mask + boundary in the stored range [0, 1]."""
    lut = geometry.color_labels(labels, render.color_margin, rng, oriented=render.oriented)
    return np.asarray(geometry.render_colored_mask(labels, lut, render.boundary_width), np.float32)


def polygon_mask_dataset(
    polygons: PolygonConfig, patch: PatchConfig, render: RenderConfig
) -> tf.data.Dataset:
    """Endless batches (B, *P, 4) of colored parametric masks in [-1, 1] (the CycleGAN's domain A).

    Element i draws its mask and coloring from SeedSequence([patch.seed, i, stream]).
    """
    if tuple(polygons.shape) != tuple(patch.patch_shape):
        raise ValueError(
            f"The parametric canvas must be the patch. Received: polygons.shape={polygons.shape}, "
            f"patch_shape={patch.patch_shape}"
        )
    shape = tuple(patch.patch_shape)

    def draw(index):
        rng = np.random.default_rng([patch.seed % 2**63, int(index), _TRAIN_STREAM])
        return colored_mask(polygon_labels(polygons, rng), render, rng)

    def draw_tf(index):
        stored = tf.numpy_function(draw, [index], tf.float32, stateful=False)
        return 2.0 * tf.ensure_shape(stored, shape + (4,)) - 1.0

    ds = tf.data.Dataset.counter().map(draw_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(patch.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def polygon_cyclegan_dataset(
    source: io.PathLike, polygons: PolygonConfig, patch: PatchConfig, render: RenderConfig, **images: Any
) -> tf.data.Dataset:
    """Unpaired (parametric colored masks (B, *P, 4), real image patches (B, *P, 1)) batches.

    Args:
        source: the real training folder (its images are domain B).
        polygons: the parametric masks (`fitted_polygons`), on the patch canvas.
        patch, render: the patches and colored masks of both domains.
        **images: `pipelines.patch_dataset` options of the image side (`norm`, `stats`, `max_files`).
    """
    masks = polygon_mask_dataset(polygons, patch, render)
    real = pipelines.patch_dataset(source, patch, render, training=True, outputs=(), **images)
    return pipelines.unpaired(masks, real.map(lambda d: d["image"]))
