"""Layer factories and stride bookkeeping of nucgen_tf.models.layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nucgen_tf.models import layers as L

SPATIAL = {2: (16, 12), 3: (4, 8, 6)}


@pytest.mark.parametrize("ndim", [2, 3])
def test_conv_picks_rank_and_halves_with_stride(ndim):
    layer = L.conv(ndim, 5, 3, 2)
    assert isinstance(layer, {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[ndim])
    x = np.zeros((2, *SPATIAL[ndim], 3), np.float32)
    assert tuple(layer(x).shape) == (2, *(s // 2 for s in SPATIAL[ndim]), 5)


def test_conv_per_axis_stride_keeps_z():
    x = np.zeros((1, 4, 8, 6, 2), np.float32)
    assert tuple(L.conv(3, 3, 3, (1, 2, 2))(x).shape) == (1, 4, 4, 3, 3)


@pytest.mark.parametrize("ndim", [2, 3])
def test_upsampling_layers_double(ndim):
    x = np.zeros((1, *SPATIAL[ndim], 3), np.float32)
    doubled = (1, *(2 * s for s in SPATIAL[ndim]))
    assert tuple(L.conv_transpose(ndim, 4, 2, 2)(x).shape) == doubled + (4,)
    assert tuple(L.upsample(ndim, 2)(x).shape) == doubled + (3,)


@pytest.mark.parametrize("ndim", [2, 3])
def test_instance_norm_matches_numpy(ndim):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (2, *SPATIAL[ndim], 3)).astype(np.float32)
    x[1, ..., 2] *= 10.0  # per-sample, per-channel statistics must not mix
    axes = tuple(range(1, ndim + 1))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3)
    got = np.asarray(L.instance_norm()(x))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_instance_norm_has_no_weights():
    layer = L.instance_norm()
    layer(np.zeros((1, 4, 4, 2), np.float32))
    assert layer.weights == []


def test_activation_kinds():
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_allclose(L.activation("leaky_relu")(x), [[-0.2, 2.0]], atol=1e-6)
    np.testing.assert_allclose(L.activation("relu")(x), [[0.0, 2.0]])
    np.testing.assert_allclose(L.activation("tanh")(x), np.tanh(x), atol=1e-6)


def test_activation_rejects_unknown():
    with pytest.raises(ValueError, match="kind='gelu'"):
        L.activation("gelu")


def test_conv_rejects_ndim():
    with pytest.raises(ValueError, match="ndim=1"):
        L.conv(1, 4)


def test_as_stride():
    assert L.as_stride(3, 2) == (2, 2, 2)
    assert L.as_stride(3, [1, 2, 2]) == (1, 2, 2)


def test_as_stride_rejects_wrong_length():
    with pytest.raises(ValueError, match="stride=\\(1, 2\\)"):
        L.as_stride(3, (1, 2))


def test_resolve_level_strides_default_isotropic():
    assert L.resolve_level_strides(2, 3, None) == [(2, 2)] * 3
    assert L.resolve_level_strides(3, 2, [(1, 2, 2), 2]) == [(1, 2, 2), (2, 2, 2)]


def test_resolve_level_strides_rejects_count():
    with pytest.raises(ValueError, match="one entry per level"):
        L.resolve_level_strides(2, 3, [2, 2])


def test_resolve_level_strides_rejects_value():
    with pytest.raises(ValueError, match="1 or 2"):
        L.resolve_level_strides(2, 1, [3])


def test_level_strides_stop_at_min_size():
    assert L.level_strides((16, 128, 128), 4, min_size=4) == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]
    # Odd sizes are never halved.
    assert L.level_strides((6, 64), 2, min_size=2) == [(2, 2), (1, 2)]


def test_size_multiple():
    assert L.size_multiple(2, None, 4) == (16, 16)
    assert L.size_multiple(3, [(1, 2, 2), (1, 2, 2), 2], 3) == (2, 8, 8)


def test_check_spatial_shape_accepts_multiple():
    L.check_spatial_shape((4, 32, 32), [(1, 2, 2), (2, 2, 2)], 2)


def test_check_spatial_shape_rejects_non_multiple():
    with pytest.raises(ValueError, match="spatial_shape=\\(4, 32, 32\\)"):
        L.check_spatial_shape((4, 32, 32), None, 3)
