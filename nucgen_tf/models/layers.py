"""Layer factories for any spatial rank, and stride bookkeeping.

One code path serves 2D and 3D: the rank picks the Keras class from a table, and
anisotropic 3D data are handled by per-axis stride tuples, never by a copied 3D module.
Every factory returns a built-in Keras layer or one of the registered serializable layers
here (`ReflectPadding`, `ChannelSlice`, `NoiseInjection`), so the networks load in safe mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

_CONV = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_CONV_TRANSPOSE = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}
_UPSAMPLE = {2: keras.layers.UpSampling2D, 3: keras.layers.UpSampling3D}

Stride = int | Sequence[int]


def check_ndim(ndim: int) -> None:
    """Raise unless `ndim` is a spatial rank the layer tables hold (2 or 3)."""
    if ndim not in _CONV:
        raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim!r}")


def _init() -> keras.initializers.Initializer:
    # N(0, 0.02) as in pix2pix/CycleGAN; a fresh instance per layer so that every layer
    # draws its own weights (an initializer object reused with a fixed seed would not).
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def as_stride(ndim: int, stride: Stride) -> tuple[int, ...]:
    """A per-axis stride tuple from an int or a sequence of `ndim` ints."""
    if isinstance(stride, int):
        return (stride,) * ndim
    stride = tuple(int(s) for s in stride)
    if len(stride) != ndim:
        raise ValueError(f"A stride needs {ndim} entries for ndim={ndim}. Received: stride={stride}")
    return stride


@keras.saving.register_keras_serializable(package="nucgen")
class ReflectPadding(keras.layers.Layer):
    """Mirror-pad the spatial axes of (B, *spatial, C), as the reference CycleGAN does.

    With zero padding the border is the only signal in a near-constant map (an empty seed
    map, a wide background), and the generator learns to paint nuclei placed relative to
    the border: measured as a regular lattice of fake nuclei on empty stage-1 inputs after
    400 steps. With mirrored borders a constant map stays constant.

    Args:
        padding: one (before, after) pair per spatial axis.
    """

    def __init__(self, padding: Sequence[Sequence[int]], **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple((int(a), int(b)) for a, b in padding)

    def call(self, x):
        return keras.ops.pad(x, ((0, 0), *self.padding, (0, 0)), mode="reflect")

    def compute_output_shape(self, input_shape):
        spatial = [None if n is None else n + a + b for n, (a, b) in zip(input_shape[1:-1], self.padding)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="nucgen")
class ChannelSlice(keras.layers.Layer):
    """Channels `start:stop` of (B, *spatial, C): splits a generator's input into condition and noise.

    Args:
        start: first channel kept.
        stop: one past the last channel kept.
    """

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= start < stop:
            raise ValueError(f"`start` and `stop` must satisfy 0 <= start < stop. Received: {start}, {stop}")
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="nucgen")
class NoiseInjection(keras.layers.Layer):
    """Adds learned-scale noise to a feature map: `features + n @ scale` (StyleGAN's noise inputs).

    Called on `[features, noise]`: features (B, *spatial / pool, C) and full-resolution
    standard Gaussian noise (B, *spatial, K). The noise is average-pooled by `pool` per axis
    (the level's total stride) and multiplied by sqrt(prod(pool)), so every level sees
    unit-variance noise of its own resolution; `scale` (K, C) maps it to a per-channel
    amplitude (K = 1: one learned scale per channel). `scale` starts at 0, so a new network
    computes exactly what it would without noise and learns how much texture to draw.

    Args:
        pool: per-axis pooling factor from the noise's resolution to the features'.
    """

    def __init__(self, pool: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.pool = tuple(int(p) for p in pool)
        if not self.pool or min(self.pool) < 1:
            raise ValueError(f"`pool` must be positive ints, one per axis. Received: pool={pool!r}")

    def build(self, input_shape):
        features, noise = input_shape
        self.scale = self.add_weight(
            name="scale", shape=(int(noise[-1]), int(features[-1])), initializer="zeros", trainable=True
        )

    def call(self, inputs):
        features, noise = inputs
        # Pooled in float32: the CPU pooling kernels lack some low-precision dtypes.
        noise = keras.ops.cast(noise, "float32")
        if math.prod(self.pool) > 1:
            noise = keras.ops.average_pool(noise, self.pool, strides=self.pool, padding="valid")
            noise = noise * math.sqrt(math.prod(self.pool))
        noise = keras.ops.cast(noise, features.dtype)
        return features + keras.ops.matmul(noise, keras.ops.cast(self.scale, features.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self) -> dict:
        return {**super().get_config(), "pool": self.pool}


def same_padding(ndim: int, kernel_size: Stride, strides: Stride = 1) -> tuple[tuple[int, int], ...]:
    """The (before, after) padding per axis that "same" uses for sizes divisible by the stride."""
    pads = []
    for kernel, stride in zip(as_stride(ndim, kernel_size), as_stride(ndim, strides)):
        total = max(kernel - stride, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def reflect_conv(ndim: int, filters: int, kernel_size: Stride = 3, strides: Stride = 1, **kwargs):
    """A convolution with mirrored borders and the output size of "same"; returns a callable.

    `kernel_size` is an int or one size per axis (as a stride).
    """
    layer = conv(ndim, filters, kernel_size, strides, padding="valid", **kwargs)
    pad = ReflectPadding(same_padding(ndim, kernel_size, strides), name=f"{layer.name}_pad")

    def apply(x):
        return layer(pad(x))

    return apply


def conv(
    ndim: int,
    filters: int,
    kernel_size: Stride = 3,
    strides: Stride = 1,
    *,
    use_bias: bool = True,
    name: str | None = None,
    dtype: str | None = None,
    padding: str = "same",
    kernel_initializer: str | keras.initializers.Initializer | None = None,
) -> keras.layers.Layer:
    """A convolution of rank `ndim` ("same": output size = input size / stride).

    `kernel_initializer` defaults to N(0, 0.02), the GANs' choice.
    """
    check_ndim(ndim)
    return _CONV[ndim](
        filters,
        as_stride(ndim, kernel_size),
        strides=as_stride(ndim, strides),
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=_init() if kernel_initializer is None else kernel_initializer,
        name=name,
        dtype=dtype,
    )


def conv_transpose(
    ndim: int,
    filters: int,
    kernel_size: Stride = 3,
    strides: Stride = 2,
    *,
    use_bias: bool = True,
    name: str | None = None,
    dtype: str | None = None,
    kernel_initializer: str | keras.initializers.Initializer | None = None,
) -> keras.layers.Layer:
    """A "same"-padded transposed convolution (output size = input size * stride).

    `kernel_initializer` defaults to N(0, 0.02), the GANs' choice.
    """
    check_ndim(ndim)
    return _CONV_TRANSPOSE[ndim](
        filters,
        as_stride(ndim, kernel_size),
        strides=as_stride(ndim, strides),
        padding="same",
        use_bias=use_bias,
        kernel_initializer=_init() if kernel_initializer is None else kernel_initializer,
        name=name,
        dtype=dtype,
    )


def upsample(ndim: int, size: Stride = 2, *, name: str | None = None) -> keras.layers.Layer:
    """Nearest-neighbour up-sampling by `size` per axis."""
    check_ndim(ndim)
    return _UPSAMPLE[ndim](size=as_stride(ndim, size), name=name)


def instance_norm(name: str | None = None) -> keras.layers.Layer:
    """Instance normalization without affine parameters (reference CycleGAN: affine=False).

    `GroupNormalization(groups=-1)` puts every channel in its own group and normalizes over
    all the spatial axes of each sample, for any rank; statistics are computed in float32
    even under a mixed-precision policy. epsilon is 1e-3, not the reference 1e-5: the maps
    here are often exactly constant (an empty seed map), where the gradient through the norm
    scales float round-off by 1/sqrt(epsilon) per layer; at 1e-5 that overflowed to NaN in
    two steps, at 1e-3 it trains.
    """
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-3, center=False, scale=False, name=name)


def activation(kind: str, *, name: str | None = None, dtype: str | None = None) -> keras.layers.Layer:
    """ "relu", "leaky_relu" (slope 0.2, as pix2pix/CycleGAN), "tanh" or "linear"."""
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.2, name=name, dtype=dtype)
    if kind in ("relu", "tanh", "linear"):
        return keras.layers.Activation(kind, name=name, dtype=dtype)
    raise ValueError(f"`kind` must be one of relu, leaky_relu, tanh, linear. Received: kind={kind!r}")


def resolve_level_strides(ndim: int, levels: int, strides: Sequence[Stride] | None) -> list[tuple[int, ...]]:
    """Per-level, per-axis strides; `None` or empty means isotropic 2 at every level."""
    check_ndim(ndim)
    if not strides:
        return [(2,) * ndim] * levels
    if len(strides) != levels:
        raise ValueError(f"`strides` needs one entry per level ({levels}). Received: strides={strides!r}")
    resolved = [as_stride(ndim, s) for s in strides]
    if any(s not in (1, 2) for level in resolved for s in level):
        raise ValueError(f"Every stride must be 1 or 2. Received: strides={strides!r}")
    return resolved


def level_strides(patch_shape: Sequence[int], levels: int, min_size: int = 4) -> list[tuple[int, ...]]:
    """Per-level strides that stop halving an axis before it gets shorter than `min_size`.

    For anisotropic stacks such as (Z, Y, X) = (16, 128, 128), isotropic stride 2 would
    shrink Z to a single plane long before Y and X; this keeps Z at `min_size` while Y and X
    are still reduced.

    Args:
        patch_shape: spatial patch shape, (Y, X) or (Z, Y, X).
        levels: number of down-sampling levels (generator depth, discriminator layers).
        min_size: an axis is halved only if the result is >= `min_size` and the size is even.

    Returns:
        One per-axis stride tuple per level.

    Example:
        >>> level_strides((16, 128, 128), 4, min_size=4)
        [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]
    """
    if len(patch_shape) not in _CONV:
        raise ValueError(f"`patch_shape` must have 2 or 3 entries. Received: patch_shape={patch_shape}")
    sizes = list(patch_shape)
    out = []
    for _ in range(levels):
        level = []
        for axis, size in enumerate(sizes):
            stride = 2 if size % 2 == 0 and size // 2 >= min_size else 1
            sizes[axis] = size // stride
            level.append(stride)
        out.append(tuple(level))
    return out


def size_multiple(ndim: int, strides: Sequence[Stride] | None, levels: int) -> tuple[int, ...]:
    """Per-axis factor every input size must be a multiple of (the product of the strides)."""
    resolved = resolve_level_strides(ndim, levels, strides)
    return tuple(math.prod(level[axis] for level in resolved) for axis in range(ndim))


def check_spatial_shape(spatial_shape: Sequence[int], strides: Sequence[Stride] | None, levels: int) -> None:
    """Raise a readable error when a patch size does not fit the network's strides.

    The generators accept any size at run time, but a size that is not a multiple of the
    total stride makes the skip concatenation fail deep inside TensorFlow.
    """
    ndim = len(spatial_shape)
    multiple = size_multiple(ndim, strides, levels)
    if any(s % m for s, m in zip(spatial_shape, multiple)):
        raise ValueError(
            f"Every spatial size must be a multiple of {multiple} for these strides. "
            f"Received: spatial_shape={tuple(spatial_shape)}"
        )
