"""Noise channels of a stage-3 generator in synthesis and paint: drawn per sample, once per canvas."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tifffile

from nucgen_tf.models.config import GeneratorConfig
from nucgen_tf.synthesis import models, sampling
from nucgen_tf.synthesis.options import SynthesisOptions
from nucgen_tf.synthesis.paint import paint_labels
from nucgen_tf.synthesis.pipeline import ChainSettings, run_stage, with_texture_noise
from nucgen_tf.synthesis.run import synthesize
from tests import tiny_generators

NOISY = GeneratorConfig(architecture="pix2pix", base_filters=4, depth=2, noise_channels=1)


def _noise_echo(divisor=(8, 8)) -> models.StageModel:
    """A "generator" that returns its noise channel: shows exactly which noise each pixel got."""
    manifest = {"ndim": 2, "config": {"generator": {"noise_channels": 1}}}
    return models.StageModel(3, pathlib.Path("echo"), lambda x: x[..., -1:], manifest, divisor, "")


@pytest.fixture(scope="module")
def noisy_models(tmp_path_factory):
    """Untrained chain whose stage 3 is a pix2pix generator with a noise channel that shows."""
    folder = tmp_path_factory.mktemp("noisy")
    return tiny_generators.export_untrained_models(
        folder, (64, 64), base_filters=4, depth=2, stage3=NOISY, noise_scale=0.5
    )


def test_noise_is_drawn_for_the_whole_padded_canvas_and_tiles_cut_it():
    echo = _noise_echo()
    stored = np.zeros((1, 60, 44, 4), np.float32)  # padded to 64 x 48
    expected = np.random.default_rng(7).standard_normal((64, 48, 1), dtype=np.float32)[:60, :44]
    one_pass = run_stage(echo, stored, ChainSettings(tile=0), [np.random.default_rng(7)])
    tiled = run_stage(echo, stored, ChainSettings(tile=32, overlap=8), [np.random.default_rng(7)])
    np.testing.assert_array_equal(one_pass[0], expected)
    np.testing.assert_allclose(tiled[0], expected, atol=1e-6)  # cross-faded copies of the same noise


def test_each_sample_draws_from_its_own_stream():
    x = -np.ones((2, 8, 8, 4), np.float32)
    rngs = [np.random.default_rng(1), np.random.default_rng(2)]
    out = with_texture_noise(x, (8, 8), 2, rngs)
    assert out.shape == (2, 8, 8, 6)
    expected = np.random.default_rng(2).standard_normal((8, 8, 2), np.float32)
    np.testing.assert_array_equal(out[1, ..., 4:], expected)
    with pytest.raises(ValueError, match="one generator per sample"):
        with_texture_noise(x, (8, 8), 1, rngs[:1])


def test_a_noisy_generator_without_texture_streams_is_refused():
    with pytest.raises(ValueError, match="pass `texture`"):
        run_stage(_noise_echo(), np.zeros((1, 8, 8, 4), np.float32), ChainSettings())


def test_same_seed_and_index_give_identical_samples_and_the_noise_varies_the_texture(tmp_path, noisy_models):
    chain = models.load_generators(noisy_models)
    assert chain.stages[3].noise_channels == 1
    for name in ("a", "b"):
        options = SynthesisOptions(models=str(noisy_models), out=str(tmp_path / name), n=2, shape=(64, 64),
                                   seed=3, sensor_noise="none", min_alignment=0.0)  # fmt: skip
        synthesize(options, chain)
    for index in range(2):
        name = f"sample_{index:06d}.tif"
        a, b = (tifffile.imread(tmp_path / run / "images" / name) for run in ("a", "b"))
        np.testing.assert_array_equal(a, b)
    # One colored mask, two texture streams: two images.
    mask = np.zeros((1, 64, 64, 4), np.float32)
    mask[0, 20:40, 20:40, :3] = 0.8
    stage3, settings = chain.stages[3], ChainSettings()
    first = run_stage(stage3, mask, settings, [sampling.sample_rngs(3, 0)["texture"]])
    again = run_stage(stage3, mask, settings, [sampling.sample_rngs(3, 0)["texture"]])
    other = run_stage(stage3, mask, settings, [sampling.sample_rngs(3, 1)["texture"]])
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


def test_a_generator_without_noise_channels_ignores_the_texture_stream(tmp_path):
    plain = tiny_generators.export_untrained_models(tmp_path / "plain", (64, 64), base_filters=4, depth=2)
    painter = models.load_image_stage(plain)  # a unet3x3 stage 3, as exported before noise channels
    assert painter.model.noise_channels == 0
    labels = np.zeros((64, 64), np.int32)
    labels[10:30, 12:28], labels[40:56, 30:50] = 1, 2
    settings = ChainSettings(sensor_noise=False)
    texture = np.random.default_rng(5)
    state = texture.bit_generator.state
    with_stream = paint_labels(painter, labels, np.random.default_rng(0), np.random.default_rng(0), settings,
                               texture_rng=texture)  # fmt: skip
    without = paint_labels(painter, labels, np.random.default_rng(0), np.random.default_rng(0), settings)
    np.testing.assert_array_equal(with_stream.image, without.image)
    assert texture.bit_generator.state == state  # nothing drawn
