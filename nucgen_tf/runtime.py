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
    on a GPU; bfloat16 on a CPU with native bf16 (AVX512-BF16 or AMX), where float16 is
    several times slower than float32; float32 on other CPUs, where emulated bf16 is 2-6x
    slower than float32 (measured with bench/train_step.py on an AMD EPYC).
    """
    if name not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={name!r}")
    if name == "mixed":
        if tf.config.list_physical_devices("GPU"):
            name = "mixed_float16"
        elif cpu_has_native_bfloat16():
            name = "mixed_bfloat16"
        else:
            logging.info("precision=mixed: this CPU has no native bfloat16, training in float32")
            name = "float32"
    keras.mixed_precision.set_global_policy(name)
    logging.info("dtype policy: %s", name)
    return name


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU flags list AVX512-BF16 or AMX-BF16 (False where unknown)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return "avx512_bf16" in text or "amx_bf16" in text


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
