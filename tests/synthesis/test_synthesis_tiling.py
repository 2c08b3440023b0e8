"""Tiling: any canvas size comes back at its size; tiles with enough overlap equal one pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from nucgen_tf.synthesis import tiling


def _local_mean(x: np.ndarray) -> np.ndarray:
    """3x3(x3) mean with zero padding at the borders of whatever it is given (receptive radius 1)."""
    size = (1,) + (3,) * (x.ndim - 2) + (1,)
    return ndimage.uniform_filter(x, size=size, mode="constant", cval=0.0)


def _calls(fn, log):
    def wrapped(x):
        log.append(x.shape)
        return fn(x)

    return wrapped


@pytest.mark.parametrize(
    "ndim, shape, divisor, tile, overlap",
    [
        (2, (70, 93), 4, 32, 8),
        (2, (64, 64), (4, 8), (24, 40), (8, 16)),
        (3, (9, 37, 30), 2, (8, 16, 16), 4),
        (3, (5, 40, 41), (1, 4, 4), (0, 20, 20), 8),
    ],
)
def test_tiled_equals_one_pass_when_overlap_covers_the_receptive_field(ndim, shape, divisor, tile, overlap):
    rng = np.random.default_rng(ndim)
    x = rng.normal(size=(2, *shape, 3)).astype(np.float32)
    log = []
    whole = tiling.run_tiled(_local_mean, x, divisor, tile=None, overlap=overlap)
    tiled = tiling.run_tiled(_calls(_local_mean, log), x, divisor, tile=tile, overlap=overlap, batch_size=3)
    assert whole.shape == tiled.shape == x.shape
    assert len(log) > 2  # really tiled, in batches of <= 3 tiles
    assert all(s[0] <= 3 for s in log)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # One pass is the function on the padded canvas, cropped: compare with a NumPy reference.
    plan = tiling.plan_tiles(shape, divisor)
    padded = np.pad(
        x, [(0, 0)] + [(0, p - s) for p, s in zip(plan.padded, shape)] + [(0, 0)], constant_values=-1
    )
    reference = _local_mean(padded)[(slice(None),) + tuple(slice(0, s) for s in shape)]
    np.testing.assert_array_equal(whole, reference)


def test_too_small_overlap_shows_seams_so_the_equality_test_can_fail():
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 1)).astype(np.float32)
    whole = tiling.run_tiled(_local_mean, x, 4, tile=None)
    # Exact needs overlap >= 4 r - 2 (the edge pixel must get weight 0); 1 px leaves it at 0.5.
    tiled = tiling.run_tiled(_local_mean, x, 1, tile=32, overlap=1)
    assert np.abs(tiled - whole).max() > 1e-3
    np.testing.assert_allclose(tiling.run_tiled(_local_mean, x, 1, tile=32, overlap=2), whole, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_any_canvas_size_comes_back_at_its_size_and_the_network_sees_divisor_multiples(ndim):
    shapes = [(1, 1), (7, 13), (33, 64)] if ndim == 2 else [(1, 1, 1), (3, 10, 17)]
    for shape, tile in itertools.product(shapes, (None, 16)):
        x = np.random.default_rng(1).uniform(-1, 1, (1, *shape, 2)).astype(np.float32)
        log = []
        out = tiling.run_tiled(_calls(lambda v: v[..., :1] * 2, log), x, 8, tile=tile, overlap=8)
        assert out.shape == (1, *shape, 1)
        np.testing.assert_allclose(out[..., 0], 2 * x[..., 0], rtol=1e-6)
        assert all(s % 8 == 0 for call in log for s in call[1:-1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_tile_plan_covers_the_canvas_with_divisor_aligned_tiles_and_positive_weights(ndim):
    rng = np.random.default_rng(ndim)
    for _ in range(40):
        divisor = int(rng.choice([1, 2, 4, 8]))
        shape = tuple(int(s) for s in rng.integers(1, 80, ndim))
        tile = int(rng.integers(max(8, 2 * divisor), 48)) // divisor * divisor
        overlap = int(rng.integers(1, tile - divisor + 1))
        plan = tiling.plan_tiles(shape, divisor, tile, overlap)
        total = np.zeros(plan.padded)
        for window, index in plan.windows():
            assert all(w.start % divisor == 0 and w.stop <= p for w, p in zip(window, plan.padded))
            total[window] += plan.weight(index)
        assert total.min() > 0, (shape, divisor, tile, overlap)
        for starts, t, p in zip(plan.starts, plan.tile, plan.padded):
            assert starts[0] == 0 and starts[-1] + t == p
            assert all(a + t - b >= overlap for a, b in zip(starts[:-1], starts[1:]))


def test_bad_overlap_is_rejected_with_its_value():
    with pytest.raises(ValueError, match="overlap=30"):
        tiling.plan_tiles((100, 100), 4, tile=32, overlap=30)
