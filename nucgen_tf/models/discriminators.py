"""Markovian PatchGAN discriminators for any spatial rank (pix2pix, paper Sec. III).

A PatchGAN classifies every overlapping patch (70x70 pixels at `n_layers=3`, kernel 4) as
real or fake, so it judges local texture and shape and works on any input size.

Multi-scale (pix2pixHD, `scales > 1`): one functional model holds k PatchGANs of the same
layout; the k-th judges the input average-pooled k times, and the model returns the list of
their logits, finest first. `feature_extractor` gives a model on the SAME layers that also
returns every intermediate activation (pix2pixHD's feature matching) without changing the
discriminator itself, so saved discriminators and checkpoints stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

from nucgen_tf.models import layers as L
from nucgen_tf.models.config import DiscriminatorConfig

_POOL = {2: keras.layers.AveragePooling2D, 3: keras.layers.AveragePooling3D}
# Names of the intermediate activations and logits, "scale<k>_" prefixed when scales > 1.
_FEATURE_NAME = re.compile(r"^(scale\d+_)?act\d+$")


def _patchgan(x, ndim, level_strides, base_filters, n_layers, max_filters, kernel_size, prefix=""):
    x = L.conv(ndim, base_filters, kernel_size, level_strides[0], name=f"{prefix}conv0")(x)
    x = L.activation("leaky_relu", name=f"{prefix}act0")(x)
    for n in range(1, n_layers + 1):
        n_filters = min(base_filters * 2**n, max_filters)
        stride = level_strides[n] if n < n_layers else 1
        x = L.conv(ndim, n_filters, kernel_size, stride, use_bias=False, name=f"{prefix}conv{n}")(x)
        x = L.instance_norm(name=f"{prefix}norm{n}")(x)
        x = L.activation("leaky_relu", name=f"{prefix}act{n}")(x)
    return L.conv(ndim, 1, kernel_size, 1, name=f"{prefix}logits", dtype="float32")(x)


def scale_pooling(ndim: int, strides: Sequence[L.Stride] | None, n_layers: int) -> tuple[int, ...]:
    """Per-axis factor between two scales of a multi-scale discriminator: the first level's stride.

    An axis that the first strided layer keeps (Z of a thin stack, stride 1) is never pooled,
    so the coarse scales do not lose a short axis faster than the network itself does.
    """
    return L.resolve_level_strides(ndim, n_layers, strides)[0]


def build_discriminator(
    ndim: int,
    in_channels: int,
    *,
    base_filters: int = 16,
    n_layers: int = 3,
    max_filters: int = 128,
    kernel_size: int = 4,
    strides: Sequence[L.Stride] | None = None,
    scales: int = 1,
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
        scales: number of PatchGANs (pix2pixHD); the k-th sees the input average-pooled k
            times by `scale_pooling` (pool size = stride, "same" padding). 1 builds the
            single-scale network of earlier versions, layer names included.
        name: model name.

    Returns:
        A `keras.Model` mapping (B, *spatial, in_channels) to logits (B, *patch_grid, 1),
        `patch_grid = spatial / prod(strides)` per axis (rounded up); with `scales > 1` to a
        list of such logits, scale k's grid `spatial / (pooling**k * prod(strides))`.
    """
    checked = dict(in_channels=in_channels, base_filters=base_filters, n_layers=n_layers, scales=scales)
    for arg, value in checked.items():
        if value < 1:
            raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
    level_strides = L.resolve_level_strides(ndim, n_layers, strides)
    args = (ndim, level_strides, base_filters, n_layers, max_filters, kernel_size)

    inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name=f"{name}_input")
    if scales == 1:
        return keras.Model(inputs, _patchgan(inputs, *args), name=name)
    pool = scale_pooling(ndim, strides, n_layers)
    if pool == (1,) * ndim:
        raise ValueError(
            "`scales` > 1 pools the axes that the first strided layer halves, and it halves none. "
            f"Received: scales={scales}, strides={strides!r}"
        )
    outputs, x = [], inputs
    for k in range(scales):
        if k:
            x = _POOL[ndim](pool_size=pool, strides=pool, padding="same", name=f"scale{k}_pool")(x)
        outputs.append(_patchgan(x, *args, prefix=f"scale{k}_"))
    return keras.Model(inputs, outputs, name=name)


def logits_list(logits) -> list:
    """A discriminator's output as a list of logits, one per scale."""
    return list(logits) if isinstance(logits, (list, tuple)) else [logits]


def feature_extractor(discriminator: keras.Model) -> keras.Model:
    """A model on the discriminator's own layers returning (features, logits).

    Built once per discriminator (it shares the weights; it holds none of its own), it maps
    the input to `{"features": [...], "logits": [...]}`: every intermediate LeakyReLU output
    (`act<n>`, per scale `scale<k>_act<n>`) in graph order, and the logits of every scale.

    Raises:
        ValueError: the network has no such layers (not built by `build_discriminator`).
    """
    features = [layer.output for layer in discriminator.layers if _FEATURE_NAME.match(layer.name)]
    if not features:
        raise ValueError(
            "Feature matching needs a discriminator from `build_discriminator` (intermediate layers "
            f"named act<n>). Received: {discriminator.name!r} with layers "
            f"{[layer.name for layer in discriminator.layers][:8]}"
        )
    outputs = {"features": features, "logits": logits_list(discriminator.outputs)}
    return keras.Model(discriminator.inputs[0], outputs, name=f"{discriminator.name}_features")


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
        scales=config.scales,
        name=name,
    )
