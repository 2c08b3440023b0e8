"""Load an exported generator (SavedModel or compact), and write the compact float16 form.

The SavedModel has one endpoint, `serve`, over float32 `(batch, *spatial, channels)` of any
spatial size divisible by the generator's down-sampling; values in [-1, 1] in and out. The
compact form (`weights.npz` + manifest) holds no graph: the network is rebuilt from the
manifest's generator config, so it needs the model code but is about 8x smaller.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nucgen_tf.config import from_dict
from nucgen_tf.io import atomic_dir
from nucgen_tf.exported.manifest import WEIGHTS, is_compact, read_manifest, write_manifest
from nucgen_tf.models.config import GeneratorConfig
from nucgen_tf.models.generators import generator_from_config


def build_from_manifest(manifest: Mapping[str, Any]) -> keras.Model:
    """An untrained generator of the architecture a manifest records (`config.generator`)."""
    config = from_dict(GeneratorConfig, manifest["config"]["generator"])
    return generator_from_config(
        config, int(manifest["ndim"]), int(manifest["input"]["channels"]), int(manifest["output"]["channels"])
    )


def _weight_key(path: str) -> str:
    return path.replace("/", "|")  # npz member names are file names


def compact_export(
    saved_model_dir: str | pathlib.Path, directory: str | pathlib.Path, dtype: str = "float16"
) -> pathlib.Path:
    """Rewrite an exported generator as `weights.npz` (float16 by default) + its manifest.

    For bundling inside the package: no graph and half-size weights, about 8x smaller than
    the SavedModel; `ExportedGenerator` rebuilds the network from the manifest's config.
    Written atomically (temp folder, then rename).
    """
    saved_model_dir, directory = pathlib.Path(saved_model_dir), pathlib.Path(directory)
    manifest = read_manifest(saved_model_dir)
    module = tf.saved_model.load(str(saved_model_dir))
    # Floating variables only: a dropout layer's random-generator state (integers) is no weight.
    arrays = {
        _weight_key(v.name.removesuffix(":0")): v.numpy().astype(dtype)
        for v in module.variables
        if v.dtype.is_floating
    }
    expected = {_weight_key(w.path) for w in build_from_manifest(manifest).weights}
    if set(arrays) != expected:
        raise ValueError(
            f"{saved_model_dir}: its variables do not match the architecture in its manifest "
            f"(missing {sorted(expected - set(arrays))[:3]}, unexpected {sorted(set(arrays) - expected)[:3]})"
        )
    with atomic_dir(directory) as tmp:  # world-readable: a bundle is package data
        np.savez_compressed(tmp / WEIGHTS, **arrays)
        write_manifest(tmp, {**manifest, "format": f"weights-{dtype}"})
    return directory


class ExportedGenerator:
    """A loaded generator: call it on float32 `(batch, *spatial, channels)` in [-1, 1].

    Reads a SavedModel folder (it keeps the loaded module alive; its `serve` function alone
    would lose its variables) or a compact folder (`weights.npz` + manifest, see
    `compact_export`), whose network is rebuilt from the manifest.
    """

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.manifest = read_manifest(self.directory)
        if is_compact(self.directory):
            model = build_from_manifest(self.manifest)
            with np.load(self.directory / WEIGHTS) as stored:
                model.set_weights([stored[_weight_key(w.path)].astype(np.float32) for w in model.weights])
            self._module = model
            self._serve = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        else:
            self._module = tf.saved_model.load(str(self.directory))
            self._serve = self._module.serve

    def __call__(self, x) -> tf.Tensor:
        return self._serve(tf.convert_to_tensor(x, tf.float32))


def load_generator(directory: str | pathlib.Path) -> tuple[ExportedGenerator, dict]:
    """An exported generator and its manifest."""
    generator = ExportedGenerator(directory)
    return generator, generator.manifest
