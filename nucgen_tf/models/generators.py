"""U-Net encoder-decoder generators for any spatial rank (paper Sec. III).

The paper's generators "adapt the encoder-decoder architecture with skip connections [U-Net]
and Tanh is used as the activation function". Inputs and outputs are (B, *spatial, C) in
[-1, 1]. The spatial input shape is left as None so that a generator trained on patches can
translate any image whose sizes are multiples of the total stride (`2**depth` by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from nucgen_tf.models import layers as L
from nucgen_tf.models.config import GeneratorConfig


def build_generator(
    ndim: int,
    in_channels: int,
    out_channels: int,
    *,
    base_filters: int = 16,
    depth: int = 4,
    max_filters: int = 256,
    kernel_size: int = 3,
    upsampling: str = "transpose",
    strides: Sequence[L.Stride] | None = None,
    full_resolution_norm: bool = False,
    name: str = "generator",
) -> keras.Model:
    """Build a functional U-Net generator of built-in layers (loads in safe mode).

    Encoder: a full-resolution convolution with LeakyReLU(0.2), then per level a strided
    convolution and a convolution, each followed by instance norm and LeakyReLU(0.2). All
    these convolutions mirror-pad their borders (`layers.ReflectPadding`). Decoder: per level an
    up-sampling step (transposed convolution with kernel = stride, or nearest up-sampling
    + convolution), instance norm and ReLU, concatenation with the encoder features of the
    same resolution, then a convolution, instance norm and ReLU. The full-resolution layers
    (first encoder and last decoder level) have no norm and use LeakyReLU(0.2), unless
    `full_resolution_norm` keeps the decoder's. A 1x1 convolution and
    tanh, both float32 so that mixed precision never rounds the output, map to
    `out_channels`.

    Args:
        ndim: spatial rank, 2 or 3.
        in_channels: channels of the input domain.
        out_channels: channels of the output domain.
        base_filters: filters at full resolution, doubled per level.
        depth: number of down-sampling levels.
        max_filters: cap on filters per level.
        kernel_size: kernel size of the 3x3(x3)-style convolutions.
        upsampling: "transpose" or "nearest".
        strides: None (isotropic 2) or one stride (int or per-axis tuple) per level.
        full_resolution_norm: keep instance norm + ReLU in the full-resolution decoder level.
        name: model name.

    Returns:
        A `keras.Model` mapping (B, *spatial, in_channels) to (B, *spatial, out_channels).
    """
    for arg, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("base_filters", base_filters),
        ("depth", depth),
    ):
        if value < 1:
            raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
    if upsampling not in ("transpose", "nearest"):
        raise ValueError(
            f"`upsampling` must be 'transpose' or 'nearest'. Received: upsampling={upsampling!r}"
        )
    level_strides = L.resolve_level_strides(ndim, depth, strides)
    filters = [min(base_filters * 2**i, max_filters) for i in range(depth + 1)]

    def block(x, n_filters, stride, act, prefix, norm=True):
        x = L.reflect_conv(ndim, n_filters, kernel_size, stride, use_bias=not norm, name=f"{prefix}_conv")(x)
        if norm:
            x = L.instance_norm(name=f"{prefix}_norm")(x)
        return L.activation(act, name=f"{prefix}_act")(x)

    inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name=f"{name}_input")
    # No norm on the input layer (as pix2pix's U-Net): a sparse seed map normalized per image
    # would lose how much of it is empty.
    x = block(inputs, filters[0], 1, "leaky_relu", "enc0", norm=False)
    skips = [x]
    for level in range(1, depth + 1):
        x = block(x, filters[level], level_strides[level - 1], "leaky_relu", f"enc{level}_down")
        x = block(x, filters[level], 1, "leaky_relu", f"enc{level}")
        skips.append(x)

    for level in range(depth - 1, -1, -1):
        stride = level_strides[level]
        prefix = f"dec{level}"
        if upsampling == "transpose":
            # Kernel = stride (U-Net's 2x2 up-convolution): no overlapping taps, hence no
            # checkerboard artifacts, and 3.5x cheaper than a 3x3x3 kernel in 3D on CPU.
            x = L.conv_transpose(ndim, filters[level], stride, stride, use_bias=False, name=f"{prefix}_up")(x)
        else:
            x = L.upsample(ndim, stride, name=f"{prefix}_up")(x)
            upconv = L.reflect_conv(
                ndim, filters[level], kernel_size, 1, use_bias=False, name=f"{prefix}_upconv"
            )
            x = upconv(x)
        # No norm at full resolution (level 0), as pix2pix's outermost U-Net block: instance
        # norm there fixes each output channel's mean and spread over the image, so a sparse
        # map could not say how much of it is background (an empty seed map gave flat gray).
        # Without a norm the units there take LeakyReLU: plain ReLUs on un-normalized features
        # died in a stage-2 run and left the generator painting black.
        norm = level > 0 or full_resolution_norm
        act = "relu" if norm else "leaky_relu"
        if norm:
            x = L.instance_norm(name=f"{prefix}_up_norm")(x)
        x = L.activation(act, name=f"{prefix}_up_act")(x)
        x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip")([x, skips[level]])
        x = block(x, filters[level], 1, act, prefix, norm=norm)

    x = L.conv(ndim, out_channels, 1, 1, name="out_conv", dtype="float32")(x)
    outputs = L.activation("tanh", name="out_tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def generator_from_config(
    config: GeneratorConfig, ndim: int, in_channels: int, out_channels: int, name: str = "generator"
) -> keras.Model:
    """`build_generator` with the fields of a `GeneratorConfig`."""
    return build_generator(
        ndim,
        in_channels,
        out_channels,
        base_filters=config.base_filters,
        depth=config.depth,
        max_filters=config.max_filters,
        kernel_size=config.kernel_size,
        upsampling=config.upsampling,
        strides=config.strides or None,
        full_resolution_norm=config.full_resolution_norm,
        name=name,
    )
