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


def feature_matching_loss(real_features, fake_features) -> tf.Tensor:
    """pix2pixHD's feature matching: the mean over layers of mean |D_l(real) - D_l(fake)|.

    The real features are targets (no gradient flows into them), as in pix2pixHD.

    Args:
        real_features: the discriminator's intermediate outputs on the real pair, a list
            (every layer of every scale).
        fake_features: the same layers on the fake pair, same shapes.

    Returns:
        A float32 scalar.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(
            "Feature matching needs the same, non-zero number of real and fake feature maps. "
            f"Received: {len(real_features)} real, {len(fake_features)} fake"
        )
    terms = [
        tf.reduce_mean(tf.abs(tf.stop_gradient(_float32(r)) - _float32(f)))
        for r, f in zip(real_features, fake_features)
    ]
    return tf.add_n(terms) / float(len(terms))


def r1_penalty(gradients, patches, gamma: float) -> tf.Tensor:
    """R1 (Mescheder et al. 2018): gamma / 2 * E_x ||grad_x D(x)||^2 on real samples, per patch.

    `gradients` is the gradient of the SUM of one sample's patch logits with respect to the
    discriminator input. For patches whose receptive fields do not overlap, its squared norm
    is the sum of the per-patch squared norms, so dividing by the number of patches gives
    the mean per-patch penalty: gamma keeps the meaning it has for a one-logit
    discriminator and does not grow with the patch grid (overlapping fields make it an
    approximation).

    Args:
        gradients: (B, *spatial, C), d(sum of each sample's logits) / d(input), any float dtype.
        patches: number of logits per sample (the size of the patch grid).
        gamma: the R1 weight.

    Returns:
        A float32 scalar: gamma / 2 * mean over the batch of ||g||^2 / patches.
    """
    g = _float32(gradients)
    squared = tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape))))
    return 0.5 * gamma * tf.reduce_mean(squared) / tf.cast(patches, tf.float32)
