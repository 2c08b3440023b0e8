"""Trainer behaviour a user relies on: runs, resumes after SIGKILL, logs, stops on NaN, exports."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nucgen_tf.config import PatchConfig
from nucgen_tf.exported.generator import compact_export, load_generator
from nucgen_tf.exported.manifest import MANIFEST, WEIGHTS, read_manifest
from nucgen_tf.models import gan
from nucgen_tf.models.config import DiscriminatorConfig, GeneratorConfig
from nucgen_tf.sensor import SensorModel
from nucgen_tf.synthesis.arrangement_fit import FittedArrangement
from nucgen_tf.trainers import export, loop, stages
from nucgen_tf.trainers.config import StageConfig, TrainConfig

TINY_G = GeneratorConfig(base_filters=8, depth=2)
TINY_PIX2PIX = GeneratorConfig(architecture="pix2pix", base_filters=8, depth=2)
TINY_NOISY = GeneratorConfig(architecture="pix2pix", base_filters=8, depth=2, noise_channels=1, dropout=0.5)
TINY_RESNET = GeneratorConfig(
    architecture="resnet", base_filters=8, depth=2, n_residual_blocks=2, noise_channels=1, dropout=0.5
)
# Generator config fields that manifests written before them lack (the bundled ones, for one).
NEW_GENERATOR_FIELDS = ("architecture", "dropout", "noise_channels", "n_residual_blocks")
TINY_D = DiscriminatorConfig(base_filters=8, n_layers=2)


def _tiny(stage: int, data: str, patch=(64, 64), **train) -> StageConfig:
    return StageConfig(
        stage=stage,
        data=data,
        patch=PatchConfig(patch_shape=patch, batch_size=1, rot90=patch[-1] == patch[-2]),
        train=TrainConfig(**{"steps": 2, "log_every": 1, "image_every": 2, "checkpoint_every": 2, **train}),
        generator=TINY_G,
        discriminator=TINY_D,
        max_files=2,
    )


def _scalars_and_images(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return set(acc.Tags()["tensors"]), acc


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_logs_and_exports_2d(tmp_path, bbbc039_train, stage):
    cfg = _tiny(stage, str(bbbc039_train))
    target = stages.train(cfg, tmp_path / "run")
    manifest = read_manifest(target)
    assert manifest["stage"] == stage and manifest["ndim"] == 2 and manifest["step"] == 2
    assert manifest["input"]["channels"] == stages.STAGES[stage].channels[0]
    assert manifest["intensity_stats"]["max_value"] > 0
    # Stage 3 carries the training images' camera (BBBC039 train: noise 3.8-5.2 at level 150).
    assert ("sensor" in manifest) == (stage == 3)
    if stage == 3:
        assert 3.0 < SensorModel.from_dict(manifest["sensor"]).noise_std(150.0) < 6.0
    # Stage 1 carries the seed layout of its training masks (synthesis's default arrangement).
    assert ("arrangement_fit" in manifest) == (stage == 1)
    if stage == 1:
        fit = FittedArrangement.from_dict(manifest["arrangement_fit"])
        assert (fit.ndim, fit.fields) == (2, 2) and 15 < fit.nn_median < 60
    assert json.loads((tmp_path / "run" / "config.json").read_text())["stage"] == stage
    tags, acc = _scalars_and_images(tmp_path / "run" / "tensorboard")
    assert {"g_loss", "d_loss", "lr/g", "lr/d", "steps_per_second"} <= tags
    assert len(tags) >= 7  # every loss term has its own scalar
    assert list((tmp_path / "run" / "panels").glob(f"stage{stage}_*.png"))
    serve, _ = load_generator(target)
    x = tf.zeros((1, 32, 48, manifest["input"]["channels"]))
    y = serve(x)
    assert y.shape == (1, 32, 48, manifest["output"]["channels"]) and np.all(np.abs(y.numpy()) <= 1)


def test_stage3_trains_a_pix2pix_generator_with_noise_channels_and_exports_it(tmp_path, bbbc039_train):
    cfg = dataclasses.replace(_tiny(3, str(bbbc039_train)), generator=TINY_NOISY)
    target = stages.train(cfg, tmp_path / "run")
    manifest = read_manifest(target)
    assert manifest["input"] == {**manifest["input"], "channels": 4, "noise_channels": 1}
    assert manifest["config"]["generator"]["architecture"] == "pix2pix"
    assert list((tmp_path / "run" / "panels").glob("stage3_*.png"))
    serve, _ = load_generator(target)
    assert serve(tf.zeros((1, 32, 48, 5))).shape == (1, 32, 48, 1)  # condition + noise


@pytest.mark.parametrize("stage", [1, 3])
def test_stages_train_a_resnet_generator_and_export_it(tmp_path, bbbc039_train, stage):
    generator = TINY_RESNET if stage == 3 else dataclasses.replace(TINY_RESNET, noise_channels=0)
    cfg = dataclasses.replace(_tiny(stage, str(bbbc039_train), patch=(32, 32)), generator=generator)
    target = stages.train(cfg, tmp_path / "run")
    manifest = read_manifest(target)
    assert manifest["step"] == 2 and manifest["config"]["generator"]["architecture"] == "resnet"
    assert manifest["config"]["generator"]["n_residual_blocks"] == 2
    serve, _ = load_generator(target)
    channels = manifest["input"]["channels"] + generator.noise_channels
    assert serve(tf.zeros((1, 32, 48, channels))).shape == (1, 32, 48, manifest["output"]["channels"])


def test_only_stage3_takes_noise_channels():
    with pytest.raises(ValueError, match="stage=2, noise_channels=1"):
        dataclasses.replace(_tiny(3, "unused"), stage=2, generator=TINY_NOISY)


def test_stage1_trains_in_3d(tmp_path, stardist_3d):
    cfg = dataclasses.replace(_tiny(1, str(stardist_3d), patch=(8, 32, 32)), spacing=(1.0, 1.0, 1.0))
    cfg = dataclasses.replace(
        cfg,
        seeds=dataclasses.replace(cfg.seeds, density=4.0, sparse_min_distance=10.0, crowded_min_distance=6.0),
    )
    target = stages.train(cfg, tmp_path / "run3d")
    manifest = read_manifest(target)
    assert manifest["ndim"] == 3 and manifest["patch_shape"] == [8, 32, 32]
    fit = FittedArrangement.from_dict(manifest["arrangement_fit"])
    assert fit.ndim == 3 and fit.spacing == (1.0, 1.0, 1.0)
    tags, acc = _scalars_and_images(tmp_path / "run3d" / "tensorboard")
    assert "g_loss" in tags


def test_export_round_trip_matches_keras(tmp_path):
    generator = gan.build_pix2pix(2, 4, 1, TINY_G, TINY_D).generator
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 48, 4)).astype("float32")
    path = export.export_generator(generator, tmp_path / "gen", {"stage": 3})
    serve, manifest = load_generator(path)
    np.testing.assert_allclose(serve(tf.constant(x)).numpy(), generator(x, training=False).numpy(), atol=1e-5)
    assert manifest == {"stage": 3}
    # Re-exporting over an existing export replaces it whole.
    export.export_generator(generator, path, {"stage": 3, "step": 2})
    assert read_manifest(path)["step"] == 2
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def _nan_at(bad_steps, shape=(1, 32, 32)):
    """A stream whose elements at the 0-based indices `bad_steps` hold NaN inputs."""

    def gen():
        for i in range(100):
            x = np.zeros((*shape, 4), np.float32)
            y = np.zeros((*shape, 1), np.float32)
            if bad_steps(i):
                x[:] = np.nan
            yield x, y

    spec = (tf.TensorSpec((*shape, 4), tf.float32), tf.TensorSpec((*shape, 1), tf.float32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def _tiny_pix2pix(dataset):
    keras.mixed_precision.set_global_policy("float32")
    model = gan.build_pix2pix(2, 4, 1, TINY_G, TINY_D)
    batch = next(iter(dataset))
    model.build([tuple(t.shape) for t in batch])
    model.compile(keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4))
    return model, batch


def test_persisting_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    dataset = _nan_at(lambda i: i >= 4)
    model, batch = _tiny_pix2pix(dataset)
    config = TrainConfig(steps=20, checkpoint_every=2, log_every=1, image_every=100, max_skipped_steps=3)
    strategy = tf.distribute.get_strategy()
    with pytest.raises(loop.NonFiniteLossError, match=r"3 steps in a row \(steps 5-7\)"):
        loop.train_loop(model, dataset, config, tmp_path, strategy, lambda m, b: [], batch, 2)
    # Step 6 was skipped: no checkpoint there; the weights stayed finite all along.
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    assert all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.weights if "float" in str(v.dtype))


def test_a_single_nan_step_is_skipped_and_training_goes_on(tmp_path):
    dataset = _nan_at(lambda i: i == 2)
    model, batch = _tiny_pix2pix(dataset)
    config = TrainConfig(steps=6, checkpoint_every=3, log_every=1, image_every=100)
    strategy = tf.distribute.get_strategy()
    assert loop.train_loop(model, dataset, config, tmp_path, strategy, lambda m, b: [], batch, 2) == 6
    assert all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.weights if "float" in str(v.dtype))
    # Step 3 (the NaN batch) has no checkpoint; step 6 does.
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-6")
    assert not list((tmp_path / "checkpoints").glob("ckpt-3.*"))


def _trainer(workdir, data, steps):
    return [
        sys.executable,
        "-m",
        "nucgen_tf.trainers.stage3",
        f"--data={data}",
        f"--workdir={workdir}",
        "--patch=32,32",
        "--filters=8",
        "--depth=2",
        "--d_filters=8",
        "--d_layers=2",
        "--max_files=1",
        f"--steps={steps}",
        "--checkpoint_every=5",
        "--log_every=5",
        "--image_every=1000",
    ]


def test_resume_after_sigkill_continues_from_saved_step(tmp_path, bbbc039_train):
    workdir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        _trainer(workdir, bbbc039_train, 100_000),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def saved_steps():
        return [int(p.name[5:-6]) for p in (workdir / "checkpoints").glob("ckpt-*.index")]

    try:
        deadline = time.time() + 240
        while max(saved_steps(), default=0) < 10 and time.time() < deadline:
            time.sleep(0.2)
            assert proc.poll() is None, "trainer died before its first checkpoints"
        assert max(saved_steps(), default=0) >= 10, "no checkpoint within 240 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = int(tf.train.latest_checkpoint(str(workdir / "checkpoints")).rsplit("-", 1)[1])
    assert saved >= 10
    final = saved + 5
    result = subprocess.run(
        _trainer(workdir, bbbc039_train, final), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"at step {saved}" in result.stderr  # "resumed from ... at step N"
    assert read_manifest(workdir / "export")["step"] == final
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == final


def test_resumed_run_draws_new_patches(tmp_path):
    cfg = _tiny(3, "unused")
    assert stages._resumed_data_config(cfg, tmp_path) is cfg
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path / "checkpoints"), 2
    )
    manager.save(checkpoint_number=7)
    assert stages._resumed_data_config(cfg, tmp_path).patch.seed == cfg.patch.seed + 7


@pytest.mark.parametrize(
    "gen", [TINY_G, TINY_PIX2PIX, TINY_NOISY, TINY_RESNET], ids=["unet3x3", "pix2pix", "noisy", "resnet"]
)
@pytest.mark.parametrize("ndim", [2, 3])
def test_compact_export_rebuilds_the_generator_from_its_manifest(tmp_path, ndim, gen):
    generator = gan.build_pix2pix(ndim, 4, 1, gen, TINY_D).generator
    # Trained-like weights: random, not the initial ones, so a wrong mapping would show.
    rng = np.random.default_rng(1)
    generator.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in generator.weights])
    recorded = dataclasses.asdict(gen)
    if gen == TINY_G:  # as manifests written before the architecture option: a unet3x3
        recorded = {k: v for k, v in recorded.items() if k not in NEW_GENERATOR_FIELDS}
    manifest = {
        "stage": 3, "ndim": ndim, "input": {"channels": 4, "noise_channels": gen.noise_channels},
        "output": {"channels": 1}, "config": {"generator": recorded},
    }
    saved = export.export_generator(generator, tmp_path / "saved", manifest)
    compact = compact_export(saved, tmp_path / "compact")
    assert sorted(p.name for p in compact.iterdir()) == [MANIFEST, WEIGHTS]
    assert read_manifest(compact)["format"] == "weights-float16"
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert size(compact) * 4 < size(saved)
    channels = 4 + gen.noise_channels
    shape = (1, 32, 32, channels) if ndim == 2 else (1, 16, 32, 32, channels)
    x = rng.uniform(-1, 1, shape).astype("float32")
    serve, _ = load_generator(compact)
    expected = generator(x, training=False).numpy()
    got = serve(x).numpy()
    assert got.shape == expected.shape
    # float16 weights: close to the float32 network, far closer than another network would be.
    assert np.abs(got - expected).max() < 0.05
    other = gan.build_pix2pix(ndim, 4, 1, gen, TINY_D).generator(x, training=False).numpy()
    assert np.abs(other - expected).mean() > 10 * np.abs(got - expected).mean()


@pytest.mark.parametrize("gen", [TINY_PIX2PIX, TINY_RESNET], ids=["pix2pix", "resnet"])
def test_compact_export_of_float16_weights_is_bit_identical(tmp_path, gen):
    """With weights that float16 holds exactly, the compact form loses nothing: the rebuilt
    network has the same weights and computes the same bits."""
    generator = gan.build_pix2pix(2, 4, 1, gen, TINY_D).generator
    rng = np.random.default_rng(2)
    halves = [rng.normal(0, 0.2, w.shape).astype(np.float16) for w in generator.weights]
    generator.set_weights([w.astype(np.float32) for w in halves])  # float16 holds them exactly
    manifest = {
        "stage": 3, "ndim": 2, "input": {"channels": 4, "noise_channels": gen.noise_channels},
        "output": {"channels": 1}, "config": {"generator": dataclasses.asdict(gen)},
    }  # fmt: skip
    compact = compact_export(export.export_generator(generator, tmp_path / "saved", manifest), tmp_path / "c")
    serve, _ = load_generator(compact)
    rebuilt = serve._module
    assert [w.path for w in rebuilt.weights] == [w.path for w in generator.weights]
    for a, b in zip(rebuilt.weights, generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = rng.uniform(-1, 1, (1, 32, 32, 4 + gen.noise_channels)).astype("float32")
    same_graph = tf.function(lambda x: generator(x, training=False))
    np.testing.assert_array_equal(serve(x).numpy(), same_graph(x).numpy())


def test_ctrl_c_saves_the_step_and_says_how_to_resume(tmp_path, bbbc039_train, monkeypatch):
    """Issue 18, item 2: Ctrl-C gave a raw KeyboardInterrupt traceback although the work was saved."""
    real_scalars = loop.Summaries.scalars

    def interrupt_at_step_3(self, step, values):
        real_scalars(self, step, values)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.Summaries, "scalars", interrupt_at_step_3)
    cfg = _tiny(3, str(bbbc039_train), steps=10, checkpoint_every=100)
    with pytest.raises(loop.Interrupted) as stop:
        stages.train(cfg, tmp_path / "run")
    assert (stop.value.step, stop.value.steps) == (3, 10)
    assert str(stop.value) == (
        "interrupted; checkpoint saved at step 3 of 10; rerun the same command to resume"
    )
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-3")


def test_train_command_turns_ctrl_c_into_one_line(monkeypatch, capsys):
    from absl import flags

    from nucgen_tf.commands import flagsets, train

    def interrupted(*_):
        raise loop.Interrupted(40, 100)

    monkeypatch.setattr(flagsets, "stage_config_from_flags", lambda: None)
    monkeypatch.setattr(stages, "train", interrupted)
    monkeypatch.setattr(flags, "FLAGS", type("F", (), {"workdir": "w", "export_dir": None})())
    with pytest.raises(SystemExit) as stop:
        train.main(["nucgen train"])
    assert stop.value.code == 130
    assert capsys.readouterr().err == (
        "nucgen train: interrupted; checkpoint saved at step 40 of 100; rerun the same command to resume\n"
    )


def test_stage_rerun_after_the_data_changed_recomputes_intensity_stats(tmp_path, bbbc039_train):
    """Issue 18, item 1: a failed run's intensity_stats.json was reused after the data was fixed."""
    from nucgen_tf.data import normalize

    workdir = tmp_path / "run"
    workdir.mkdir()
    stale = normalize.IntensityStats(low=1.0, high=824.0, span=823.0, max_value=881.0, num_images=2)
    (workdir / "intensity_stats.json").write_text(json.dumps(stale.to_dict()))  # left by a failed run
    stats = stages.intensity_stats(_tiny(3, str(bbbc039_train)), workdir)
    assert stats.max_value != 881.0 and stats.num_images == 2
    assert "source" in json.loads((workdir / "intensity_stats.json").read_text())
    assert stages.intensity_stats(_tiny(3, str(bbbc039_train)), workdir) == stats  # reused while unchanged
