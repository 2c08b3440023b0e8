"""Learning-rate schedules.

`LinearDecay` is the CycleGAN/pix2pix reference policy ("linear"): keep the learning rate
for the first half of training, then decay it linearly to zero. The reference counts
epochs; here it counts optimizer steps, which is what a Keras schedule sees.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="nucgen")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant `initial_learning_rate` for `hold_steps`, then linear to 0 at `total_steps`.

    lr(step) = initial * (1 - clip((step - hold_steps) / (total_steps - hold_steps), 0, 1))

    Args:
        initial_learning_rate: learning rate during the hold phase (reference: 2e-4).
        hold_steps: steps at the constant rate.
        total_steps: step at which the rate reaches 0 (and stays there).
        name: optional name.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        hold_steps: int,
        total_steps: int,
        name: str | None = None,
    ):
        if not initial_learning_rate > 0:
            raise ValueError(
                "`initial_learning_rate` must be > 0. "
                f"Received: initial_learning_rate={initial_learning_rate}"
            )
        if hold_steps < 0 or total_steps <= hold_steps:
            raise ValueError(
                "Need 0 <= hold_steps < total_steps. Received: "
                f"hold_steps={hold_steps}, total_steps={total_steps}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.hold_steps = int(hold_steps)
        self.total_steps = int(total_steps)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        fraction = (step - self.hold_steps) / float(self.total_steps - self.hold_steps)
        return self.initial_learning_rate * (1.0 - tf.clip_by_value(fraction, 0.0, 1.0))

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "hold_steps": self.hold_steps,
            "total_steps": self.total_steps,
            "name": self.name,
        }
