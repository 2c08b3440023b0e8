"""The training loop shared by the three stages: steps, checkpoints, resume, logs, panels.

A run lives in one workdir. Checkpoints (`tf.train.CheckpointManager`) hold the networks,
both optimizers (so the learning-rate schedule, which reads `optimizer.iterations`), the step
and the image pools with their random state. A restarted command restores the latest one and
continues; a SIGTERM or Ctrl-C writes one more before it exits. The models skip a step whose
loss or gradients are not finite (`nucgen_tf.models.gan`); the loop logs each skip, writes no
checkpoint on a skipped step, and stops after `TrainConfig.max_skipped_steps` skipped steps in
a row (or a non-finite logged loss) without overwriting the last good checkpoint.
"""

from __future__ import annotations

import math
import pathlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from absl import logging

from nucgen_tf.models.gan import SKIPPED
from nucgen_tf.progress import Progress
from nucgen_tf.summaries import Summaries
from nucgen_tf.trainers.config import TrainConfig

if TYPE_CHECKING:
    from nucgen_tf.trainers.realism_eval import Evaluation

# (model, fixed batch) -> [(name, rows of panels (one row per example), titles)]
PanelFn = Callable[
    [object, Sequence[tf.Tensor]], Sequence[tuple[str, Sequence[Sequence[np.ndarray]], Sequence[str]]]
]


class NonFiniteLossError(FloatingPointError):
    """Losses or gradients stayed NaN or Inf; the last good checkpoint is left untouched."""


def _learning_rates(model) -> dict[str, float]:
    rates = {}
    for name in ("g_optimizer", "d_optimizer"):
        opt = getattr(model, name)
        inner = getattr(opt, "inner_optimizer", opt)
        rates[f"lr/{name[0]}"] = float(tf.convert_to_tensor(inner.learning_rate))
    return rates


def _make_step(model, strategy: tf.distribute.Strategy, jit_compile: bool):
    train_step = tf.function(model.train_step, jit_compile=True) if jit_compile else model.train_step

    @tf.function
    def step(batch):
        logs = strategy.run(train_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

    return step


class _Terminate(Exception):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training, raised after the checkpoint of the last step was saved.

    Attributes:
        step: the step the saved checkpoint holds (0: none saved yet).
        steps: the run's total steps.
    """

    def __init__(self, step: int, steps: int):
        self.step, self.steps = step, steps
        saved = f"checkpoint saved at step {step} of {steps}" if step else "no step finished, nothing saved"
        super().__init__(f"interrupted; {saved}; rerun the same command to resume")


def _raise_terminate(signum, frame):
    raise _Terminate(f"signal {signum}")


def train_loop(
    model,
    dataset: tf.data.Dataset,
    config: TrainConfig,
    workdir: str | pathlib.Path,
    strategy: tf.distribute.Strategy,
    panel_fn: PanelFn,
    panel_batch: Sequence[tf.Tensor],
    ndim: int,
    evaluation: Evaluation | None = None,
) -> int:
    """Train `model` (built and compiled inside `strategy.scope()`) up to `config.steps`.

    `evaluation` (optional) checks the generator's realism when due and keeps the best
    checkpoint (`trainers.realism_eval.Evaluation`).

    Returns:
        The step reached (== `config.steps` unless interrupted, which raises).
    """
    workdir = pathlib.Path(workdir)
    with strategy.scope():
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(
        model=model, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer, step=step_var
    )
    manager = tf.train.CheckpointManager(
        checkpoint, str(workdir / "checkpoints"), max_to_keep=config.keep_checkpoints
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    start = int(step_var.numpy())
    if start >= config.steps:
        logging.info("already trained to step %d (>= steps=%d)", start, config.steps)
        return start

    summaries = Summaries(workdir)
    step_fn = _make_step(model, strategy, config.jit_compile)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    previous = signal.signal(signal.SIGTERM, _raise_terminate)
    bar = Progress(config.steps, "train", "step", initial=start)
    step, last_saved = start, start
    tick, tick_step = time.perf_counter(), start
    skipped_in_window, streak = 0.0, 0
    try:
        while step < config.steps:
            logs = {k: float(v) for k, v in step_fn(next(iterator)).items()}
            if not all(math.isfinite(v) for v in logs.values()):
                bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
                raise NonFiniteLossError(
                    f"non-finite loss at step {step + 1}: {bad}; training stopped, last good checkpoint: "
                    f"{manager.latest_checkpoint or 'none'}"
                )
            skipped_now = logs.get(SKIPPED, 0.0) > skipped_in_window
            skipped_in_window = logs.get(SKIPPED, 0.0)
            streak = streak + 1 if skipped_now else 0
            if skipped_now:
                logging.warning("step %d skipped: non-finite loss or gradients", step + 1)
            if streak >= config.max_skipped_steps:
                raise NonFiniteLossError(
                    f"non-finite loss or gradients at {streak} steps in a row (steps {step + 2 - streak}-"
                    f"{step + 1}); training stopped, last good checkpoint: "
                    f"{manager.latest_checkpoint or 'none'}"
                )
            step = int(step_var.assign_add(1).numpy())
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                rate = (step - tick_step) / max(now - tick, 1e-9)
                tick, tick_step = now, step
                summaries.scalars(step, {**logs, **_learning_rates(model), "steps_per_second": rate})
                bar.set_postfix(
                    {"g": f"{logs['g_loss']:.3f}", "d": f"{logs['d_loss']:.3f}", "it/s": f"{rate:.2f}"}
                )
                for metric in model.metrics:
                    metric.reset_state()
                skipped_in_window = 0.0
            if step % config.image_every == 0 or step == config.steps:
                for name, rows, titles in panel_fn(model, panel_batch):
                    summaries.panel(step, name, rows, titles, ndim)
            if evaluation is not None and evaluation.due(step, config.steps):
                evaluation.run(step, summaries)
            if step % config.checkpoint_every == 0 and not streak:
                manager.save(checkpoint_number=step)
                last_saved = step
    except (KeyboardInterrupt, _Terminate) as stop:
        if step > last_saved and not streak:
            manager.save(checkpoint_number=step)
            last_saved = step
        raise Interrupted(last_saved, config.steps) from stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        summaries.close()
    if step > last_saved:
        manager.save(checkpoint_number=step)
    return step
