"""GAN loss terms (nucgen_tf.losses) against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf import losses

RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 1.0, (2, 4, 4, 1)).astype(np.float32)
FAKE = RNG.normal(-0.5, 1.0, (2, 4, 4, 1)).astype(np.float32)


def _criterion(x, target, kind):
    if kind == "mae":
        return np.mean(np.abs(x - target))
    if kind == "lsgan":
        return np.mean((x - target) ** 2)
    # Logistic loss of logits x against a constant label.
    return np.mean(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x))))


@pytest.mark.parametrize("kind", losses.ADVERSARIAL_KINDS)
def test_generator_adversarial_loss(kind):
    got = losses.generator_adversarial_loss(FAKE, kind)
    np.testing.assert_allclose(float(got), _criterion(FAKE, 1.0, kind), rtol=1e-5)


@pytest.mark.parametrize("kind", losses.ADVERSARIAL_KINDS)
def test_discriminator_adversarial_loss(kind):
    got = losses.discriminator_adversarial_loss(REAL, FAKE, kind)
    expected = 0.5 * (_criterion(REAL, 1.0, kind) + _criterion(FAKE, 0.0, kind))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_mae_is_the_default_criterion():
    expected = np.mean(np.abs(FAKE - 1.0))
    np.testing.assert_allclose(float(losses.generator_adversarial_loss(FAKE)), expected, rtol=1e-6)


def test_perfect_discriminator_scores_zero_under_mae():
    ones, zeros = np.ones((1, 2, 2, 1), np.float32), np.zeros((1, 2, 2, 1), np.float32)
    assert float(losses.discriminator_adversarial_loss(ones, zeros, "mae")) == 0.0


def test_reconstruction_terms_are_mean_absolute_error():
    expected = np.mean(np.abs(REAL - FAKE))
    for fn in (losses.l1_loss, losses.cycle_loss, losses.identity_loss):
        np.testing.assert_allclose(float(fn(REAL, FAKE)), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_losses_are_float32_scalars_for_low_precision_inputs(dtype):
    real, fake = tf.cast(REAL, dtype), tf.cast(FAKE, dtype)
    for value in (
        losses.generator_adversarial_loss(fake, "lsgan"),
        losses.discriminator_adversarial_loss(real, fake, "bce"),
        losses.l1_loss(real, fake),
    ):
        assert value.dtype == tf.float32 and value.shape == ()


def test_unknown_criterion_raises():
    with pytest.raises(ValueError, match="kind='hinge'"):
        losses.adversarial_criterion(FAKE, 1.0, "hinge")
