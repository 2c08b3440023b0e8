"""DiffAugment for any ndim (nucgen_tf.models.augment): geometry shared by all channels, color on
the image channels only, differentiable, identity when off."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf.models import augment

SPATIAL = {2: (32, 32), 3: (8, 16, 16)}


def _batch(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_translation_moves_condition_and_image_identically():
    x = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8, 1)
    pair = np.concatenate([x, x + 1000], axis=-1)  # condition, image
    # Sample 0: shift +1 along Y (u * 3 -> 2 -> 2 - 1), -1 along X; sample 1: no shift.
    params = {"translation": tf.constant([[0.99, 0.0], [0.5, 0.5]])}
    out = augment.apply(pair, params).numpy()
    expected = np.full((6, 8), augment.FILL, np.float32)
    expected[:5, 1:] = x[0, 1:, :7, 0]  # output (i, j) reads input (i + 1, j - 1)
    np.testing.assert_array_equal(out[0, ..., 0], expected)
    image = np.where(expected == augment.FILL, augment.FILL, expected + 1000)
    np.testing.assert_array_equal(out[0, ..., 1], image)
    np.testing.assert_array_equal(out[1], pair[1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_one_transform_for_all_channels_and_color_on_the_image_only(ndim):
    cond = _batch((3, *SPATIAL[ndim], 1), 0)
    pair = np.concatenate([cond, cond], axis=-1)
    both = augment.diff_augment(pair, ("translation", "cutout"), tf.random.Generator.from_seed(0)).numpy()
    np.testing.assert_array_equal(both[..., 0], both[..., 1])
    assert not np.array_equal(both, pair)
    rng = tf.random.Generator.from_seed(0)
    colored = augment.diff_augment(pair, ("color",), rng, color_channels=1).numpy()
    np.testing.assert_array_equal(colored[..., 0], cond[..., 0])  # the condition untouched
    assert not np.allclose(colored[..., 1], cond[..., 0])


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_diff_augment_is_differentiable(ndim, policy):
    x = tf.constant(_batch((2, *SPATIAL[ndim], 2), 0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = augment.diff_augment(x, (policy,), tf.random.Generator.from_seed(1))
        total = tf.reduce_sum(y * y)
    grad = tape.gradient(total, x)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    assert tuple(y.shape) == tuple(x.shape)


def test_diff_augment_empty_policy_is_identity():
    x = tf.constant(_batch((2, 16, 16, 2), 0))
    assert augment.diff_augment(x, ()) is x
    assert augment.apply(x, augment.sample_params(x, ())) is x


def test_policies_parse_and_validate():
    assert augment.parse_policies("cutout, translation") == ("translation", "cutout")
    assert augment.parse_policies(["cutout"]) == ("cutout",)
    assert augment.parse_policies("") == augment.parse_policies(None) == ()
    with pytest.raises(ValueError, match="diff_augment='color,blur'"):
        augment.parse_policies("color,blur")
    with pytest.raises(ValueError, match="distinct"):
        augment.parse_policies("color,color")
