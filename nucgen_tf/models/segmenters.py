"""U-Net / 3D U-Net nucleus segmenters predicting background / interior / boundary.

The paper measures what synthetic data is worth by training "commonly-used" segmenters
(U-Net [11] in 2D, 3D U-Net [12] in 3D) with and without it. The three-class formulation
(background, nucleus interior, nucleus boundary) is the usual way to make a semantic U-Net
separate touching nuclei (Caicedo et al. 2019 on BBBC039, most DSB 2018 U-Net entries): the
boundary class leaves a gap between touching interiors, whose connected components are the
instance seeds (`nucgen_tf.segment.instances`).

One builder serves 2D and 3D (the rank picks the layer class); the model is functional and
made of built-in layers only, so it loads in Keras safe mode. The spatial input shape is
None: any size that is a multiple of `size_multiple` per axis (2**depth for isotropic
strides) works, which is what tiled prediction relies on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from nucgen_tf.models import layers as L
from nucgen_tf.models.config import normalize_strides

# Output classes, in channel order.
CLASSES = ("background", "interior", "boundary")
NUM_CLASSES = len(CLASSES)
NORMS = ("batch", "instance", "none")

_POOL = {2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
_SPATIAL_DROPOUT = {2: keras.layers.SpatialDropout2D, 3: keras.layers.SpatialDropout3D}


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """Architecture of the U-Net segmenter.

    Attributes:
        base_filters: filters of the full-resolution level, doubled per level. The U-Net
            paper used 64; 16 is the default here because a training step costs about the
            square of it on a CPU (2D, 4 x 256^2 patches, depth 4: 2.5 CPU-s at 16 vs 7.2
            at 32) and 16 already reached 0.93 instance F1 on BBBC039 val after 300 steps.
        depth: number of down-sampling levels; every input size must be a multiple of the
            product of the strides (2**depth by default).
        max_filters: cap on the filters of a level.
        kernel_size: size of the convolutions of each level.
        norm: "batch" (after every 3x3 convolution, as the 3D U-Net), "instance" (for
            batches of one 3D patch, where batch statistics are noise) or "none" (original
            2D U-Net).
        dropout: spatial dropout rate applied after the two deepest levels of the
            encoder (the original U-Net's "drop-out layers at the end of the contracting
            path"); 0 disables it.
        strides: `()` (isotropic 2 at every level) or one stride per level, an int or a
            per-axis tuple in {1, 2}, e.g. ((1, 2, 2), 2, 2, 2) for a stack with coarse Z.
    """

    base_filters: int = 16
    depth: int = 4
    max_filters: int = 512
    kernel_size: int = 3
    norm: str = "batch"
    dropout: float = 0.0
    strides: tuple = ()

    def __post_init__(self):
        for name in ("base_filters", "depth", "max_filters", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        if self.norm not in NORMS:
            raise ValueError(f"`norm` must be one of {NORMS}. Received: norm={self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={self.dropout}")
        object.__setattr__(self, "strides", normalize_strides(self.strides, self.depth))


def size_multiple(ndim: int, config: SegmenterConfig) -> tuple[int, ...]:
    """Per-axis factor that every input size must be a multiple of."""
    return L.size_multiple(ndim, config.strides or None, config.depth)


def build_unet_segmenter(
    ndim: int,
    config: SegmenterConfig | None = None,
    *,
    in_channels: int = 1,
    dtype: str | None = None,
    name: str = "segmenter",
) -> keras.Model:
    """Build a functional U-Net (ndim=2) or 3D U-Net (ndim=3) with a 3-class softmax.

    Per level: two [conv (kernel_size) -> norm -> ReLU] blocks; max pooling by the level's
    stride going down; a transposed convolution with kernel = stride (the U-Net "up-conv"),
    concatenation with the encoder features of the same level, and two blocks going up.
    Convolutions are zero-padded ("same"), He-initialized (ReLU network, possibly without
    norm). The final 1x1 convolution and the softmax are float32 so that a mixed-precision
    policy never rounds the probabilities.

    Args:
        ndim: spatial rank, 2 or 3.
        config: architecture; defaults to `SegmenterConfig()`.
        in_channels: image channels.
        dtype: dtype policy name of every layer (e.g. "float32" to build a full-precision
            twin of a mixed-precision model); None uses the global policy.
        name: model name.

    Returns:
        A `keras.Model` mapping (B, *spatial, in_channels) to (B, *spatial, 3) class
        probabilities (background, interior, boundary), float32.
    """
    L.check_ndim(ndim)
    if in_channels < 1:
        raise ValueError(f"`in_channels` must be >= 1. Received: in_channels={in_channels}")
    config = SegmenterConfig() if config is None else config
    strides = L.resolve_level_strides(ndim, config.depth, config.strides or None)
    filters = [min(config.base_filters * 2**level, config.max_filters) for level in range(config.depth + 1)]
    use_bias = config.norm == "none"

    def conv_block(x, n_filters, prefix):
        for i in (1, 2):
            x = L.conv(
                ndim,
                n_filters,
                config.kernel_size,
                use_bias=use_bias,
                kernel_initializer="he_normal",
                name=f"{prefix}_conv{i}",
                dtype=dtype,
            )(x)
            if config.norm == "batch":
                x = keras.layers.BatchNormalization(name=f"{prefix}_bn{i}", dtype=dtype)(x)
            elif config.norm == "instance":
                norm = L.instance_norm(name=f"{prefix}_in{i}")
                if dtype is not None:
                    norm = keras.layers.GroupNormalization.from_config({**norm.get_config(), "dtype": dtype})
                x = norm(x)
            x = keras.layers.Activation("relu", name=f"{prefix}_relu{i}", dtype=dtype)(x)
        return x

    def dropout(x, level):
        if config.dropout > 0 and level >= config.depth - 1:
            x = _SPATIAL_DROPOUT[ndim](config.dropout, name=f"enc{level}_dropout", dtype=dtype)(x)
        return x

    inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name=f"{name}_input")
    x = inputs
    skips = []
    for level in range(config.depth):
        x = dropout(conv_block(x, filters[level], f"enc{level}"), level)
        skips.append(x)
        x = _POOL[ndim](pool_size=strides[level], name=f"enc{level}_pool", dtype=dtype)(x)
    x = dropout(conv_block(x, filters[config.depth], "bottom"), config.depth)

    for level in range(config.depth - 1, -1, -1):
        x = L.conv_transpose(
            ndim,
            filters[level],
            strides[level],
            strides=strides[level],
            kernel_initializer="he_normal",
            name=f"dec{level}_up",
            dtype=dtype,
        )(x)
        x = keras.layers.Concatenate(axis=-1, name=f"dec{level}_skip", dtype=dtype)([x, skips[level]])
        x = conv_block(x, filters[level], f"dec{level}")

    logits = L.conv(
        ndim,
        NUM_CLASSES,
        1,
        padding="valid",
        kernel_initializer="glorot_uniform",
        name="out_conv",
        dtype="float32",
    )(x)
    outputs = keras.layers.Activation("softmax", name="out_softmax", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=name)


def check_input_shape(spatial_shape: Sequence[int], config: SegmenterConfig) -> None:
    """Raise a readable error when a patch size is not a multiple of the total stride."""
    L.check_spatial_shape(tuple(spatial_shape), config.strides or None, config.depth)
