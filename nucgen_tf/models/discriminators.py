"""Markovian PatchGAN discriminators for any spatial rank (pix2pix, paper Sec. III).

A PatchGAN classifies every overlapping patch (70x70 pixels at `n_layers=3`, kernel 4) as
real or fake, so it judges local texture and shape and works on any input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from nucgen_tf.models import layers as L
from nucgen_tf.models.config import DiscriminatorConfig


def build_discriminator(
    ndim: int,
    in_channels: int,
    *,
    base_filters: int = 16,
    n_layers: int = 3,
    max_filters: int = 128,
    kernel_size: int = 4,
    strides: Sequence[L.Stride] | None = None,
    name: str = "discriminator",
) -> keras.Model:
    """Build a functional PatchGAN discriminator of built-in layers.

    Layout of pix2pix's `NLayerDiscriminator`: a strided convolution with LeakyReLU(0.2) and
    no norm, `n_layers - 1` strided convolutions with instance norm and LeakyReLU, one
    stride-1 convolution with norm and LeakyReLU, and a stride-1 convolution to one
    channel. The logits are linear and float32 (the adversarial criterion decides how they
    are compared with the labels).

    Args:
        ndim: spatial rank, 2 or 3.
        in_channels: input channels (pix2pix: condition + image channels).
        base_filters: filters of the first convolution, doubled per layer.
        n_layers: number of strided convolutions.
        max_filters: cap on the filters.
        kernel_size: kernel size of every convolution.
        strides: None (isotropic 2) or one stride (int or per-axis tuple) per strided layer.
        name: model name.

    Returns:
        A `keras.Model` mapping (B, *spatial, in_channels) to logits (B, *patch_grid, 1),
        `patch_grid = spatial / prod(strides)` per axis (rounded up).
    """
    for arg, value in (("in_channels", in_channels), ("base_filters", base_filters), ("n_layers", n_layers)):
        if value < 1:
            raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
    level_strides = L.resolve_level_strides(ndim, n_layers, strides)

    inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name=f"{name}_input")
    x = L.conv(ndim, base_filters, kernel_size, level_strides[0], name="conv0")(inputs)
    x = L.activation("leaky_relu", name="act0")(x)
    for n in range(1, n_layers + 1):
        n_filters = min(base_filters * 2**n, max_filters)
        stride = level_strides[n] if n < n_layers else 1
        x = L.conv(ndim, n_filters, kernel_size, stride, use_bias=False, name=f"conv{n}")(x)
        x = L.instance_norm(name=f"norm{n}")(x)
        x = L.activation("leaky_relu", name=f"act{n}")(x)
    outputs = L.conv(ndim, 1, kernel_size, 1, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def discriminator_from_config(
    config: DiscriminatorConfig, ndim: int, in_channels: int, name: str = "discriminator"
) -> keras.Model:
    """`build_discriminator` with the fields of a `DiscriminatorConfig`."""
    return build_discriminator(
        ndim,
        in_channels,
        base_filters=config.base_filters,
        n_layers=config.n_layers,
        max_filters=config.max_filters,
        kernel_size=config.kernel_size,
        strides=config.strides or None,
        name=name,
    )
