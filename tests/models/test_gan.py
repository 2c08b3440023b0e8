"""The GAN models, image pool and LR schedule (nucgen_tf.models.{gan,pool,schedules}).

Steps run eagerly where one step is enough: tracing a tiny CycleGAN step costs several
seconds, more than running it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf.models import (
    CycleGAN,
    DiscriminatorConfig,
    GanLossConfig,
    GeneratorConfig,
    ImagePool,
    LinearDecay,
    PairedCycleGAN,
    Pix2Pix,
    build_cyclegan,
    build_pix2pix,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GEN = GeneratorConfig(base_filters=8, depth=2)
DISC = DiscriminatorConfig(base_filters=8, n_layers=2)
SPATIAL = {2: (32, 32), 3: (8, 16, 16)}
CYCLE_KEYS = {"g_loss", "g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b", "d_loss", "d_a", "d_b", "skipped_steps"}


def _batch(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _adam():
    return keras.optimizers.Adam(2e-4, beta_1=0.5)


def _weights(net):
    return [np.array(w) for w in net.get_weights()]


def _changed(before, net):
    return any(not np.array_equal(b, a) for b, a in zip(before, net.get_weights()))


@pytest.fixture
def policy():
    """Set a dtype policy for one test and restore float32 afterwards."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("ndim", [2, 3])
def test_cyclegan_step_updates_all_networks(ndim):
    model = build_cyclegan(ndim, 1, 1, GEN, DISC, GanLossConfig(pool_size=3))
    model.compile(_adam(), _adam())
    shape = (2, *SPATIAL[ndim], 1)
    before = {name: _weights(net) for name, net in model._networks().items()}
    logs = model.train_step({"a": _batch(shape, 0), "b": _batch(shape, 1)})
    assert set(logs) == CYCLE_KEYS | {"identity_a", "identity_b"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert all(_changed(before[name], net) for name, net in model._networks().items())
    # The step built the pools from the batch and stored both fakes of each domain.
    assert int(model.pool_a.count) == 2 and int(model.pool_b.count) == 2
    assert int(model.g_optimizer.iterations) == 1 and int(model.d_optimizer.iterations) == 1


def test_paired_cyclegan_stage2_channels_identity_on_shared_colors():
    model = build_cyclegan(2, 3, 4, GEN, DISC, GanLossConfig(pool_size=0), paired=True)
    assert isinstance(model, PairedCycleGAN) and model.use_identity
    model.compile(_adam(), _adam())
    a, b = _batch((1, 32, 32, 3), 0), _batch((1, 32, 32, 4), 1)
    terms = model.generator_losses((a, b))
    # identity_a: F gets the ellipses with an absent (-1) boundary channel, compared on RGB.
    same_a = model.gen_ba(tf.concat([a, -tf.ones_like(a[..., :1])], axis=-1))
    np.testing.assert_allclose(float(terms["identity_a"]), np.mean(np.abs(a - same_a)), rtol=1e-5)
    # identity_b: G gets the mask's colors, compared on its RGB output only.
    same_b = model.gen_ab(b[..., :3])
    np.testing.assert_allclose(
        float(terms["identity_b"]), np.mean(np.abs(b[..., :3] - same_b[..., :3])), rtol=1e-5
    )
    logs = model.train_step((a, b))
    assert set(logs) == CYCLE_KEYS | {"identity_a", "identity_b"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert tuple(model(_batch((1, 64, 32, 3), 2)).shape) == (1, 64, 32, 4)


def test_pix2pix_step_and_test_step():
    model = build_pix2pix(2, 4, 1, GEN, DISC)
    model.compile(_adam(), _adam())
    data = (_batch((2, 32, 32, 4), 0), _batch((2, 32, 32, 1), 1))
    disc_before = _weights(model.discriminator)
    logs = model.train_step(data)
    assert set(logs) == {"g_loss", "g_adv", "l1", "d_loss", "d_real", "d_fake", "skipped_steps"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert _changed(disc_before, model.discriminator)
    np.testing.assert_allclose(
        float(logs["g_loss"]), float(logs["g_adv"]) + 100.0 * float(logs["l1"]), rtol=1e-5
    )
    weights = _weights(model.generator)
    model.reset_metrics()
    evaluated = model.test_step(data)
    assert not _changed(weights, model.generator)
    assert set(evaluated) == set(logs)


def test_pix2pix_fit_halves_l1_on_a_fixed_batch():
    keras.utils.set_random_seed(0)
    x = -np.ones((2, 32, 32, 4), np.float32)
    yy, xx = np.mgrid[:32, :32]
    for i, (cy, cx) in enumerate([(10, 12), (20, 18)]):
        x[i, (yy - cy) ** 2 + (xx - cx) ** 2 < 36, :3] = [0.2, -0.4, 0.8]
    y = np.where(x[..., :1] > -1, 0.6, -0.8).astype(np.float32)
    model = build_pix2pix(2, 4, 1, GEN, DISC)
    model.compile(keras.optimizers.Adam(5e-3, beta_1=0.5), keras.optimizers.Adam(5e-3, beta_1=0.5))
    before = float(model.generator_losses((x, y))["l1"])
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(dataset, steps_per_epoch=40, epochs=1, verbose=0, shuffle=False)
    after = float(model.generator_losses((x, y))["l1"])
    assert after < 0.5 * before, (before, after)


def test_paired_cyclegan_has_no_direct_mask_loss():
    """No term compares F(B_i) with S_i directly (paper Sec. II-B).

    G (mask -> box) is made constant, so G(S) does not depend on S. Then the only ways the
    generator objective can depend on the mask S are the cycle term |F(G(S)) - S| and the
    identity term on S's colors. Swapping S for S2 must change the objective by exactly their
    weighted changes; a direct |F(B) - S| term would add its own, different change.
    """
    model = build_cyclegan(2, 3, 4, GEN, DISC, GanLossConfig(pool_size=0), paired=True)
    for layer in model.gen_ba.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    model.gen_ba.get_layer("out_conv").bias.assign(np.full((3,), 0.3, np.float32))
    boxes = _batch((2, 32, 32, 3), 0)
    masks = _batch((2, 32, 32, 4), 1)
    masks2 = masks.copy()
    masks2[:, 8:20, 4:16, :] = np.clip(masks2[:, 8:20, 4:16, :] + 0.7, -1, 1)
    g_const = model.gen_ba(masks)
    np.testing.assert_allclose(np.asarray(model.gen_ba(masks2)), np.asarray(g_const), atol=0)

    terms = model.generator_losses((boxes, masks))
    terms2 = model.generator_losses((boxes, masks2))
    assert set(terms) == {"g_loss", "g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b", "identity_a", "identity_b"}
    reconstruction = np.asarray(model.gen_ab(g_const))
    cycle_change = np.mean(np.abs(reconstruction - masks2)) - np.mean(np.abs(reconstruction - masks))
    # The identity term maps S's own colors to its own domain: |F(S_rgb)[:3] - S[:3]|.
    def identity(m):
        return np.mean(np.abs(np.asarray(model.gen_ab(m[..., :3]))[..., :3] - m[..., :3]))

    cfg = model.loss_config
    expected = cfg.lambda_cycle * cycle_change + cfg.lambda_cycle * cfg.lambda_identity * (
        identity(masks2) - identity(masks)
    )
    fake = np.asarray(model.gen_ab(boxes))
    direct_change = np.mean(np.abs(fake - masks2)) - np.mean(np.abs(fake - masks))
    # The test is sensitive: a direct term would move the objective by far more than atol.
    assert abs(direct_change) > 1e-3 and abs(expected) > 1e-3
    np.testing.assert_allclose(float(terms2["g_loss"]) - float(terms["g_loss"]), expected, atol=2e-5)


def test_bfloat16_policy_step(policy):
    policy("mixed_bfloat16")
    model = build_cyclegan(2, 1, 1, GEN, DISC, GanLossConfig(pool_size=2))
    assert model.gen_ab.get_layer("enc0_conv").compute_dtype == "bfloat16"
    model.compile(_adam(), _adam())
    assert not isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    a, b = _batch((1, 32, 32, 1), 0), _batch((1, 32, 32, 1), 1)
    logs = model.train_step((a, b))
    assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in logs.values())
    assert model(a).dtype == tf.float32 and model.disc_a(a).dtype == tf.float32
    assert model.pool_a.images.dtype == tf.float32


def test_float16_policy_wraps_optimizers_in_loss_scaling(policy):
    policy("mixed_float16")
    model = build_pix2pix(2, 4, 1, GEN, DISC)
    assert model.generator.get_layer("enc0_conv").compute_dtype == "float16"
    model.compile(_adam(), _adam())
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = _batch((1, 16, 16, 4), 0), _batch((1, 16, 16, 1), 1)
    logs = model.train_step((x, y))
    assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in logs.values())
    assert model(x).dtype == tf.float32
    # Either the scaled step was finite and applied, or it overflowed, was skipped and the
    # scale halved: both are the loss-scale optimizer at work, never a NaN in the weights.
    opt = model.g_optimizer
    assert int(opt.iterations) == 1 or float(opt.dynamic_scale) < opt.initial_scale
    assert all(np.isfinite(w).all() for w in model.generator.get_weights())


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_non_finite_step_is_skipped_not_applied(ndim):
    """NaN gradients must never reach the weights (one bad 3D CycleGAN step on CPU used to kill a run)."""
    model = build_cyclegan(ndim, 1, 1, GEN, DISC, GanLossConfig(pool_size=2))
    model.compile(_adam(), _adam())
    a, b = _batch((1, *SPATIAL[ndim], 1), 0), _batch((1, *SPATIAL[ndim], 1), 1)
    model.build([a.shape, b.shape])
    before = {name: _weights(net) for name, net in model._networks().items()}
    bad = a.copy()
    bad[(0,) * (ndim + 2)] = np.nan
    logs = model.train_step((bad, b))
    assert float(logs["skipped_steps"]) == 1
    assert all(np.isfinite(float(v)) for v in logs.values())
    # Fresh Adam moments + zero gradients: no weight moved, none became NaN.
    assert not any(_changed(before[name], net) for name, net in model._networks().items())
    assert np.isfinite(np.asarray(model.pool_b.images)).all()
    logs = model.train_step((a, b))
    assert float(logs["skipped_steps"]) == 1  # the good step is applied and counted as a loss
    assert _changed(before["gen_ab"], model.gen_ab) and _changed(before["disc_b"], model.disc_b)
    assert all(np.isfinite(w).all() for net in model._networks().values() for w in net.get_weights())


def test_guard_zeroes_gradients_whose_norm_overflows():
    """A finite 1e25 gradient would overflow Adam's second moment (and clipping) into NaN."""
    from nucgen_tf.models.gan import _guard

    grads, finite = _guard(_adam(), tf.constant(1.0), [tf.constant([1e25, 1.0]), None])
    assert not bool(finite) and grads[1] is None
    np.testing.assert_array_equal(grads[0].numpy(), [0.0, 0.0])
    grads, finite = _guard(_adam(), tf.constant(1.0), [tf.constant([3.0, 4.0])])
    assert bool(finite)
    np.testing.assert_array_equal(grads[0].numpy(), [3.0, 4.0])
    _, finite = _guard(_adam(), tf.constant(np.nan), [tf.constant([3.0, 4.0])])
    assert not bool(finite)


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from nucgen_tf.models import DiscriminatorConfig, GanLossConfig, GeneratorConfig, build_cyclegan

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)

    def make():
        # Pool of 4 > per-step batch: during the fill phase it returns its input, so the
        # pooled code path runs under the strategy and stays comparable to one device.
        model = build_cyclegan(2, 1, 1, GeneratorConfig(base_filters=4, depth=2),
                               DiscriminatorConfig(base_filters=4, n_layers=2),
                               GanLossConfig(pool_size=4, adversarial="lsgan"))
        model.compile(keras.optimizers.SGD(0.5), keras.optimizers.SGD(0.5))
        return model

    single = make()
    initial = single.get_weights()
    logs_single = single.train_step((a, b))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        dist = make()
        dist.set_weights(initial)
    dataset = tf.data.Dataset.from_tensor_slices((a, b)).batch(4, drop_remainder=True).repeat()
    history = dist.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history
    weight_diff = max(float(np.abs(x - y).max()) for x, y in zip(single.get_weights(), dist.get_weights()))
    update = max(float(np.abs(x - y).max()) for x, y in zip(initial, single.get_weights()))
    loss_diff = max(abs(history[k][0] - float(v)) for k, v in logs_single.items())
    first_count = int(dist.pool_a.count.numpy())
    more = dist.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0).history
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "weight_diff": weight_diff,
        "update": update,
        "loss_diff": loss_diff,
        "pool_count_after_1": first_count,
        "pool_count_after_3": int(dist.pool_a.count.numpy()),
        "finite": bool(all(np.isfinite(v[-1]) for v in more.values())),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(tmp_path):
    """One step on 2 replicas x 2 samples == one step on 1 device x 4 samples."""
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["update"] > 1e-3  # the step moved the weights far more than the tolerance
    assert result["weight_diff"] < 1e-5, result
    assert result["loss_diff"] < 1e-5, result
    # Each replica fills its own pool with its 2 local fakes per step; 4 is full.
    assert result["pool_count_after_1"] == 2 and result["pool_count_after_3"] == 4
    assert result["finite"]


def _reference_pool(pool_images, count, size, images, coins, slots):
    """pytorch-CycleGAN-and-pix2pix util/image_pool.py, with the same random draws."""
    pool_images, returned = pool_images.copy(), []
    for image, coin, slot in zip(images, coins, slots):
        if count < size:
            pool_images[count] = image
            count += 1
            returned.append(image)
        elif coin > 0.5:
            returned.append(pool_images[slot].copy())
            pool_images[slot] = image
        else:
            returned.append(image)
    return pool_images, count, np.stack(returned)


def test_image_pool_follows_reference_rule():
    pool = ImagePool(3, seed=7, sample_shape=(2, 2, 1))
    for step in range(5):
        images = np.full((2, 2, 2, 1), step, np.float32)
        images[1] += 0.1
        twin = tf.random.Generator.from_state(pool.rng.state.numpy(), pool.rng.algorithm)
        coins = twin.uniform([2], dtype=tf.float32).numpy()
        slots = twin.uniform([2], minval=0, maxval=3, dtype=tf.int32).numpy()
        expected_pool, expected_count, expected = _reference_pool(
            pool.images.numpy(), int(pool.count), 3, images, coins, slots
        )
        np.testing.assert_array_equal(pool(images).numpy(), expected)
        np.testing.assert_array_equal(pool.images.numpy(), expected_pool)
        assert int(pool.count) == expected_count


def test_image_pool_swaps_once_full():
    pool = ImagePool(2, seed=0)
    returned = [pool(np.full((1, 4, 4, 1), i, np.float32)).numpy()[0, 0, 0, 0] for i in range(40)]
    assert returned[:2] == [0.0, 1.0]  # filling: the input comes back
    swapped = sum(r != i for i, r in enumerate(returned))
    assert 8 < swapped < 32  # about half of the 38 later calls return an older image


def test_image_pool_size_zero_is_identity():
    pool = ImagePool(0)
    x = _batch((2, 4, 4, 1), 0)
    assert pool(x) is not None and np.array_equal(pool(x).numpy(), x)
    assert pool.built and pool.images is None


def test_image_pool_rejects_other_sample_shape():
    pool = ImagePool(2, sample_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="images.shape=\\(1, 8, 8, 1\\)"):
        pool(np.zeros((1, 8, 8, 1), np.float32))


def test_image_pool_checkpoint_round_trip(tmp_path):
    pool = ImagePool(3, seed=1)
    for i in range(5):
        pool(np.full((1, 4, 4, 1), i, np.float32))
    path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / "ckpt"))
    later = [pool(np.full((2, 4, 4, 1), 10 + i, np.float32)).numpy() for i in range(3)]

    restored = ImagePool(3, seed=99)  # other seed and not built: restore is deferred to build
    tf.train.Checkpoint(pool=restored).restore(path).assert_existing_objects_matched()
    restored.build((4, 4, 1))
    assert int(restored.count) == 3
    again = [restored(np.full((2, 4, 4, 1), 10 + i, np.float32)).numpy() for i in range(3)]
    for x, y in zip(later, again):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(restored.images.numpy(), pool.images.numpy())


def test_model_checkpoint_restores_networks_optimizers_and_pools(tmp_path):
    data = (_batch((1, 32, 32, 1), 0), _batch((1, 32, 32, 1), 1))
    model = build_cyclegan(2, 1, 1, GEN, DISC, GanLossConfig(pool_size=2))
    model.compile(_adam(), _adam())
    model.train_step(data)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

    fresh = build_cyclegan(2, 1, 1, GEN, DISC, GanLossConfig(pool_size=2))
    fresh.compile(_adam(), _adam())
    fresh.build((None, 32, 32, 1))
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    for x, y in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(model.g_optimizer.variables, fresh.g_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(fresh.d_optimizer.iterations) == 1
    np.testing.assert_array_equal(fresh.pool_b.images.numpy(), model.pool_b.images.numpy())
    np.testing.assert_array_equal(fresh.pool_a.rng.state.numpy(), model.pool_a.rng.state.numpy())


def test_get_config_round_trip_and_keras_file(tmp_path):
    loss = GanLossConfig(adversarial="lsgan", lambda_l1=50.0)
    model = build_pix2pix(2, 4, 1, GEN, DISC, loss)
    model.compile(_adam(), _adam())
    model.train_step((_batch((1, 32, 32, 4), 0), _batch((1, 32, 32, 1), 1)))
    config = model.get_config()
    clone = Pix2Pix.from_config(config)
    assert clone.loss_config == loss and clone.get_config() == config

    x = _batch((1, 64, 32, 4), 2)
    path = tmp_path / "pix2pix.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Pix2Pix) and loaded.loss_config == loss
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert int(loaded.g_optimizer.iterations) == 1
    for x_, y_ in zip(model.d_optimizer.variables, loaded.d_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(x_), np.asarray(y_))


def test_cyclegan_rejects_mismatched_networks():
    gen_ab = build_cyclegan(2, 1, 3, GEN, DISC).gen_ab
    other = build_cyclegan(2, 1, 1, GEN, DISC)
    with pytest.raises(ValueError, match="gen_ba"):
        CycleGAN(gen_ab, other.gen_ba, other.disc_a, other.disc_b)


def test_train_step_rejects_bad_batch():
    model = build_pix2pix(2, 4, 1, GEN, DISC)
    model.compile(_adam(), _adam())
    with pytest.raises(ValueError, match="keys"):
        model.train_step({"image": _batch((1, 16, 16, 4), 0)})


def test_compile_rejects_shared_optimizer():
    model = build_pix2pix(2, 4, 1, GEN, DISC)
    opt = _adam()
    with pytest.raises(ValueError, match="different optimizer objects"):
        model.compile(opt, opt)


def test_linear_decay():
    schedule = LinearDecay(2e-4, hold_steps=100, total_steps=300)
    values = [float(schedule(step)) for step in (0, 100, 200, 300, 400)]
    np.testing.assert_allclose(values, [2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-12)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(clone, LinearDecay) and clone.get_config() == schedule.get_config()
    # Usable as an optimizer learning rate: it follows the optimizer's step counter.
    opt = keras.optimizers.Adam(schedule)
    opt.build([keras.Variable(0.0)])
    opt.iterations.assign(250)
    np.testing.assert_allclose(float(opt.learning_rate), 5e-5, rtol=1e-6)


def test_linear_decay_rejects_bad_steps():
    with pytest.raises(ValueError, match="total_steps=10"):
        LinearDecay(1e-3, hold_steps=10, total_steps=10)


def test_instance_noise_only_while_training():
    cfg = GanLossConfig(pool_size=0, instance_noise=0.3)
    model = build_cyclegan(2, 1, 1, GEN, DISC, cfg)
    data = (_batch((1, 32, 32, 1), 0), _batch((1, 32, 32, 1), 1))
    quiet = [float(model.generator_losses(data, training=False)["g_adv_ab"]) for _ in range(2)]
    noisy = [float(model.generator_losses(data, training=True)["g_adv_ab"]) for _ in range(2)]
    assert quiet[0] == quiet[1]
    assert noisy[0] != noisy[1] and noisy[0] != quiet[0]
    with pytest.raises(ValueError, match="instance_noise"):
        GanLossConfig(instance_noise=-0.1)
