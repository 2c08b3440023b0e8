"""The p + CycleGAN baseline's data: the parametric colored-mask stream (moved from
tests/experiments/test_baselines.py with `nucgen_tf.data.polygon_masks`)."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf.config import PatchConfig, RenderConfig
from nucgen_tf.data import polygon_masks
from nucgen_tf.phantoms.polygons import PolygonConfig


def test_polygon_mask_stream_is_deterministic():
    polygons = PolygonConfig(shape=(32, 32), n_nuclei=(2, 3), radius=(3.0, 5.0))
    patch = PatchConfig(patch_shape=(32, 32), batch_size=2, seed=5)
    first = next(iter(polygon_masks.polygon_mask_dataset(polygons, patch, RenderConfig()))).numpy()
    second = next(iter(polygon_masks.polygon_mask_dataset(polygons, patch, RenderConfig()))).numpy()
    assert first.shape == (2, 32, 32, 4)
    assert first.min() >= -1.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, second)
    colored = first[..., :3].max(axis=-1) > -1.0
    boundary = first[..., 3] > 0.0
    assert colored.any() and boundary.any()
    assert np.all(colored[boundary])  # the boundary class lies on nuclei


def test_polygon_mask_stream_needs_the_patch_canvas():
    with pytest.raises(ValueError, match="canvas must be the patch"):
        polygon_masks.polygon_mask_dataset(
            PolygonConfig(shape=(64, 64)), PatchConfig(patch_shape=(32, 32)), RenderConfig()
        )
