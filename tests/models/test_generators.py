"""The pix2pix and resnet generator architectures and noise channels (nucgen_tf.models.generators, layers)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf.models import DiscriminatorConfig, GeneratorConfig, Pix2Pix, build_pix2pix
from nucgen_tf.models import layers as L
from nucgen_tf.models.generators import build_generator, generator_from_config, smallest_input, with_noise

UNETS = ["unet3x3", "pix2pix"]
ARCHITECTURES = [*UNETS, "resnet"]


def _noise_layers(model: keras.Model) -> list[L.NoiseInjection]:
    return [layer for layer in model.layers if isinstance(layer, L.NoiseInjection)]


def _inputs(shape, seed: int, noise_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The same condition with two different noise draws appended."""
    rng = np.random.default_rng(seed)
    condition = rng.uniform(-1, 1, shape).astype(np.float32)
    a, b = (rng.standard_normal((*shape[:-1], noise_channels)).astype(np.float32) for _ in range(2))
    return np.concatenate([condition, a], -1), np.concatenate([condition, b], -1)


def test_pix2pix_has_one_strided_4x4_conv_per_level_and_the_reference_norms():
    gen = build_generator(2, 4, 1, architecture="pix2pix", base_filters=8, depth=3, max_filters=16)
    convs = [layer for layer in gen.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.name for c in convs] == ["enc1_conv", "enc2_conv", "enc3_conv"]
    assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) for c in convs)
    assert [c.filters for c in convs] == [8, 16, 16]
    names = {layer.name for layer in gen.layers}
    # Norm on neither the first level (sparse maps) nor the innermost (1 px in the reference).
    assert "enc2_norm" in names and not {"enc1_norm", "enc3_norm"} & names
    assert {"dec2_up_norm", "dec1_up_norm"} <= names
    # A skip at every level between the input and the bottleneck; the last up-sampling
    # paints the output (float32): no full-resolution feature map.
    assert sum(isinstance(layer, keras.layers.Concatenate) for layer in gen.layers) == 2
    out = gen.get_layer("out_up")
    assert isinstance(out, keras.layers.Conv2DTranspose) and out.filters == 1 and out.dtype == "float32"
    assert isinstance(gen.get_layer("enc1_conv_pad"), L.ReflectPadding)  # mirrored borders


def test_pix2pix_keeps_even_kernels_centred_on_unstrided_axes():
    gen = build_generator(3, 1, 1, architecture="pix2pix", base_filters=4, depth=2, strides=[(1, 2, 2), 2],
                          upsampling="nearest")  # fmt: skip
    assert gen.get_layer("enc1_conv").kernel_size == (3, 4, 4)  # Z not strided: 3 taps, no half-voxel shift
    assert gen.get_layer("enc2_conv").kernel_size == (4, 4, 4)
    assert gen.get_layer("dec1_upconv").kernel_size == (3, 3, 3)  # resize-conv: a centred kernel
    assert tuple(gen(np.zeros((1, 4, 16, 16, 1), np.float32)).shape) == (1, 4, 16, 16, 1)


def test_resnet_is_the_cyclegan_generator_with_mirrored_borders():
    gen = build_generator(2, 3, 4, architecture="resnet", base_filters=8, depth=2, n_residual_blocks=3)
    convs = {layer.name: layer for layer in gen.layers if isinstance(layer, keras.layers.Conv2D)}
    # 7x7 stem, 2 stride-2 3x3 convolutions, 3 blocks of two 3x3 convolutions, 7x7 out.
    encoder = [convs[f"enc{i}_conv"] for i in range(3)]
    assert [(c.kernel_size, c.strides, c.filters) for c in encoder] == [
        ((7, 7), (1, 1), 8), ((3, 3), (2, 2), 16), ((3, 3), (2, 2), 32)
    ]  # fmt: skip
    blocks = [f"res{i}{ab}_conv" for i in range(3) for ab in "ab"]
    assert all(convs[n].kernel_size == (3, 3) and convs[n].filters == 32 for n in blocks)
    out = convs["out_conv"]
    assert out.kernel_size == (7, 7) and out.filters == 4 and out.dtype == "float32"
    assert len(convs) == 3 + len(blocks) + 1
    # Reflect padding on every convolution, residual additions, and no U-Net skips.
    assert all(isinstance(gen.get_layer(f"{name}_pad"), L.ReflectPadding) for name in convs)
    assert sum(isinstance(layer, keras.layers.Add) for layer in gen.layers) == 3
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in gen.layers)
    ups = [layer for layer in gen.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(u.name, u.kernel_size, u.strides, u.filters) for u in ups] == [
        ("dec1_up", (3, 3), (2, 2), 16), ("dec0_up", (3, 3), (2, 2), 8)
    ]  # fmt: skip
    # Instance norm on the down-sampling, the blocks and the half-resolution up step; none on
    # the stem nor at full resolution (sparse maps), unless `full_resolution_norm`.
    norms = {layer.name for layer in gen.layers if isinstance(layer, keras.layers.GroupNormalization)}
    assert norms == {"enc1_norm", "enc2_norm", "dec1_up_norm", *(n.replace("conv", "norm") for n in blocks)}
    normed = build_generator(
        2, 3, 4, architecture="resnet", base_filters=8, depth=2, full_resolution_norm=True
    )
    assert "dec0_up_norm" in {layer.name for layer in normed.layers}


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_resnet_output_matches_any_input_divisible_by_4(ndim, upsampling):
    gen = build_generator(ndim, 2, 3, architecture="resnet", base_filters=4, depth=2, n_residual_blocks=2,
                          upsampling=upsampling)  # fmt: skip
    sizes = {2: [(8, 8), (12, 20), (36, 44)], 3: [(8, 8, 8), (8, 12, 16)]}[ndim]
    rng = np.random.default_rng(0)
    for spatial in sizes:
        y = gen(rng.uniform(-1, 1, (2, *spatial, 2)).astype(np.float32))
        assert tuple(y.shape) == (2, *spatial, 3) and y.dtype == tf.float32
        assert float(tf.reduce_max(tf.abs(y))) <= 1.0


def test_resnet_keeps_the_stem_thin_on_an_axis_the_first_level_keeps():
    gen = build_generator(
        3, 1, 1, architecture="resnet", base_filters=4, depth=2, strides=[(1, 2, 2), (1, 2, 2)]
    )
    assert gen.get_layer("enc0_conv").kernel_size == (3, 7, 7)
    assert gen.get_layer("out_conv").kernel_size == (3, 7, 7)
    assert tuple(gen(np.zeros((1, 2, 16, 16, 1), np.float32)).shape) == (1, 2, 16, 16, 1)
    config = GeneratorConfig(architecture="resnet", depth=2, strides=((1, 2, 2), (1, 2, 2)))
    assert smallest_input(config, 3) == (2, 5, 5)


def test_resnet_dropout_sits_in_every_residual_block_and_only_trains():
    gen = build_generator(
        2, 1, 1, architecture="resnet", base_filters=4, depth=2, n_residual_blocks=3, dropout=0.5
    )
    dropped = sorted(layer.name for layer in gen.layers if isinstance(layer, keras.layers.Dropout))
    assert dropped == ["res0_dropout", "res1_dropout", "res2_dropout"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(gen(x, training=False).numpy(), gen(x, training=False).numpy())
    assert not np.array_equal(gen(x, training=True).numpy(), gen(x, training=False).numpy())


def test_resnet_blocks_come_from_the_config():
    config = GeneratorConfig(architecture="resnet", base_filters=4, depth=2, n_residual_blocks=2)
    assert config.kernel_size == 3 and GeneratorConfig().n_residual_blocks == 6
    gen = generator_from_config(config, 2, 1, 1)
    assert sum(isinstance(layer, keras.layers.Add) for layer in gen.layers) == 2
    with pytest.raises(ValueError, match="n_residual_blocks"):
        GeneratorConfig(architecture="resnet", n_residual_blocks=0)


@pytest.mark.parametrize("architecture", UNETS)
def test_dropout_sits_in_the_three_innermost_decoder_levels_and_only_trains(architecture):
    gen = build_generator(2, 1, 1, architecture=architecture, base_filters=4, depth=5, dropout=0.5)
    dropped = sorted(layer.name for layer in gen.layers if isinstance(layer, keras.layers.Dropout))
    assert dropped == ["dec2_dropout", "dec3_dropout", "dec4_dropout"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 1)).astype(np.float32)  # unet3x3: > 32 px
    np.testing.assert_array_equal(gen(x, training=False).numpy(), gen(x, training=False).numpy())
    assert not np.array_equal(gen(x, training=True).numpy(), gen(x, training=False).numpy())


def test_noise_injection_adds_unit_variance_pooled_noise_times_the_scale():
    layer = L.NoiseInjection((2, 4))
    features = np.zeros((1, 8, 4, 3), np.float32)
    noise = np.random.default_rng(0).standard_normal((1, 16, 16, 1)).astype(np.float32)
    layer([features, noise])
    layer.scale.assign(np.asarray([[1.0, 0.0, -2.0]], np.float32))
    got = layer([features, noise]).numpy()
    pooled = noise[0, :, :, 0].reshape(8, 2, 4, 4).mean(axis=(1, 3)) * np.sqrt(8.0)
    np.testing.assert_allclose(got[0], np.stack([pooled, 0 * pooled, -2 * pooled], -1), atol=1e-5)
    big = np.random.default_rng(1).standard_normal((4, 256, 256, 1)).astype(np.float32)
    pooled = L.NoiseInjection((4, 4))([np.zeros((4, 64, 64, 1), np.float32), big])
    assert pooled.shape == (4, 64, 64, 1)
    assert L.NoiseInjection.from_config(layer.get_config()).pool == (2, 4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_noise_scales_start_at_zero_so_the_net_starts_as_one_without_noise(architecture):
    config = GeneratorConfig(architecture=architecture, base_filters=4, depth=2)
    plain = generator_from_config(config, 2, 4, 1)
    noisy = generator_from_config(dataclasses.replace(config, noise_channels=1), 2, 4, 1)
    assert noisy.inputs[0].shape[-1] == 5
    # Every encoder and decoder level injects noise: unet3x3 also at full resolution (levels
    # 0-2 and 1-0), pix2pix where it has feature maps (encoder 1-2, decoder 1); resnet in
    # each of its (default 6) residual blocks.
    levels = {"unet3x3": 5, "pix2pix": 3, "resnet": 6}[architecture]
    assert len(_noise_layers(noisy)) == levels
    weights = {w.path: w for w in plain.weights}
    for w in noisy.weights:
        if w.path in weights:
            w.assign(weights[w.path])
        else:
            assert "noise" in w.path and not np.any(w.numpy())
    a, b = _inputs((2, 16, 16, 4), 0)
    np.testing.assert_allclose(noisy(a).numpy(), plain(a[..., :4]).numpy(), atol=1e-6)
    np.testing.assert_array_equal(noisy(a).numpy(), noisy(b).numpy())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_learned_noise_scales_make_draws_differ(architecture, ndim):
    gen = build_generator(ndim, 4, 1, architecture=architecture, base_filters=4, depth=2, noise_channels=1)
    for layer in _noise_layers(gen):
        layer.scale.assign(np.full(layer.scale.shape, 0.5, np.float32))
    a, b = _inputs((1, *((8, 16, 16) if ndim == 3 else (16, 16)), 4), 1)
    np.testing.assert_array_equal(gen(a).numpy(), gen(a).numpy())
    assert np.abs(gen(a).numpy() - gen(b).numpy()).mean() > 1e-3


def test_with_noise_appends_standard_normal_channels():
    x = tf.zeros((2, 64, 64, 4))
    assert with_noise(x, 0) is x
    y = with_noise(x, 2, seed=1)
    assert y.shape == (2, 64, 64, 6)
    np.testing.assert_array_equal(y[..., :4].numpy(), x.numpy())
    assert abs(float(tf.math.reduce_std(y[..., 4:])) - 1.0) < 0.05


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(depth=2),
        GeneratorConfig(depth=2, kernel_size=5),
        GeneratorConfig(architecture="pix2pix", depth=3),
        GeneratorConfig(architecture="pix2pix", depth=3, upsampling="nearest"),
        GeneratorConfig(architecture="resnet", depth=2, n_residual_blocks=1),
        GeneratorConfig(architecture="resnet", depth=3, n_residual_blocks=1, upsampling="nearest"),
    ],
    ids=["unet3x3", "unet3x3-k5", "pix2pix", "pix2pix-nearest", "resnet", "resnet-nearest"],
)
def test_smallest_input_is_the_smallest_size_that_runs(config):
    divisor = 2**config.depth
    need = smallest_input(config, 2)
    if config.architecture == "unet3x3":
        assert need == ((config.kernel_size // 2) * divisor + 1,) * 2  # synthesis' former rule
    if config.architecture == "resnet":  # the 3x3 blocks pad 1 px at the innermost level
        assert need == (divisor + 1,) * 2
    gen = generator_from_config(config, 2, 1, 1)
    runs = -(-need[0] // divisor) * divisor
    assert gen(np.zeros((1, runs, runs, 1), np.float32)).shape == (1, runs, runs, 1)
    if runs > divisor:  # the next smaller multiple fails
        with pytest.raises(tf.errors.InvalidArgumentError):
            gen(np.zeros((1, runs - divisor, runs - divisor, 1), np.float32))


def test_pix2pix_model_trains_with_noise_channels_and_shows_the_discriminator_the_condition_only():
    config = GeneratorConfig(architecture="pix2pix", base_filters=8, depth=2, noise_channels=1)
    model = build_pix2pix(2, 4, 1, config, DiscriminatorConfig(base_filters=8, n_layers=2))
    assert model.noise_channels == 1
    assert model.generator.inputs[0].shape[-1] == 5 and model.discriminator.inputs[0].shape[-1] == 5
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    data = tuple(rng.uniform(-1, 1, (2, 32, 32, c)).astype(np.float32) for c in (4, 1))
    logs = model.train_step(data)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert any(np.any(layer.scale.numpy()) for layer in _noise_layers(model.generator))  # learned
    # `model(x)` draws new noise per call, on the 4-channel condition.
    assert not np.array_equal(model(data[0]).numpy(), model(data[0]).numpy())
    clone = Pix2Pix.from_config(model.get_config())
    assert clone.noise_channels == 1


def test_pix2pix_model_rejects_noise_channels_the_generator_lacks():
    gen = build_generator(2, 4, 1, architecture="pix2pix", base_filters=4, depth=2)
    disc = build_pix2pix(2, 4, 1, GeneratorConfig(base_filters=4, depth=2)).discriminator
    with pytest.raises(ValueError, match="noise_channels=4"):
        Pix2Pix(gen, disc, noise_channels=4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_noise_injection_under_a_mixed_policy_keeps_a_float32_output(architecture):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        gen = build_generator(2, 4, 1, architecture=architecture, base_filters=4, depth=2, noise_channels=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for layer in _noise_layers(gen):
        layer.scale.assign(np.full(layer.scale.shape, 0.5, np.float32))
    a, b = _inputs((1, 16, 16, 4), 2)
    y = gen(a)
    assert y.dtype == tf.float32 and np.all(np.isfinite(y.numpy()))
    assert not np.array_equal(y.numpy(), gen(b).numpy())
