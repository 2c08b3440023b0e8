"""Write a trained generator as an export: a SavedModel plus its JSON manifest.

The format, reading it back and the compact form live in `nucgen_tf.exported`, so that
synthesis needs nothing from training; this is the one piece only training needs.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from nucgen_tf.exported.manifest import write_manifest


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
        write_manifest(tmp / "model", manifest)
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
