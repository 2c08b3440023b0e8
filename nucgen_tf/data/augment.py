"""Stateless, aligned patch augmentation in pure TensorFlow, for any ndim.

Every function takes a dict of aligned tensors (spatial axes first, optionally one channel
axis last) and applies the *same* random window / orientation to each, so an image, its
labels and anything else derived from them stay aligned voxel for voxel. Randomness comes
only from an explicit stateless seed (shape (2,) int), so a pipeline that derives seeds
from a counter is reproducible and independent of thread scheduling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf


def _check(tensors: Mapping[str, tf.Tensor], ndim: int) -> dict[str, tf.Tensor]:
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim}")
    if not tensors:
        raise ValueError("`tensors` must hold at least one tensor. Received: tensors={}")
    out = {k: tf.convert_to_tensor(v) for k, v in tensors.items()}
    for key, t in out.items():
        if t.shape.rank is not None and t.shape.rank not in (ndim, ndim + 1):
            raise ValueError(
                f"Each tensor must have ndim spatial axes and at most one channel axis. "
                f"Received: ndim={ndim}, {key!r} with shape {t.shape}"
            )
    return out


def _spatial_shape(tensors: dict[str, tf.Tensor], ndim: int) -> tf.Tensor:
    """The common spatial shape, with a runtime check that all tensors share it."""
    keys = list(tensors)
    shape = tf.shape(tensors[keys[0]])[:ndim]
    for key in keys[1:]:
        tf.debugging.assert_equal(
            tf.shape(tensors[key])[:ndim],
            shape,
            message=f"random_crop: {key!r} and {keys[0]!r} have different spatial shapes",
        )
    return shape


def _pad_value(t: tf.Tensor, needed: tf.Tensor) -> tf.Tensor:
    # Integer tensors are label-like (background 0); float tensors are image-like and are
    # padded with their own minimum so the padding looks like the darkest background. The
    # minimum is only computed when padding is needed (it reads the whole source).
    zero = tf.zeros([], t.dtype)
    if t.dtype.is_integer or t.dtype == tf.bool:
        return zero
    return tf.cond(needed, lambda: tf.reduce_min(t), lambda: zero)


def random_crop(
    tensors: Mapping[str, tf.Tensor],
    patch_shape: Sequence[int],
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """Crops the same random window out of every tensor.

    Axes shorter than the patch are padded symmetrically (integer tensors with 0,
    float tensors with their minimum), e.g. the 3D example volume has 31 slices and a
    32-slice patch takes all of them plus one padded slice.

    Args:
        tensors: aligned tensors of shape (*spatial) or (*spatial, C); all share *spatial.
        patch_shape: spatial patch shape; `len(patch_shape)` is the ndim.
        seed: stateless seed, shape (2,) int32/int64.

    Returns:
        Dict with the same keys; tensors of static shape (*patch_shape[, C]).
    """
    patch_shape = tuple(int(p) for p in patch_shape)
    ndim = len(patch_shape)
    tensors = _check(tensors, ndim)
    if min(patch_shape) < 1:
        raise ValueError(f"`patch_shape` must be positive. Received: patch_shape={patch_shape}")
    patch = tf.constant(patch_shape, tf.int32)
    shape = _spatial_shape(tensors, ndim)
    deficit = tf.maximum(patch - shape, 0)
    limit = shape + deficit - patch  # Largest offset in the (virtually) padded source, >= 0.
    u = tf.random.stateless_uniform([ndim], seed=seed, dtype=tf.float32)
    offset = tf.minimum(tf.cast(tf.floor(u * tf.cast(limit + 1, tf.float32)), tf.int32), limit)
    # Slice the part of the window inside the source, then pad only the patch: padding the
    # whole source first would copy it for every patch.
    start = offset - deficit // 2
    begin = tf.maximum(start, 0)
    size = tf.minimum(start + patch, shape) - begin
    pad_before = begin - start
    paddings = tf.stack([pad_before, patch - size - pad_before], axis=1)
    needed = tf.reduce_any(deficit > 0)

    out = {}
    for key, t in tensors.items():
        extra = t.shape.rank - ndim
        begin_t = tf.concat([begin, tf.zeros([extra], tf.int32)], 0)
        window = tf.slice(t, begin_t, tf.concat([size, -tf.ones([extra], tf.int32)], 0))
        pads = tf.concat([paddings, tf.zeros([extra, 2], tf.int32)], 0) if extra else paddings
        cropped = tf.pad(window, pads, constant_values=_pad_value(t, needed))
        out[key] = tf.ensure_shape(cropped, patch_shape + tuple(t.shape[ndim:]))
    return out


def _rot90(t: tf.Tensor, k: tf.Tensor, ndim: int) -> tf.Tensor:
    """Rotates by k * 90 degrees in the last two spatial axes, like np.rot90(t, k, (ndim-2, ndim-1))."""
    y, x = ndim - 2, ndim - 1
    perm = list(range(t.shape.rank))
    perm[y], perm[x] = perm[x], perm[y]

    def rot1():  # np.rot90 with k=1: transpose(flip(t, x)).
        return tf.transpose(tf.reverse(t, [x]), perm)

    def rot2():
        return tf.reverse(t, [y, x])

    def rot3():  # k=3: flip(transpose(t), x).
        return tf.reverse(tf.transpose(t, perm), [x])

    return tf.switch_case(k, [lambda: t, rot1, rot2, rot3])


def random_flip_rot(
    tensors: Mapping[str, tf.Tensor],
    ndim: int,
    seed: tf.Tensor,
    flips: bool = True,
    rot90: bool = True,
) -> dict[str, tf.Tensor]:
    """Applies one random flip/rotation to every tensor.

    Flips are drawn independently for every spatial axis; rotations are multiples of 90
    degrees in the YX plane only (the last two spatial axes), because Z is usually
    sampled differently from YX. In 2D the combination reaches all 8 orientations of the
    square; in 3D, 16.

    Args:
        tensors: aligned tensors of shape (*spatial) or (*spatial, C).
        ndim: number of spatial axes (2 or 3).
        seed: stateless seed, shape (2,) int32/int64.
        flips: draw a random flip per spatial axis.
        rot90: draw a random rotation k in {0, 1, 2, 3}; needs square YX.

    Returns:
        Dict with the same keys and shapes.
    """
    tensors = _check(tensors, ndim)
    flip_seed, rot_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if rot90:
        for key, t in tensors.items():
            yx = t.shape[ndim - 2 : ndim]
            if None not in yx and yx[0] != yx[1]:
                raise ValueError(
                    f"`rot90` needs a square YX plane so that shapes do not change. "
                    f"Received: {key!r} with shape {t.shape}"
                )
    out = dict(tensors)
    if flips:
        bits = tf.random.stateless_uniform([ndim], seed=flip_seed, dtype=tf.float32) < 0.5
        for axis in range(ndim):
            out = {
                key: tf.cond(bits[axis], lambda t=t, a=axis: tf.reverse(t, [a]), lambda t=t: t)
                for key, t in out.items()
            }
    if rot90:
        k = tf.random.stateless_uniform([], seed=rot_seed, minval=0, maxval=4, dtype=tf.int32)
        out = {key: _rot90(t, k, ndim) for key, t in out.items()}
    return {key: tf.ensure_shape(t, tensors[key].shape) for key, t in out.items()}
