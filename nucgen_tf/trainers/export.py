"""Export a trained generator as a SavedModel with a JSON manifest, and load it back.

The SavedModel has one endpoint, `serve`, over float32 `(batch, *spatial, channels)` of any
spatial size divisible by the generator's down-sampling; values in [-1, 1] in and out. The
manifest (`nucgen_manifest.json` inside the SavedModel folder) says what the channels mean
and how to undo the normalization, so that synthesis needs nothing but the folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

MANIFEST = "nucgen_manifest.json"


def export_generator(
    generator: keras.Model, directory: str | pathlib.Path, manifest: Mapping[str, Any]
) -> pathlib.Path:
    """Write `generator` as a SavedModel at `directory`, atomically (temp folder, then rename)."""
    directory = pathlib.Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    shape = generator.inputs[0].shape
    ndim = len(shape) - 2
    spec = tf.TensorSpec((None,) * (ndim + 1) + (shape[-1],), tf.float32, name="inputs")
    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(name="serve", fn=lambda x: generator(x, training=False), input_signature=[spec])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        archive.write_out(str(tmp / "model"), verbose=False)
        (tmp / "model" / MANIFEST).write_text(
            json.dumps(dict(manifest), indent=2, sort_keys=True, default=str)
        )
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp / "model", directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_manifest(directory: str | pathlib.Path) -> dict:
    path = pathlib.Path(directory) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no nucgen manifest; is {directory} an exported nucgen generator?")
    return json.loads(path.read_text())


class ExportedGenerator:
    """A loaded generator: call it on float32 `(batch, *spatial, channels)` in [-1, 1].

    It keeps the loaded SavedModel alive; its `serve` function alone would lose its variables.
    """

    def __init__(self, directory: str | pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.manifest = read_manifest(self.directory)
        self._module = tf.saved_model.load(str(self.directory))

    def __call__(self, x) -> tf.Tensor:
        return self._module.serve(tf.convert_to_tensor(x, tf.float32))


def load_generator(directory: str | pathlib.Path) -> tuple[ExportedGenerator, dict]:
    """An exported generator and its manifest."""
    generator = ExportedGenerator(directory)
    return generator, generator.manifest
