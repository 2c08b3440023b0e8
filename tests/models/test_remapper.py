"""Grappler's remapper must not give up on the GAN train step (issue 18, item 4).

With a Keras `LeakyReLU` right after a convolution with bias, oneDNN's remapper fused
Conv + BiasAdd + LeakyRelu, whose gradient (`LeakyReluGrad`) still needs the BiasAdd output:
"remapper failed: ... fanout 'LeakyReluGrad' exist for missing node 'BiasAdd'", and the whole
graph went unoptimized. `layers.activation("leaky_relu")` computes max(x, 0.2 x) instead.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from nucgen_tf import pretrained
from nucgen_tf.models import layers as L
from nucgen_tf.trainers.export import ExportedGenerator

ROOT = pathlib.Path(__file__).resolve().parents[2]

STEP = """
import keras, tensorflow as tf
from nucgen_tf.models import DiscriminatorConfig, GeneratorConfig, build_pix2pix
model = build_pix2pix(2, 4, 1, GeneratorConfig(base_filters=4, depth=2), DiscriminatorConfig(base_filters=4))
model.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
batch = (tf.random.uniform((1, 32, 32, 4), -1, 1), tf.random.uniform((1, 32, 32, 1), -1, 1))
tf.function(model.train_step)(batch)
print("ok")
"""


@pytest.mark.slow
def test_gan_train_step_keeps_the_remapper():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_ENABLE_ONEDNN_OPTS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", STEP], capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert "remapper failed" not in proc.stderr


def test_leaky_relu_equals_keras_leaky_relu_exactly():
    x = np.random.default_rng(0).normal(size=(2, 7, 5, 3)).astype(np.float32)
    x[0, 0, 0] = 0.0
    ours = keras.ops.convert_to_numpy(L.activation("leaky_relu")(x))
    np.testing.assert_array_equal(ours, keras.ops.convert_to_numpy(keras.layers.LeakyReLU(0.2)(x)))


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_bundled_generators_load_with_identical_outputs(stage):
    """Same weights, same layout: the bundle gives what a Keras-LeakyReLU copy of it gives."""
    generator = ExportedGenerator(pretrained.bundled_models() / stage)
    model = generator._module  # the rebuilt Keras network of a compact bundle
    reference = keras.models.clone_model(
        model,
        clone_function=lambda layer: keras.layers.LeakyReLU(0.2, name=layer.name)
        if isinstance(layer, L.LeakyReLU)
        else layer.__class__.from_config(layer.get_config()),
    )
    assert [w.path for w in reference.weights] == [w.path for w in model.weights]
    reference.set_weights(model.get_weights())
    channels = model.input_shape[-1]
    x = np.random.default_rng(1).uniform(-1, 1, size=(1, 64, 64, channels)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reference.predict(x, verbose=0))
