"""Tests of the U-Net segmenter network and tiled prediction."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf.models.segmenters import SegmenterConfig, build_unet_segmenter, size_multiple
from nucgen_tf.segment import predict as sp
from nucgen_tf.segment.config import SegmentTrainConfig

TINY = SegmenterConfig(base_filters=4, depth=2)
SHAPES = {2: (32, 32), 3: (8, 32, 32)}


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_output_is_a_distribution(ndim, norm):
    config = SegmenterConfig(base_filters=4, depth=2, norm=norm, dropout=0.1)
    model = build_unet_segmenter(ndim, config)
    x = np.random.default_rng(0).uniform(-1, 1, (2, *SHAPES[ndim], 1)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, *SHAPES[ndim], 3)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_mixed_precision_output_stays_float32():
    model = build_unet_segmenter(2, TINY, dtype="mixed_bfloat16")
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    y = model(np.zeros((1, 16, 16, 1), np.float32), training=False)
    assert str(y.dtype) in ("float32", "<dtype: 'float32'>")


@pytest.mark.parametrize("ndim", [2, 3])
def test_save_load_safe_mode_identical(ndim, tmp_path):
    import keras

    model = build_unet_segmenter(ndim, TINY)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    x = np.random.default_rng(1).uniform(-1, 1, (1, *SHAPES[ndim], 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))


def test_anisotropic_strides_size_multiple():
    config = SegmenterConfig(base_filters=4, depth=2, strides=((1, 2, 2), 2))
    assert size_multiple(3, config) == (2, 4, 4)
    model = build_unet_segmenter(3, config)
    assert model(np.zeros((1, 2, 8, 8, 1), np.float32)).shape == (1, 2, 8, 8, 3)


def test_patch_must_fit_the_strides():
    with pytest.raises(ValueError, match="multiple"):
        SegmentTrainConfig(network=TINY, patch_shape=(30, 30))


def test_config_rejects_bad_norm():
    with pytest.raises(ValueError, match="norm"):
        SegmenterConfig(norm="layer")


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiled_prediction_equals_whole_image(ndim):
    """Aligned tiles with enough context reproduce a one-pass prediction (sizes not multiples)."""
    model = build_unet_segmenter(ndim, TINY)
    shape = (38, 50) if ndim == 2 else (10, 22, 30)
    image = np.random.default_rng(2).uniform(-1, 1, shape).astype(np.float32)
    whole = sp.predict_probabilities(model, image, TINY, tile_shape=1024)
    tile = 16 if ndim == 2 else (8, 16, 16)
    tiled = sp.predict_probabilities(model, image, TINY, tile_shape=tile, margin=24)
    assert whole.shape == shape + (3,) and tiled.shape == shape + (3,)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # Control: without context the tile borders show.
    bare = sp.predict_probabilities(model, image, TINY, tile_shape=tile, margin=0)
    assert np.abs(bare - whole).max() > 1e-3


def test_load_segmenter_names_missing_file(tmp_path):
    from nucgen_tf.io import DataError

    with pytest.raises(DataError, match="segmenter.keras"):
        sp.load_segmenter(tmp_path)
