"""Encoder-decoder generators for any spatial rank (paper Sec. III).

The paper's generators "adapt the encoder-decoder architecture with skip connections [U-Net]
and Tanh is used as the activation function". Inputs and outputs are (B, *spatial, C) in
[-1, 1]. The spatial input shape is left as None so that a generator trained on patches can
translate any image whose sizes are multiples of the total stride (`2**depth` by default).

Three architectures share this code path (and 2D/3D, by `ndim`):

- "unet3x3", the project's U-Net: a full-resolution convolution, then per level a strided
  and a plain 3x3 convolution, mirrored up in the decoder. Its full- and half-resolution
  double convolutions make it 3-7x more expensive in convolution FLOPs than
- "pix2pix", the U-Net of Isola et al. (2017): one 4x4 stride-2 convolution per level, no
  full-resolution convolution; the last up-sampling paints the output.
- "resnet", the CycleGAN generator of Zhu et al. (2017, after Johnson et al. 2016): a 7x7
  stem, `depth` (2 in the reference) stride-2 convolutions, residual blocks at the
  bottleneck, `depth` up-sampling steps and a 7x7 output convolution. No skip connections:
  the residual trunk carries the content, which suits the unpaired stages' changes of shape.

All can take noise channels (`noise_channels`): standard Gaussian noise appended to the
input by the caller (`with_noise` while training, the sample's "texture" stream in
synthesis), which the U-Nets add at every encoder and decoder level and the ResNet in every
residual block, through a learned-scale `layers.NoiseInjection` that starts at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from nucgen_tf.models import layers as L
from nucgen_tf.models.config import GENERATOR_ARCHITECTURES, GeneratorConfig

# Decoder levels (counted from the innermost) that `dropout` applies to, as pix2pix's 0.5.
DROPOUT_LEVELS = 3


def build_generator(
    ndim: int,
    in_channels: int,
    out_channels: int,
    *,
    architecture: str = "unet3x3",
    base_filters: int = 16,
    depth: int = 4,
    max_filters: int = 256,
    kernel_size: int | None = None,
    upsampling: str = "transpose",
    strides: Sequence[L.Stride] | None = None,
    full_resolution_norm: bool = False,
    dropout: float = 0.0,
    noise_channels: int = 0,
    n_residual_blocks: int = 6,
    name: str = "generator",
) -> keras.Model:
    """Build a functional generator of built-in or registered layers (loads in safe mode).

    "unet3x3" -- encoder: a full-resolution convolution with LeakyReLU(0.2), then per level a
    strided convolution and a convolution, each followed by instance norm and LeakyReLU(0.2).
    All these convolutions mirror-pad their borders (`layers.ReflectPadding`). Decoder: per
    level an up-sampling step (transposed convolution with kernel = stride, or nearest
    up-sampling + convolution), instance norm and ReLU, concatenation with the encoder
    features of the same resolution, then a convolution, instance norm and ReLU. The
    full-resolution layers (first encoder and last decoder level) have no norm and use
    LeakyReLU(0.2), unless `full_resolution_norm` keeps the decoder's. A 1x1 convolution and
    tanh, both float32 so that mixed precision never rounds the output, map to
    `out_channels`.

    "pix2pix" -- encoder: per level one mirror-padded `kernel_size` (4) stride-2 convolution,
    instance norm except on the first and the innermost level (the innermost may be 1 px, as
    in the reference), LeakyReLU(0.2). Decoder: per level a transposed `kernel_size`
    convolution (or nearest up-sampling + a mirror-padded convolution, "resize-conv", which
    has no checkerboard artifacts), instance norm, ReLU, concatenation with the encoder
    features. The last up-sampling step maps straight to `out_channels` (float32), then
    tanh: no full-resolution feature map, no norm at full resolution. An even kernel on a
    stride-1 axis (per-axis strides, resize-conv) is one smaller, so that it stays centred.

    "resnet" -- a mirror-padded 7x7 stem convolution (`kernel_size` on an axis that the
    first level does not halve) with LeakyReLU(0.2) and no norm (as the U-Nets' input
    layers, unlike the reference: a sparse map normalized per image loses how much of it is
    empty); per level a mirror-padded `kernel_size` (3) strided convolution,
    instance norm, ReLU; `n_residual_blocks` blocks of two mirror-padded `kernel_size`
    convolutions with instance norm (ReLU between them, then noise and dropout), added to
    their input; per level an up-sampling step (transposed `kernel_size` convolution as the
    reference, or resize-conv), instance norm and ReLU, except at full resolution, where
    the norm is dropped (LeakyReLU instead) unless `full_resolution_norm`; a mirror-padded
    7x7 convolution to `out_channels` (float32) and tanh.

    Args:
        ndim: spatial rank, 2 or 3.
        in_channels: channels of the input domain (the condition, without noise).
        out_channels: channels of the output domain.
        architecture: "unet3x3", "pix2pix" or "resnet".
        base_filters: filters of the first level, doubled per level.
        depth: number of down-sampling levels.
        max_filters: cap on filters per level.
        kernel_size: kernel size of the convolutions; None = 3 (unet3x3, resnet) or 4
            (pix2pix). resnet's stem and output convolutions are 7x7 whatever this is.
        upsampling: "transpose" or "nearest".
        strides: None (isotropic 2) or one stride (int or per-axis tuple) per level.
        full_resolution_norm: unet3x3, resnet: keep instance norm + ReLU in the
            full-resolution decoder level.
        dropout: dropout rate after the up-sampling of the `DROPOUT_LEVELS` innermost
            decoder levels (never at full resolution), or inside every residual block
            (resnet); 0 = none.
        noise_channels: extra input channels of standard Gaussian noise (see module doc).
        n_residual_blocks: resnet: residual blocks at the bottleneck.
        name: model name.

    Returns:
        A `keras.Model` mapping (B, *spatial, in_channels + noise_channels) to
        (B, *spatial, out_channels).
    """
    for arg, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("base_filters", base_filters),
        ("depth", depth),
    ):
        if value < 1:
            raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
    if architecture not in GENERATOR_ARCHITECTURES:
        raise ValueError(
            f"`architecture` must be one of {tuple(GENERATOR_ARCHITECTURES)}. "
            f"Received: architecture={architecture!r}"
        )
    if upsampling not in ("transpose", "nearest"):
        raise ValueError(
            f"`upsampling` must be 'transpose' or 'nearest'. Received: upsampling={upsampling!r}"
        )
    if noise_channels < 0:
        raise ValueError(f"`noise_channels` must be >= 0. Received: noise_channels={noise_channels}")
    if not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
    if n_residual_blocks < 1:
        raise ValueError(f"`n_residual_blocks` must be >= 1. Received: n_residual_blocks={n_residual_blocks}")
    kernel_size = GENERATOR_ARCHITECTURES[architecture] if kernel_size is None else int(kernel_size)
    level_strides = L.resolve_level_strides(ndim, depth, strides)
    net = _Net(ndim, in_channels, noise_channels, level_strides, dropout, name)
    if architecture == "unet3x3":
        x = _unet3x3(
            net, base_filters, max_filters, kernel_size, upsampling, full_resolution_norm, out_channels
        )
    elif architecture == "resnet":
        x = _resnet(
            net, base_filters, max_filters, kernel_size, upsampling, full_resolution_norm, out_channels,
            n_residual_blocks,
        )  # fmt: skip
    else:
        if full_resolution_norm:
            raise ValueError(
                "`full_resolution_norm` is a unet3x3 option: pix2pix has no full-resolution level. "
                "Received: architecture='pix2pix', full_resolution_norm=True"
            )
        x = _pix2pix(net, base_filters, max_filters, kernel_size, upsampling, out_channels)
    outputs = L.activation("tanh", name="out_tanh", dtype="float32")(x)
    return keras.Model(net.inputs, outputs, name=name)


class _Net:
    """What the architectures share: the input (split into condition and noise), the
    per-level strides and sizes, and the optional noise injection and dropout."""

    def __init__(self, ndim, in_channels, noise_channels, level_strides, dropout, name):
        self.ndim, self.level_strides, self.dropout = ndim, level_strides, dropout
        self.depth = len(level_strides)
        total = in_channels + noise_channels
        self.inputs = keras.Input(shape=(None,) * ndim + (total,), name=f"{name}_input")
        self.condition, self.noise = self.inputs, None
        if noise_channels:
            self.condition = L.ChannelSlice(0, in_channels, name="condition")(self.inputs)
            self.noise = L.ChannelSlice(in_channels, total, name="noise")(self.inputs)
        # Per level, the per-axis factor from full resolution to that level's resolution.
        self.factors = [(1,) * ndim]
        for stride in level_strides:
            self.factors.append(tuple(f * s for f, s in zip(self.factors[-1], stride)))

    def inject(self, x, level: int, prefix: str):
        """`x` plus learned-scale noise of `level`'s resolution (nothing without noise channels)."""
        if self.noise is None:
            return x
        return L.NoiseInjection(self.factors[level], name=f"{prefix}_noise")([x, self.noise])

    def drop(self, x, level: int, prefix: str):
        if self.dropout and level >= max(self.depth - DROPOUT_LEVELS, 1):
            return keras.layers.Dropout(self.dropout, name=f"{prefix}_dropout")(x)
        return x


def _unet3x3(
    net: _Net, base_filters, max_filters, kernel_size, upsampling, full_resolution_norm, out_channels
):
    ndim, depth, level_strides = net.ndim, net.depth, net.level_strides
    filters = [min(base_filters * 2**i, max_filters) for i in range(depth + 1)]

    def block(x, n_filters, stride, act, prefix, norm=True, level=None):
        x = L.reflect_conv(ndim, n_filters, kernel_size, stride, use_bias=not norm, name=f"{prefix}_conv")(x)
        if norm:
            x = L.instance_norm(name=f"{prefix}_norm")(x)
        if level is not None:
            x = net.inject(x, level, prefix)
        return L.activation(act, name=f"{prefix}_act")(x)

    # No norm on the input layer (as pix2pix's U-Net): a sparse seed map normalized per image
    # would lose how much of it is empty.
    x = block(net.condition, filters[0], 1, "leaky_relu", "enc0", norm=False, level=0)
    skips = [x]
    for level in range(1, depth + 1):
        x = block(x, filters[level], level_strides[level - 1], "leaky_relu", f"enc{level}_down")
        x = block(x, filters[level], 1, "leaky_relu", f"enc{level}", level=level)
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
        x = net.drop(x, level, prefix)
        x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip")([x, skips[level]])
        x = block(x, filters[level], 1, act, prefix, norm=norm, level=level)

    return L.conv(ndim, out_channels, 1, 1, name="out_conv", dtype="float32")(x)


def _centred(kernel_size: int, stride: Sequence[int]) -> tuple[int, ...]:
    """Per axis, `kernel_size`, or one less where an even kernel would slide by 1 (it would
    pad one side more and shift the features by half a pixel)."""
    return tuple(kernel_size - 1 if s == 1 and kernel_size % 2 == 0 else kernel_size for s in stride)


def _pix2pix(net: _Net, base_filters, max_filters, kernel_size, upsampling, out_channels):
    ndim, depth, level_strides = net.ndim, net.depth, net.level_strides
    # Level l (1..depth) holds base * 2**(l - 1) filters, as pix2pix's ngf, 2 ngf, ...; capped.
    filters = [0] + [min(base_filters * 2 ** (level - 1), max_filters) for level in range(1, depth + 1)]
    x = net.condition
    skips = [None]
    for level in range(1, depth + 1):
        stride = level_strides[level - 1]
        prefix = f"enc{level}"
        # No norm on the first level (pix2pix: a sparse map normalized per image loses how much
        # of it is empty) nor on the innermost one (1 px at the reference's depth: instance norm
        # would zero it).
        norm = 1 < level < depth
        kernel = _centred(kernel_size, stride)
        x = L.reflect_conv(ndim, filters[level], kernel, stride, use_bias=not norm, name=f"{prefix}_conv")(x)
        if norm:
            x = L.instance_norm(name=f"{prefix}_norm")(x)
        x = net.inject(x, level, prefix)
        # Un-normalized features take LeakyReLU too (plain ReLUs on them died in a stage-2 run).
        x = L.activation("leaky_relu", name=f"{prefix}_act")(x)
        skips.append(x)

    for level in range(depth - 1, -1, -1):
        stride = level_strides[level]
        prefix = f"dec{level}" if level else "out"
        n_filters, dtype = (filters[level], None) if level else (out_channels, "float32")
        if upsampling == "transpose":
            x = L.conv_transpose(
                ndim, n_filters, _centred(kernel_size, stride), stride, use_bias=not level,
                name=f"{prefix}_up", dtype=dtype,
            )(x)  # fmt: skip
        else:
            x = L.upsample(ndim, stride, name=f"{prefix}_up")(x)
            kernel = _centred(kernel_size, (1,) * ndim)
            x = L.reflect_conv(
                ndim, n_filters, kernel, 1, use_bias=not level, name=f"{prefix}_upconv", dtype=dtype
            )(x)
        if not level:
            return x
        x = L.instance_norm(name=f"{prefix}_up_norm")(x)
        x = net.inject(x, level, prefix)
        x = L.activation("relu", name=f"{prefix}_up_act")(x)
        x = net.drop(x, level, prefix)
        x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip")([x, skips[level]])
    raise AssertionError("unreachable: the loop returns at level 0")


# resnet's stem and output convolutions (the reference's 7x7, whatever `kernel_size` is).
RESNET_OUTER_KERNEL = 7


def _outer_kernel(kernel_size: int, first_stride: Sequence[int]) -> tuple[int, ...]:
    """resnet's stem / output kernel: 7 taps per axis, but `kernel_size` (centred) on an
    axis the first level does not halve (an anisotropic Z: 7 slices would span much more
    than 7 pixels, and a thin stack could not mirror-pad 3 slices)."""
    flat = _centred(kernel_size, (1,) * len(first_stride))
    return tuple(RESNET_OUTER_KERNEL if s > 1 else f for s, f in zip(first_stride, flat))


def _resnet(
    net: _Net, base_filters, max_filters, kernel_size, upsampling, full_resolution_norm, out_channels,
    n_blocks,
):  # fmt: skip
    ndim, depth, level_strides = net.ndim, net.depth, net.level_strides
    filters = [min(base_filters * 2**i, max_filters) for i in range(depth + 1)]
    flat = _centred(kernel_size, (1,) * ndim)  # stride-1 convolutions stay centred
    outer = _outer_kernel(kernel_size, level_strides[0])

    def conv_norm_act(x, n_filters, kernel, stride, act, prefix, norm=True):
        x = L.reflect_conv(ndim, n_filters, kernel, stride, use_bias=not norm, name=f"{prefix}_conv")(x)
        if norm:
            x = L.instance_norm(name=f"{prefix}_norm")(x)
        return L.activation(act, name=f"{prefix}_act")(x)

    # No norm on the stem (the reference has one): see the U-Nets' input layers.
    x = conv_norm_act(net.condition, filters[0], outer, 1, "leaky_relu", "enc0", norm=False)
    for level in range(1, depth + 1):
        stride = level_strides[level - 1]
        x = conv_norm_act(x, filters[level], _centred(kernel_size, stride), stride, "relu", f"enc{level}")

    for block in range(n_blocks):
        prefix = f"res{block}"
        y = conv_norm_act(x, filters[depth], flat, 1, "relu", f"{prefix}a")
        y = net.inject(y, depth, prefix)
        if net.dropout:
            y = keras.layers.Dropout(net.dropout, name=f"{prefix}_dropout")(y)
        y = L.reflect_conv(ndim, filters[depth], flat, 1, use_bias=False, name=f"{prefix}b_conv")(y)
        y = L.instance_norm(name=f"{prefix}b_norm")(y)
        x = keras.layers.Add(name=f"{prefix}_add")([x, y])

    for level in range(depth - 1, -1, -1):
        stride = level_strides[level]
        prefix = f"dec{level}"
        # No norm at full resolution unless asked for (see unet3x3's decoder); LeakyReLU then.
        norm = level > 0 or full_resolution_norm
        if upsampling == "transpose":
            kernel = _centred(kernel_size, stride)
            x = L.conv_transpose(
                ndim, filters[level], kernel, stride, use_bias=not norm, name=f"{prefix}_up"
            )(x)
        else:
            x = L.upsample(ndim, stride, name=f"{prefix}_up")(x)
            x = L.reflect_conv(ndim, filters[level], flat, 1, use_bias=not norm, name=f"{prefix}_upconv")(x)
        if norm:
            x = L.instance_norm(name=f"{prefix}_up_norm")(x)
        x = L.activation("relu" if norm else "leaky_relu", name=f"{prefix}_up_act")(x)

    return L.reflect_conv(ndim, out_channels, outer, 1, name="out_conv", dtype="float32")(x)


def generator_from_config(
    config: GeneratorConfig, ndim: int, in_channels: int, out_channels: int, name: str = "generator"
) -> keras.Model:
    """`build_generator` with the fields of a `GeneratorConfig`.

    With `config.noise_channels` > 0 the model takes `in_channels + noise_channels` channels.
    """
    return build_generator(
        ndim,
        in_channels,
        out_channels,
        architecture=config.architecture,
        base_filters=config.base_filters,
        depth=config.depth,
        max_filters=config.max_filters,
        kernel_size=config.kernel_size,
        upsampling=config.upsampling,
        strides=config.strides or None,
        full_resolution_norm=config.full_resolution_norm,
        dropout=config.dropout,
        noise_channels=config.noise_channels,
        n_residual_blocks=config.n_residual_blocks,
        name=name,
    )


def with_noise(condition: tf.Tensor, noise_channels: int, seed: int | None = None) -> tf.Tensor:
    """`condition` (B, *spatial, C) with `noise_channels` channels of N(0, 1) noise appended.

    The input of a generator built with `noise_channels` > 0, for training and panels (synthesis
    draws the noise from each sample's own numpy stream instead). Returns `condition` itself
    when `noise_channels` is 0.
    """
    if not noise_channels:
        return condition
    shape = tf.concat([tf.shape(condition)[:-1], [noise_channels]], axis=0)
    noise = tf.random.normal(shape, dtype=condition.dtype, seed=seed)
    return tf.concat([condition, noise], axis=-1)


def smallest_input(config: GeneratorConfig, ndim: int) -> tuple[int, ...]:
    """Per axis, the smallest size whose round-up to the total stride the generator takes.

    A mirror-padded convolution needs more pixels than it pads on each side (TensorFlow:
    "paddings must be less than the dimension size"); the deepest such convolution decides.
    For unet3x3 that is `(kernel_size // 2) * divisor + 1` (e.g. 17 px for 16-divisor nets);
    pix2pix pads at most 1 px and only up to the level above its innermost, so any multiple
    of its divisor works. resnet's residual blocks pad `kernel_size // 2` at the innermost
    level (2 levels, 3x3: 5 px, hence 8) and its 7x7 stem 3 px at full resolution.
    """
    level_strides = L.resolve_level_strides(ndim, config.depth, config.strides or None)
    factors = [(1,) * ndim]
    for stride in level_strides:
        factors.append(tuple(f * s for f, s in zip(factors[-1], stride)))
    k = config.kernel_size
    pads = []  # (factor of the padded input's level, per-axis (before, after) padding)
    for level in range(1, config.depth + 1):
        stride = level_strides[level - 1]
        if config.architecture == "unet3x3":
            pads.append((factors[level - 1], L.same_padding(ndim, k, stride)))
            pads.append((factors[level], L.same_padding(ndim, k, 1)))
        elif config.architecture == "resnet":
            pads.append((factors[level - 1], L.same_padding(ndim, _centred(k, stride), stride)))
            if config.upsampling == "nearest":
                pads.append((factors[level - 1], L.same_padding(ndim, _centred(k, (1,) * ndim), 1)))
        else:
            pads.append((factors[level - 1], L.same_padding(ndim, _centred(k, stride), stride)))
            if config.upsampling == "nearest":
                pads.append((factors[level - 1], L.same_padding(ndim, _centred(k, (1,) * ndim), 1)))
    if config.architecture == "unet3x3":
        pads.append((factors[0], L.same_padding(ndim, k, 1)))
    if config.architecture == "resnet":
        pads.append((factors[0], L.same_padding(ndim, _outer_kernel(k, level_strides[0]), 1)))
        pads.append((factors[config.depth], L.same_padding(ndim, _centred(k, (1,) * ndim), 1)))
    need = [1] * ndim
    for factor, padding in pads:
        for axis, (before, after) in enumerate(padding):
            need[axis] = max(need[axis], max(before, after) * factor[axis] + 1)
    return tuple(need)
