"""Differentiable augmentation of discriminator inputs (DiffAugment, Zhao et al. 2020), any ndim.

With few training images (20 real BBBC039 fields) a discriminator memorizes the real set
and its feedback to the generator turns into noise. DiffAugment applies the same family of
random transforms T to EVERY discriminator input, real and fake alike, in the generator
update as well as in the discriminator update: D only ever sees T(x), so it cannot tell
real from fake by the transform, and because T is differentiable the generator still gets
gradients through D(T(G(z))). (Augmenting only the reals would teach the generator to paint
the augmentations.)

Policies, applied in this order whatever the order asked for:

- "color": per sample, brightness + U(-0.5, 0.5), then contrast (x - mean) * U(0.5, 1.5) +
  mean, mean over the spatial axes and the color channels. The reference also changes
  saturation; our images have one channel, so it is left out. Only the trailing
  `color_channels` channels change: for pix2pix those of the image, not the colored mask it
  is conditioned on (jittering label colors would only blur what D is told about the mask).
- "translation": per sample and axis, an integer shift of up to 1/8 of the axis size
  (rounded, as the reference), exposed borders filled with `FILL`.
- "cutout": per sample, a box of half the size on every axis (rounded) at a uniform random
  centre, set to `FILL`.

Every channel of the input takes the same geometric transform, so a paired discriminator
input (condition and image concatenated) moves as one. Deviation from the reference: the
fill value is -1, the "absent" value of every map in this project (and dark background in
the images), where the reference fills with 0 (mid-gray in [-1, 1]).

The random numbers are drawn apart from their use (`sample_params` / `apply`) so that one
draw can transform two inputs identically (pix2pix feature matching compares D's features
of the real and the fake pair at the same positions).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

POLICIES = ("color", "translation", "cutout")
FILL = -1.0
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policies(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The policies of `value` ("translation,cutout", a sequence, or empty) in `POLICIES` order.

    Raises:
        ValueError: an unknown or repeated policy.
    """
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"`diff_augment` takes distinct policies from {POLICIES}. Received: diff_augment={value!r}"
        )
    return tuple(p for p in POLICIES if p in names)


def _uniform(rng: tf.random.Generator | None, shape) -> tf.Tensor:
    if rng is None:
        return tf.random.uniform(shape, dtype=tf.float32)
    return rng.uniform(shape, dtype=tf.float32)


def sample_params(
    x: tf.Tensor, policies: Sequence[str], rng: tf.random.Generator | None = None
) -> dict[str, tf.Tensor]:
    """Per-sample uniform [0, 1) numbers for `apply`; any input of x's batch size and rank can use them.

    Args:
        x: (B, *spatial, C), for the batch size and rank only.
        policies: names from `POLICIES`.
        rng: the generator to draw from (a model's checkpointed one); None uses TensorFlow's
            global random ops.

    Returns:
        {"brightness": (B,), "contrast": (B,), "translation": (B, ndim), "cutout": (B, ndim)},
        the entries of the policies asked for.
    """
    batch, ndim = tf.shape(x)[0], len(x.shape) - 2
    params = {}
    for policy in parse_policies(policies):
        if policy == "color":
            params["brightness"] = _uniform(rng, [batch])
            params["contrast"] = _uniform(rng, [batch])
        else:
            params[policy] = _uniform(rng, [batch, ndim])
    return params


def _per_sample(values: tf.Tensor, rank: int, dtype) -> tf.Tensor:
    """(B,) -> (B, 1, ..., 1) of `rank` dims, for broadcasting against (B, *spatial, C)."""
    return tf.reshape(tf.cast(values, dtype), [-1] + [1] * (rank - 1))


def _along_axis(values: tf.Tensor, axis: int, rank: int) -> tf.Tensor:
    """(B, n) -> a shape broadcasting along `axis` of a rank-`rank` (B, *spatial, C) tensor."""
    shape = [tf.shape(values)[0]] + [1] * (rank - 1)
    shape[axis] = tf.shape(values)[1]
    return tf.reshape(values, shape)


def _color(x: tf.Tensor, brightness: tf.Tensor, contrast: tf.Tensor, channels: int | None) -> tf.Tensor:
    total = int(x.shape[-1])
    channels = total if channels is None else channels
    if channels <= 0:
        return x
    rank = len(x.shape)
    keep, image = x[..., : total - channels], x[..., total - channels :]
    image = image + _per_sample(brightness, rank, x.dtype) - 0.5
    mean = tf.reduce_mean(image, axis=list(range(1, rank)), keepdims=True)
    image = (image - mean) * (_per_sample(contrast, rank, x.dtype) + 0.5) + mean
    return image if channels == total else tf.concat([keep, image], axis=-1)


def _translate(x: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Shift every sample by whole pixels per axis; out-of-range positions become `FILL`."""
    rank = len(x.shape)
    for a in range(1, rank - 1):
        size = tf.shape(x)[a]
        limit = tf.cast(tf.cast(size, tf.float32) * TRANSLATION_RATIO + 0.5, tf.int32)
        shift = tf.cast(tf.floor(uniform[:, a - 1] * tf.cast(2 * limit + 1, tf.float32)), tf.int32) - limit
        source = tf.range(size)[None, :] + shift[:, None]  # (B, n): output i reads input i + shift
        valid = tf.logical_and(source >= 0, source < size)
        moved = tf.gather(x, tf.clip_by_value(source, 0, size - 1), axis=a, batch_dims=1)
        x = tf.where(_along_axis(valid, a, rank), moved, tf.cast(FILL, x.dtype))
    return x


def _cutout(x: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Set one box of half the size per axis (random centre, clipped at the borders) to `FILL`."""
    rank = len(x.shape)
    inside = None
    for a in range(1, rank - 1):
        size = tf.shape(x)[a]
        box = tf.cast(tf.cast(size, tf.float32) * CUTOUT_RATIO + 0.5, tf.int32)
        centre = tf.cast(tf.floor(uniform[:, a - 1] * tf.cast(size + 1 - box % 2, tf.float32)), tf.int32)
        start = centre - box // 2
        coords = tf.range(size)[None, :]
        axis_inside = _along_axis(
            tf.logical_and(coords >= start[:, None], coords < (start + box)[:, None]), a, rank
        )
        inside = axis_inside if inside is None else tf.logical_and(inside, axis_inside)
    return tf.where(inside, tf.cast(FILL, x.dtype), x)


def apply(
    x: tf.Tensor, params: dict[str, tf.Tensor], *, color_channels: int | None = None
) -> tf.Tensor:
    """Transform x by the policies whose numbers `params` holds (see the module docstring).

    Args:
        x: (B, *spatial, C), float.
        params: from `sample_params`; same batch size and rank as x.
        color_channels: how many TRAILING channels the "color" policy changes (None: all).

    Returns:
        The transformed (B, *spatial, C), differentiable with respect to x.
    """
    if "brightness" in params:
        x = _color(x, params["brightness"], params["contrast"], color_channels)
    if "translation" in params:
        x = _translate(x, params["translation"])
    if "cutout" in params:
        x = _cutout(x, params["cutout"])
    return x


def diff_augment(
    x: tf.Tensor,
    policies: Sequence[str],
    rng: tf.random.Generator | None = None,
    *,
    color_channels: int | None = None,
) -> tf.Tensor:
    """`apply(x, sample_params(x, policies, rng))`; x unchanged when `policies` is empty.

    Example:
        >>> y = diff_augment(tf.zeros((2, 16, 16, 1)), ("translation", "cutout"))
        >>> tuple(y.shape)
        (2, 16, 16, 1)
    """
    if not policies:
        return x
    return apply(x, sample_params(x, policies, rng), color_channels=color_channels)
