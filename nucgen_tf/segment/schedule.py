"""How a segmenter uses synthetic patches over its training: mixed in, or first alone.

Two schedules, shared by every segmenter family:

* ``mixed`` (the paper's): every patch is synthetic with probability `extra_fraction`, one
  cosine learning-rate decay over all steps, the best validation round kept.
* ``pretrain_finetune``: the first `pretrain_steps` steps see synthetic patches only, the rest
  real patches only; the learning rate decays by a cosine in each phase (a warm restart at the
  switch), and only fine-tuning rounds can be kept (selected on val, as always): a model that
  has not seen real data yet is not a candidate.

Both phases count in `steps`, so a pretrain/fine-tune cell takes as many steps as a mixed one.
"""

from __future__ import annotations

import math
from typing import Any

import keras

SCHEDULES = ("mixed", "pretrain_finetune")


def check_schedule(config: Any) -> None:
    """Checks `schedule` and `pretrain_steps` of a training config (any family).

    Raises:
        ValueError: naming the field and its value.
    """
    if config.schedule not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}. Received: schedule={config.schedule!r}")
    if config.schedule == "mixed":
        if config.pretrain_steps:
            raise ValueError(
                "`pretrain_steps` needs schedule='pretrain_finetune'. "
                f"Received: pretrain_steps={config.pretrain_steps}, schedule='mixed'"
            )
        return
    if not 0 < config.pretrain_steps < config.steps or config.pretrain_steps % config.eval_every:
        raise ValueError(
            "`pretrain_steps` must be a multiple of `eval_every` in (0, steps) for "
            f"schedule='pretrain_finetune'. Received: pretrain_steps={config.pretrain_steps}, "
            f"steps={config.steps}, eval_every={config.eval_every}"
        )


def is_phased(config: Any) -> bool:
    return config.schedule == "pretrain_finetune"


def extra_fraction_at(config: Any, step: int) -> float:
    """The probability that a patch of training step `step` (0-based) is synthetic."""
    if is_phased(config):
        return 1.0 if step < config.pretrain_steps else 0.0
    return float(config.extra_fraction)


def selectable(config: Any, step: int) -> bool:
    """Whether the model after `step` steps may be kept as the best (fine-tuning rounds only)."""
    return not is_phased(config) or step > config.pretrain_steps


def phases(config: Any) -> tuple[tuple[int, int], ...]:
    """(first step, number of steps) of each phase."""
    if is_phased(config):
        return ((0, config.pretrain_steps), (config.pretrain_steps, config.steps - config.pretrain_steps))
    return ((0, config.steps),)


class PhasedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A cosine decay from `lr` to `lr * final_fraction` within each phase (Keras' CosineDecay
    per phase; one phase is exactly CosineDecay)."""

    def __init__(self, lr: float, final_fraction: float, phases: tuple[tuple[int, int], ...]):
        self.lr, self.final_fraction = float(lr), float(final_fraction)
        self.phases = tuple((int(start), int(length)) for start, length in phases)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = keras.ops.zeros_like(step)
        for start, length in self.phases:
            local = keras.ops.clip(step - start, 0.0, float(length))
            cosine = 0.5 * (1.0 + keras.ops.cos(math.pi * local / float(length)))
            value = self.lr * ((1.0 - self.final_fraction) * cosine + self.final_fraction)
            rate = keras.ops.where(step >= start, value, rate)
        return rate

    def get_config(self) -> dict:
        return {"lr": self.lr, "final_fraction": self.final_fraction, "phases": [list(p) for p in self.phases]}


def learning_rate(config: Any) -> keras.optimizers.schedules.LearningRateSchedule:
    """The learning-rate schedule of a training config (`lr`, `lr_final_fraction`, phases);
    Keras' own CosineDecay for a mixed run, as before the schedules existed."""
    if not is_phased(config):
        return keras.optimizers.schedules.CosineDecay(
            config.lr, decay_steps=config.steps, alpha=config.lr_final_fraction
        )
    return PhasedCosine(config.lr, config.lr_final_fraction, phases(config))


def record_without_defaults(config_dict: dict) -> dict:
    """A config dict without the schedule fields at their defaults, so that run records written
    before the schedules existed still match a mixed run."""
    out = dict(config_dict)
    if out.get("schedule") == "mixed":
        out.pop("schedule")
    if out.get("pretrain_steps") == 0:
        out.pop("pretrain_steps")
    return out
