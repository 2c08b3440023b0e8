"""GAN loss terms as pure functions.

Every function casts its inputs to float32 (mixed-precision models hand in float16/bfloat16
logits) and returns a float32 scalar: the mean over every element of the LOCAL batch. The
models, not these functions, scale for `tf.distribute` (see `nucgen_tf.models.gan`).

The paper: "Mean-Absolute-Error (MAE) loss is used for all the stages". The reconstruction
terms (cycle, identity, pix2pix L1) are MAE in any case; for the adversarial criterion
"mae" compares the PatchGAN logits with the real/fake targets by |D(x) - t|, "lsgan" by
(D(x) - t)^2 (the reference CycleGAN) and "bce" by the logistic loss (the original GAN).
"""

from __future__ import annotations

import tensorflow as tf

ADVERSARIAL_KINDS = ("mae", "lsgan", "bce")
REAL_LABEL = 1.0
FAKE_LABEL = 0.0


def _float32(x) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def adversarial_criterion(logits, target: float, kind: str = "mae") -> tf.Tensor:
    """Mean distance between discriminator logits and a constant target label.

    Args:
        logits: discriminator output, (B, *patch_grid, 1), any float dtype.
        target: `REAL_LABEL` or `FAKE_LABEL`.
        kind: "mae", "lsgan" or "bce".

    Returns:
        A float32 scalar.
    """
    logits = _float32(logits)
    if kind == "mae":
        return tf.reduce_mean(tf.abs(logits - target))
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(logits - target))
    if kind == "bce":
        labels = tf.fill(tf.shape(logits), tf.constant(target, tf.float32))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
    raise ValueError(f"`kind` must be one of {ADVERSARIAL_KINDS}. Received: kind={kind!r}")


def generator_adversarial_loss(fake_logits, kind: str = "mae") -> tf.Tensor:
    """The generator wants its fakes judged real: criterion(D(G(x)), 1)."""
    return adversarial_criterion(fake_logits, REAL_LABEL, kind)


def discriminator_adversarial_loss(real_logits, fake_logits, kind: str = "mae") -> tf.Tensor:
    """0.5 * (criterion(D(real), 1) + criterion(D(fake), 0)).

    The factor 0.5 is the reference CycleGAN's: it slows the discriminator relative to the
    generator.
    """
    return 0.5 * (
        adversarial_criterion(real_logits, REAL_LABEL, kind)
        + adversarial_criterion(fake_logits, FAKE_LABEL, kind)
    )


def l1_loss(target, prediction) -> tf.Tensor:
    """Mean absolute error, mean(|target - prediction|), over all elements."""
    return tf.reduce_mean(tf.abs(_float32(target) - _float32(prediction)))


def cycle_loss(real, reconstructed) -> tf.Tensor:
    """Cycle consistency: an image translated there and back should be itself (L1)."""
    return l1_loss(real, reconstructed)


def identity_loss(real, same) -> tf.Tensor:
    """Identity: a generator fed an image of its OUTPUT domain should return it (L1)."""
    return l1_loss(real, same)
