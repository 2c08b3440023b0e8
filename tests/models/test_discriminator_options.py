"""Discriminator-side options: multi-scale PatchGAN, feature matching, DiffAugment, R1.

(nucgen_tf.models.{discriminators,augment,gan}, nucgen_tf.losses). Tiny nets, eager steps.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf import losses
from nucgen_tf.config import from_dict, to_dict
from nucgen_tf.models import (
    DiscriminatorConfig,
    GanLossConfig,
    GeneratorConfig,
    Pix2Pix,
    build_cyclegan,
    build_discriminator,
    build_pix2pix,
)
from nucgen_tf.models.discriminators import feature_extractor

GEN = GeneratorConfig(base_filters=4, depth=2)
DISC = DiscriminatorConfig(base_filters=4, n_layers=2)
SPATIAL = {2: (32, 32), 3: (8, 16, 16)}
ALL_OPTIONS = GanLossConfig(
    lambda_feature_matching=10.0, diff_augment=("color", "translation", "cutout"), r1_gamma=1.0
)
CYCLE_OPTIONS = dataclasses.replace(ALL_OPTIONS, lambda_feature_matching=0.0, pool_size=2)


def _batch(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _adam():
    return keras.optimizers.Adam(2e-4, beta_1=0.5)


@pytest.fixture
def policy():
    """Set a dtype policy for one test and restore float32 afterwards."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


# ----- multi-scale PatchGAN -------------------------------------------------------------


@pytest.mark.parametrize(
    "ndim, spatial, strides, grids",
    [
        (2, (64, 64), None, [(16, 16), (8, 8), (4, 4)]),
        (3, (8, 32, 32), None, [(2, 8, 8), (1, 4, 4), (1, 2, 2)]),
        # The first stride keeps Z, so the scales never pool it.
        (3, (4, 32, 32), [(1, 2, 2), 2], [(2, 8, 8), (2, 4, 4), (2, 2, 2)]),
    ],
)
def test_multiscale_discriminator_grids(ndim, spatial, strides, grids):
    disc = build_discriminator(ndim, 3, base_filters=4, n_layers=2, strides=strides, scales=3)
    logits = disc(_batch((2, *spatial, 3), 0))
    assert [tuple(t.shape) for t in logits] == [(2, *g, 1) for g in grids]
    assert all(t.dtype == tf.float32 for t in logits)


def test_single_scale_is_the_old_network():
    disc = build_discriminator(2, 5, base_filters=4, n_layers=2, scales=1)
    assert len(disc.outputs) == 1 and not isinstance(disc(_batch((1, 16, 16, 5), 0)), list)
    names = [layer.name for layer in disc.layers]
    assert names == [
        "discriminator_input", "conv0", "act0", "conv1", "norm1", "act1", "conv2", "norm2", "act2", "logits"
    ]  # fmt: skip


def test_multiscale_refuses_strides_that_pool_nothing():
    with pytest.raises(ValueError, match="scales=2"):
        build_discriminator(3, 1, n_layers=2, strides=[1, 2], scales=2)


def test_multiscale_discriminator_loads_in_safe_mode(tmp_path):
    disc = build_discriminator(2, 2, base_filters=4, n_layers=2, scales=2)
    x = _batch((1, 32, 32, 2), 0)
    disc.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    for a, b in zip(loaded(x), disc(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_multiscale_adversarial_terms_are_scale_means():
    cfg = dataclasses.replace(DISC, scales=2)
    model = build_pix2pix(2, 4, 1, GEN, cfg, GanLossConfig(adversarial="lsgan"))
    x, y = _batch((2, 32, 32, 4), 0), _batch((2, 32, 32, 1), 1)
    fake = model.generator(x)
    per_scale = model.discriminator(tf.concat([x, fake], axis=-1))
    expected = np.mean([np.mean((np.asarray(lg) - 1.0) ** 2) for lg in per_scale])
    terms = model.generator_losses((x, y))
    np.testing.assert_allclose(float(terms["g_adv"]), expected, rtol=1e-6)


# ----- defaults: the losses of earlier versions, bit for bit ------------------------------


def test_default_pix2pix_losses_are_the_old_formulas():
    keras.utils.set_random_seed(3)
    model = build_pix2pix(2, 4, 1, GEN, DISC, GanLossConfig(adversarial="lsgan"))
    x, y = _batch((2, 32, 32, 4), 0), _batch((2, 32, 32, 1), 1)
    fake = model.generator(x, training=True)
    d = model.discriminator
    old = {
        "g_adv": losses.generator_adversarial_loss(d(tf.concat([x, fake], -1), training=True), "lsgan"),
        "l1": losses.l1_loss(y, fake),
        "d_real": 0.5 * losses.adversarial_criterion(d(tf.concat([x, y], -1), training=True), 1, "lsgan"),
        "d_fake": 0.5 * losses.adversarial_criterion(d(tf.concat([x, fake], -1), training=True), 0, "lsgan"),
    }
    g_terms, (new_fake,) = model._generator_terms((x, y), training=True)
    d_terms = model._discriminator_terms((x, y), (new_fake,), training=True)
    assert set(g_terms) == {"g_adv", "l1"} and set(d_terms) == {"d_real", "d_fake"}
    for name, value in {**g_terms, **d_terms}.items():
        np.testing.assert_array_equal(value.numpy(), old[name].numpy(), err_msg=name)
    np.testing.assert_array_equal(
        model._generator_objective(g_terms).numpy(), (old["g_adv"] + 100.0 * old["l1"]).numpy()
    )


def test_default_cyclegan_losses_are_the_old_formulas():
    model = build_cyclegan(2, 1, 1, GEN, DISC, GanLossConfig(pool_size=0))
    a, b = _batch((2, 32, 32, 1), 0), _batch((2, 32, 32, 1), 1)
    fake_b, fake_a = model.gen_ab(a, training=True), model.gen_ba(b, training=True)
    disc_a, disc_b = (lambda v: model.disc_a(v, training=True)), (lambda v: model.disc_b(v, training=True))
    old = {
        "g_adv_ab": losses.generator_adversarial_loss(disc_b(fake_b)),
        "g_adv_ba": losses.generator_adversarial_loss(disc_a(fake_a)),
        "d_a": losses.discriminator_adversarial_loss(disc_a(a), disc_a(fake_a)),
        "d_b": losses.discriminator_adversarial_loss(disc_b(b), disc_b(fake_b)),
    }
    g_terms, fakes = model._generator_terms((a, b), training=True)
    d_terms = model._discriminator_terms((a, b), fakes, training=True)
    assert set(d_terms) == {"d_a", "d_b"}
    for name in old:
        np.testing.assert_array_equal({**g_terms, **d_terms}[name].numpy(), old[name].numpy(), err_msg=name)


def test_explicit_off_options_change_nothing():
    """Zero weights and no policies build the same model state: no RNG, no extractor, same steps."""
    data = (_batch((1, 32, 32, 4), 0), _batch((1, 32, 32, 1), 1))
    logs = []
    for loss in (GanLossConfig(), GanLossConfig(lambda_feature_matching=0.0, diff_augment="", r1_gamma=0.0)):
        keras.utils.set_random_seed(0)
        model = build_pix2pix(2, 4, 1, GEN, DISC, loss)
        assert not hasattr(model, "augment_rng") and model._helpers.features is None
        model.compile(_adam(), _adam())
        logs.append({k: float(v) for k, v in model.train_step(data).items()})
    assert logs[0] == logs[1]


# ----- feature matching ---------------------------------------------------------------------


def test_feature_extractor_shares_the_layers():
    disc = build_discriminator(2, 5, base_filters=4, n_layers=2, scales=2)
    extractor = feature_extractor(disc)
    assert not extractor.weights or all(
        any(w is v for v in disc.weights) for w in extractor.weights
    )
    out = extractor(_batch((1, 32, 32, 5), 0))
    assert len(out["features"]) == 2 * 3 and len(out["logits"]) == 2
    for a, b in zip(out["logits"], disc(_batch((1, 32, 32, 5), 0))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_feature_extractor_rejects_other_networks():
    inputs = keras.Input((None, None, 2))
    other = keras.Model(inputs, keras.layers.Conv2D(1, 1, name="c")(inputs))
    with pytest.raises(ValueError, match="act<n>"):
        feature_extractor(other)


@pytest.mark.parametrize("training", [False, True])
def test_feature_matching_vanishes_as_fake_approaches_real(training):
    """> 0 for a fake away from the real image, decreasing to exactly 0 when fake == real.

    With DiffAugment on and training, both pairs take the SAME augmentation; a different draw
    for the real pair would leave the term > 0 at fake == real.
    """
    loss = GanLossConfig(lambda_feature_matching=10.0, diff_augment="translation,cutout,color")
    model = build_pix2pix(2, 4, 1, GEN, dataclasses.replace(DISC, scales=2), loss)
    x = _batch((2, 32, 32, 4), 0)
    fake = np.asarray(model.generator(x))
    away = _batch((2, 32, 32, 1), 1) - fake
    values = [
        float(model.generator_losses((x, fake + t * away), training=training)["feature_matching"])
        for t in (1.0, 0.5, 0.1, 0.0)
    ]
    assert values[0] > values[1] > values[2] > 0 and values[3] == 0.0, values
    terms = model.generator_losses((x, fake + away))
    np.testing.assert_allclose(
        float(terms["g_loss"]),
        float(terms["g_adv"]) + 100 * float(terms["l1"]) + 10 * float(terms["feature_matching"]),
        rtol=1e-6,
    )


def test_feature_matching_loss_mean_over_layers():
    real = [tf.zeros((1, 4, 4, 2)), tf.zeros((1, 2, 2, 3))]
    fake = [tf.ones((1, 4, 4, 2)), 3 * tf.ones((1, 2, 2, 3))]
    assert float(losses.feature_matching_loss(real, fake)) == 2.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        losses.feature_matching_loss(real, fake[:1])


def test_cyclegan_refuses_feature_matching():
    with pytest.raises(ValueError, match="lambda_feature_matching"):
        build_cyclegan(2, 1, 1, GEN, DISC, GanLossConfig(lambda_feature_matching=1.0))


# ----- DiffAugment ----------------------------------------------------------------------------


def test_diff_augment_only_while_training():
    model = build_pix2pix(2, 4, 1, GEN, DISC, GanLossConfig(diff_augment="translation,cutout"))
    data = (_batch((1, 32, 32, 4), 0), _batch((1, 32, 32, 1), 1))
    plain = build_pix2pix(2, 4, 1, GEN, DISC)
    plain.set_weights(model.get_weights())
    quiet = model.generator_losses(data, training=False)
    np.testing.assert_array_equal(float(quiet["g_adv"]), float(plain.generator_losses(data)["g_adv"]))
    noisy = [float(model.generator_losses(data, training=True)["g_adv"]) for _ in range(2)]
    assert noisy[0] != noisy[1]


# ----- R1 -------------------------------------------------------------------------------------


def _linear_pix2pix(w, gamma):
    """Pix2Pix whose discriminator is one 1x1 convolution without bias: D_p(x) = w . x_p."""
    inputs = keras.Input((None, None, len(w)))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="linear")
    disc = keras.Model(inputs, conv(inputs))
    conv.kernel.assign(np.reshape(w, (1, 1, len(w), 1)).astype(np.float32))
    gen = build_pix2pix(2, 4, 1, GEN, DISC).generator
    return Pix2Pix(gen, disc, GanLossConfig(r1_gamma=gamma)), conv


def test_r1_matches_a_linear_discriminator():
    """grad_x of every patch logit is w, so the per-patch penalty is gamma / 2 * |w|^2, and its
    gradient with respect to w (through the nested tape) is gamma * w."""
    w = np.array([0.5, -1.0, 2.0, 0.25, 1.5], np.float32)
    model, conv = _linear_pix2pix(w, gamma=3.0)
    x, y = _batch((2, 16, 16, 4), 0), _batch((2, 16, 16, 1), 1)
    with tf.GradientTape() as tape:
        terms = model._discriminator_terms((x, y), (y,), training=True)
    np.testing.assert_allclose(float(terms["d_r1"]), 1.5 * np.sum(w**2), rtol=1e-6)
    grad = tape.gradient(terms["d_r1"], conv.kernel)
    np.testing.assert_allclose(np.ravel(grad), 3.0 * w, rtol=1e-5)
    assert "d_r1" not in model._discriminator_terms((x, y), (y,), training=False)


def test_r1_penalty_function():
    g = tf.constant(np.full((2, 4, 4, 1), 0.5, np.float32))
    # Per sample |g|^2 = 16 * 0.25 = 4; over 8 patches 0.5; times gamma / 2 = 5.
    np.testing.assert_allclose(float(losses.r1_penalty(g, 8, 10.0)), 2.5)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_r1_under_mixed_precision(policy, precision):
    policy(precision)
    model = build_pix2pix(2, 4, 1, GEN, DISC, GanLossConfig(r1_gamma=1.0))
    model.compile(_adam(), _adam())
    logs = model.train_step((_batch((1, 16, 16, 4), 0), _batch((1, 16, 16, 1), 1)))
    assert logs["d_r1"].dtype == tf.float32
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["d_r1"]) > 0 or float(logs["skipped_steps"]) == 1
    assert all(np.isfinite(w).all() for w in model.discriminator.get_weights())


# ----- everything on: train steps, checkpoints, configs -----------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_pix2pix_step_with_all_options(ndim):
    model = build_pix2pix(ndim, 4, 1, GEN, dataclasses.replace(DISC, scales=2), ALL_OPTIONS)
    model.compile(_adam(), _adam())
    data = (_batch((2, *SPATIAL[ndim], 4), 0), _batch((2, *SPATIAL[ndim], 1), 1))
    before = [np.array(w) for w in model.discriminator.get_weights()]
    logs = model.train_step(data)
    assert set(logs) == {
        "g_loss", "g_adv", "l1", "feature_matching", "d_loss", "d_real", "d_fake", "d_r1", "skipped_steps"
    }  # fmt: skip
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["feature_matching"]) > 0 and float(logs["d_r1"]) > 0
    assert float(logs["skipped_steps"]) == 0
    np.testing.assert_allclose(
        float(logs["d_loss"]), float(logs["d_real"]) + float(logs["d_fake"]) + float(logs["d_r1"]), rtol=1e-5
    )
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.discriminator.get_weights()))


def test_cyclegan_step_with_all_options():
    model = build_cyclegan(2, 3, 4, GEN, dataclasses.replace(DISC, scales=2), CYCLE_OPTIONS, paired=True)
    model.compile(_adam(), _adam())
    logs = model.train_step((_batch((2, 32, 32, 3), 0), _batch((2, 32, 32, 4), 1)))
    assert {"d_a", "d_b", "d_r1_a", "d_r1_b", "g_adv_ab", "g_adv_ba"} <= set(logs)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(logs["d_r1_a"]) > 0 and float(logs["skipped_steps"]) == 0


def test_checkpoint_restore_with_all_options_resumes_exactly(tmp_path):
    data = (_batch((1, 32, 32, 4), 0), _batch((1, 32, 32, 1), 1))

    def make():
        model = build_pix2pix(2, 4, 1, GEN, dataclasses.replace(DISC, scales=2), ALL_OPTIONS)
        model.compile(_adam(), _adam())
        return model

    model = make()
    model.train_step(data)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh = make()
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    for x, y in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(fresh.augment_rng.state.numpy(), model.augment_rng.state.numpy())
    # Same weights, optimizer moments and augmentation stream: the next step is the same step.
    model.reset_metrics()
    fresh.reset_metrics()
    again, resumed = model.train_step(data), fresh.train_step(data)
    for name in again:
        np.testing.assert_allclose(float(resumed[name]), float(again[name]), rtol=1e-6, err_msg=name)


def test_feature_matching_adds_nothing_to_checkpoints_or_keras_files(tmp_path):
    """The extractor shares the discriminator's layers and is not tracked: a model with feature
    matching restores from a checkpoint of one without (and back), and its .keras file loads."""
    data = (_batch((1, 32, 32, 4), 0), _batch((1, 32, 32, 1), 1))
    plain = build_pix2pix(2, 4, 1, GEN, DISC)
    plain.compile(_adam(), _adam())
    plain.train_step(data)
    path = tf.train.Checkpoint(model=plain).save(str(tmp_path / "ckpt"))
    matching = build_pix2pix(2, 4, 1, GEN, DISC, GanLossConfig(lambda_feature_matching=5.0))
    matching.compile(_adam(), _adam())
    tf.train.Checkpoint(model=matching).restore(path).assert_existing_objects_matched()
    for x, y in zip(plain.get_weights(), matching.get_weights()):
        np.testing.assert_array_equal(x, y)
    back = tf.train.Checkpoint(model=matching).save(str(tmp_path / "back"))
    target = build_pix2pix(2, 4, 1, GEN, DISC)
    target.compile(_adam(), _adam())
    tf.train.Checkpoint(model=target).restore(back).assert_consumed()

    matching.save(tmp_path / "fm.keras")
    loaded = keras.saving.load_model(tmp_path / "fm.keras")
    assert loaded.loss_config == matching.loss_config and loaded.use_feature_matching
    x = _batch((1, 32, 32, 4), 2)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(matching(x)))


def test_configs_round_trip_and_old_files_load():
    disc = DiscriminatorConfig(scales=3)
    loss = GanLossConfig(lambda_feature_matching=2.0, diff_augment="translation,color", r1_gamma=0.5)
    assert from_dict(DiscriminatorConfig, to_dict(disc)) == disc
    assert from_dict(GanLossConfig, to_dict(loss)) == loss
    assert to_dict(loss)["diff_augment"] in (["color", "translation"], ("color", "translation"))
    new_fields = ("lambda_feature_matching", "diff_augment", "r1_gamma")
    old = {k: v for k, v in to_dict(GanLossConfig()).items() if k not in new_fields}
    assert from_dict(GanLossConfig, old) == GanLossConfig()
    old_disc = {k: v for k, v in to_dict(DiscriminatorConfig()).items() if k != "scales"}
    assert from_dict(DiscriminatorConfig, old_disc).scales == 1
    with pytest.raises(ValueError, match="scales"):
        DiscriminatorConfig(scales=0)
    with pytest.raises(ValueError, match="r1_gamma"):
        GanLossConfig(r1_gamma=-1.0)
    assert GanLossConfig(diff_augment="cutout,color").diff_augment == ("color", "cutout")
    with pytest.raises(ValueError, match="diff_augment='color,blur'"):
        GanLossConfig(diff_augment="color,blur")


def test_stage_config_keeps_feature_matching_to_stage_3():
    from nucgen_tf.trainers.config import StageConfig

    loss = GanLossConfig(lambda_feature_matching=1.0)
    assert StageConfig(stage=3, data="d", loss=loss).loss == loss
    with pytest.raises(ValueError, match="lambda_feature_matching"):
        StageConfig(stage=1, data="d", loss=loss)


def test_keras_file_with_all_options(tmp_path):
    model = build_pix2pix(2, 4, 1, GEN, dataclasses.replace(DISC, scales=2), ALL_OPTIONS)
    model.compile(_adam(), _adam())
    model.save(tmp_path / "all.keras")
    loaded = keras.saving.load_model(tmp_path / "all.keras")
    assert loaded.loss_config == ALL_OPTIONS and loaded.loss_config.diff_augment == ALL_OPTIONS.diff_augment
    pair = _batch((1, 32, 32, 5), 0)
    for a, b in zip(loaded.discriminator(pair), model.discriminator(pair)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
