"""Precision policy and tf.distribute strategy, chosen once in a trainer's `main()`."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
from absl import logging

PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")


def set_precision(name: str) -> str:
    """Set the global Keras dtype policy and return its name.

    "mixed" picks the fast path of the machine: float16 (with loss scaling in the models)
    on a GPU, bfloat16 on a CPU, where float16 is several times slower than float32.
    """
    if name not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={name!r}")
    if name == "mixed":
        name = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(name)
    logging.info("dtype policy: %s", name)
    return name


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by the `--strategy` flag.

    "mirrored" uses every local GPU (or the CPU); "multiworker" reads the cluster from
    the TF_CONFIG environment variable, as every TF cluster launcher sets it.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise ValueError(
            "`strategy=multiworker` needs the TF_CONFIG environment variable describing the cluster."
        )
    logging.info("TF_CONFIG: %s", json.loads(os.environ["TF_CONFIG"]))
    return tf.distribute.MultiWorkerMirroredStrategy()
