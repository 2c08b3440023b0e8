"""Generators, discriminators and their configs (nucgen_tf.models.{generators,discriminators,config})."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf.config import from_dict, to_dict
from nucgen_tf.models import layers as L
from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.models.discriminators import build_discriminator, discriminator_from_config
from nucgen_tf.models.generators import build_generator, generator_from_config

# Two run-time sizes per rank, both multiples of 2**depth (depth 2).
SIZES = {2: [(32, 32), (64, 96)], 3: [(8, 16, 16), (8, 32, 16)]}


@pytest.mark.parametrize("architecture", ["unet3x3", "pix2pix", "resnet"])
@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_generator_any_size_and_range(ndim, upsampling, architecture):
    gen = build_generator(ndim, 3, 4, architecture=architecture, base_filters=8, depth=2,
                          upsampling=upsampling)  # fmt: skip
    assert gen.inputs[0].shape[1:] == (None,) * ndim + (3,)
    rng = np.random.default_rng(0)
    for spatial in SIZES[ndim]:
        x = rng.uniform(-1, 1, (2, *spatial, 3)).astype(np.float32)
        y = gen(x)
        assert tuple(y.shape) == (2, *spatial, 4)
        assert y.dtype == tf.float32
        assert float(tf.reduce_max(tf.abs(y))) <= 1.0


@pytest.mark.parametrize("architecture", ["unet3x3", "pix2pix", "resnet"])
def test_generator_anisotropic_strides_keep_thin_z(architecture):
    strides = [(1, 2, 2), (1, 2, 2)]
    gen = build_generator(3, 1, 1, architecture=architecture, base_filters=8, depth=2, strides=strides)
    x = np.zeros((1, 2, 16, 16, 1), np.float32)  # Z = 2 could not be halved twice
    L.check_spatial_shape(x.shape[1:-1], strides, 2)
    assert tuple(gen(x).shape) == (1, 2, 16, 16, 1)


def test_generator_widths_follow_base_and_cap():
    gen = build_generator(2, 1, 1, base_filters=8, depth=3, max_filters=16)
    widths = [gen.get_layer(f"enc{i}_conv").filters for i in range(1, 4)]
    assert widths == [16, 16, 16]
    assert gen.get_layer("enc0_conv").filters == 8
    # One skip concatenation per level, the U-Net part.
    assert sum(isinstance(layer, keras.layers.Concatenate) for layer in gen.layers) == 3


def test_generator_rejects_bad_upsampling():
    with pytest.raises(ValueError, match="upsampling='bilinear'"):
        build_generator(2, 1, 1, upsampling="bilinear")


@pytest.mark.parametrize(
    "architecture, noise_channels", [("unet3x3", 0), ("pix2pix", 0), ("pix2pix", 1), ("resnet", 1)]
)
def test_generator_saves_and_loads_in_safe_mode(tmp_path, architecture, noise_channels):
    gen = build_generator(
        2, 4, 1, architecture=architecture, base_filters=8, depth=2, noise_channels=noise_channels,
        name="stage3_gen",
    )  # fmt: skip
    rng = np.random.default_rng(1)
    gen.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in gen.weights])  # noise scales too
    x = rng.uniform(-1, 1, (1, 32, 32, 4 + noise_channels)).astype(np.float32)
    path = tmp_path / "gen.keras"
    gen.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(gen(x)))


@pytest.mark.parametrize(
    "ndim, spatial, n_layers, grid",
    [(2, (64, 64), 3, (8, 8)), (3, (8, 32, 32), 2, (2, 8, 8))],
)
def test_discriminator_patch_grid(ndim, spatial, n_layers, grid):
    disc = build_discriminator(ndim, 5, base_filters=8, n_layers=n_layers)
    logits = disc(np.zeros((2, *spatial, 5), np.float32))
    assert tuple(logits.shape) == (2, *grid, 1)
    assert logits.dtype == tf.float32


def test_discriminator_receptive_field_is_70():
    # pix2pix's 70x70 PatchGAN. (Measured from the conv stack: instance norm makes every
    # logit depend a little on the whole input, so a gradient test would see everything.)
    disc = build_discriminator(2, 1, base_filters=4, n_layers=3)
    field, jump = 1, 1
    for layer in disc.layers:
        if isinstance(layer, keras.layers.Conv2D):
            field += (layer.kernel_size[0] - 1) * jump
            jump *= layer.strides[0]
    assert (field, jump) == (70, 8)


def test_from_config_builders_use_fields():
    gen = generator_from_config(GeneratorConfig(base_filters=4, depth=2), 2, 1, 2, name="g")
    disc = discriminator_from_config(DiscriminatorConfig(base_filters=4, n_layers=1), 2, 3, name="d")
    assert gen.name == "g" and gen.get_layer("enc0_conv").filters == 4
    assert tuple(disc(np.zeros((1, 16, 16, 3), np.float32)).shape) == (1, 8, 8, 1)


def test_configs_round_trip_through_json_dicts():
    gen = GeneratorConfig(depth=2, strides=((1, 2, 2), 2))
    assert from_dict(GeneratorConfig, to_dict(gen)) == gen  # JSON turns tuples into lists
    gen = GeneratorConfig(architecture="pix2pix", depth=2, dropout=0.5, noise_channels=1,
                          upsampling="nearest")  # fmt: skip
    assert from_dict(GeneratorConfig, to_dict(gen)) == gen and to_dict(gen)["kernel_size"] == 4
    gen = GeneratorConfig(architecture="resnet", depth=2, n_residual_blocks=9, full_resolution_norm=True)
    assert from_dict(GeneratorConfig, to_dict(gen)) == gen and to_dict(gen)["kernel_size"] == 3
    loss = GanLossConfig(adversarial="lsgan", pool_seed=None)
    assert from_dict(GanLossConfig, to_dict(loss)) == loss
    assert from_dict(DiscriminatorConfig, to_dict(DiscriminatorConfig())) == DiscriminatorConfig()


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: GeneratorConfig(depth=0), "depth=0"),
        (lambda: GeneratorConfig(base_filters=32, max_filters=16), "max_filters=16"),
        (lambda: GeneratorConfig(upsampling="bilinear"), "upsampling='bilinear'"),
        (lambda: GeneratorConfig(depth=2, strides=(2,)), "one entry per level"),
        (lambda: GeneratorConfig(depth=1, strides=((1, 3),)), "must be 1 or 2"),
        (lambda: GeneratorConfig(architecture="densenet"), "architecture='densenet'"),
        (lambda: GeneratorConfig(architecture="resnet", n_residual_blocks=0), "n_residual_blocks=0"),
        (lambda: GeneratorConfig(dropout=1.0), "dropout=1.0"),
        (lambda: GeneratorConfig(noise_channels=-1), "noise_channels=-1"),
        (lambda: GeneratorConfig(architecture="pix2pix", full_resolution_norm=True), "full_resolution_norm"),
        (lambda: DiscriminatorConfig(n_layers=0), "n_layers=0"),
        (lambda: GanLossConfig(adversarial="hinge"), "adversarial='hinge'"),
        (lambda: GanLossConfig(lambda_cycle=-1.0), "lambda_cycle=-1.0"),
        (lambda: GanLossConfig(pool_size=-1), "pool_size=-1"),
    ],
)
def test_configs_reject_bad_values(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("full_resolution_norm", [False, True])
def test_full_resolution_decoder_norm_is_optional(full_resolution_norm):
    generator = generator_from_config(
        GeneratorConfig(base_filters=4, depth=2, full_resolution_norm=full_resolution_norm), 2, 1, 1
    )
    names = {layer.name for layer in generator.layers}
    assert ("dec0_norm" in names) == full_resolution_norm
    assert "dec1_norm" in names  # deeper levels always normalize
    # Without the norm a constant input need not give a constant-per-channel feature map of
    # zeros: outputs for two different constant inputs differ.
    a = generator(np.full((1, 16, 16, 1), -1.0, np.float32)).numpy()
    b = generator(np.full((1, 16, 16, 1), 0.5, np.float32)).numpy()
    # Untrained (N(0, 0.02) weights) the gap is small: ~6e-5 without the norm, ~1e-10 with
    # it (seed 0); 1e-4 failed for some random states, so the line sits between the two.
    assert full_resolution_norm or np.abs(a - b).max() > 1e-6
