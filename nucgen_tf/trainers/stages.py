"""What differs between the three stages: data, model, panels and the exported generator.

Everything else (flags, checkpoints, logs, export) is shared by `train()`, so a stage is a
small table row, not a trainer of its own.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from nucgen_tf import io, runtime
from nucgen_tf.config import to_dict
from nucgen_tf.data import normalize, pipelines
from nucgen_tf.models import gan
from nucgen_tf.models.schedules import LinearDecay
from nucgen_tf.sensor import SensorModel, fit_sensor
from nucgen_tf.synthesis import arrangement_fit
from nucgen_tf.trainers import export, loop, realism_eval
from nucgen_tf.trainers.config import StageConfig, TrainConfig

# Channel layouts of the stage domains (see README "The representations").
LAYOUTS = {
    "seed_map": "1 channel: seed points, [-1, 1] (stored [0, 1] * 2 - 1)",
    "box_map": "1 channel: Eq. 1 ovals at half box size, [-1, 1]",
    "ellipses": "3 channels: palette RGB of full-size ellipses, [-1, 1]",
    "mask": "4 channels: palette RGB of instances + boundary class, [-1, 1]",
    "image": "1 channel: percentile-normalized intensity, [-1, 1]",
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the stage table.

    Attributes:
        domains: (input, output) representation names of the exported generator.
        channels: their channel counts.
        make_dataset: (config, stats) -> tf.data.Dataset of (input, output) batches.
        make_model: config -> compiled-ready GAN.
        exported: attribute of the GAN holding the generator that synthesis uses.
    """

    domains: tuple[str, str]
    channels: tuple[int, int]
    make_dataset: Callable
    make_model: Callable
    exported: str


def _data_kwargs(cfg: StageConfig, stats) -> dict:
    return {"stats": stats, "max_files": cfg.max_files or None}


STAGES = {
    1: Stage(
        domains=("seed_map", "box_map"),
        channels=(1, 1),
        make_dataset=lambda cfg, stats: pipelines.stage1_dataset(
            cfg.data,
            cfg.patch,
            cfg.render,
            cfg.norm,
            cfg.seeds,
            spacing=cfg.spacing or None,
            **_data_kwargs(cfg, stats),
        ),
        make_model=lambda cfg: gan.build_cyclegan(cfg.ndim, 1, 1, cfg.generator, cfg.discriminator, cfg.loss),
        exported="gen_ab",
    ),
    2: Stage(
        domains=("ellipses", "mask"),
        channels=(3, 4),
        make_dataset=lambda cfg, stats: pipelines.stage2_dataset(
            cfg.data, cfg.patch, cfg.render, cfg.norm, **_data_kwargs(cfg, stats)
        ),
        make_model=lambda cfg: gan.build_cyclegan(
            cfg.ndim, 3, 4, cfg.generator, cfg.discriminator, cfg.loss, paired=True
        ),
        exported="gen_ab",
    ),
    3: Stage(
        domains=("mask", "image"),
        channels=(4, 1),
        make_dataset=lambda cfg, stats: pipelines.stage3_dataset(
            cfg.data, cfg.patch, cfg.render, cfg.norm, **_data_kwargs(cfg, stats)
        ),
        make_model=lambda cfg: gan.build_pix2pix(cfg.ndim, 4, 1, cfg.generator, cfg.discriminator, cfg.loss),
        exported="generator",
    ),
}


def make_optimizer(t: TrainConfig, name: str) -> keras.optimizers.Optimizer:
    """Adam with the linear-decay schedule and optional global-norm clipping of `t`."""
    schedule = LinearDecay(t.lr, hold_steps=int(t.steps * t.decay_from), total_steps=t.steps)
    return keras.optimizers.Adam(schedule, beta_1=t.beta_1, global_clipnorm=t.clipnorm or None, name=name)


# Examples of the fixed panel batch shown, one row each (an empty seed map alone says little).
_PANEL_ROWS = 4


def _panels(stage: int, names: tuple[str, str]):
    def panel_fn(model, batch):
        x, y = (t[:_PANEL_ROWS] for t in batch)
        if stage == 3:
            fake = model(x, training=False)  # with the generator's noise channels, if any
            titles = [f"input {names[0]}", "generated", f"real {names[1]}"]
            return [("stage3", [[x[i], fake[i], y[i]] for i in range(len(x))], titles)]
        fake_b = model.gen_ab(x, training=False)
        fake_a = model.gen_ba(y, training=False)
        titles = [names[0], f"G({names[0]})", f"real {names[1]}", f"F({names[1]})"]
        return [(f"stage{stage}", [[x[i], fake_b[i], y[i], fake_a[i]] for i in range(len(x))], titles)]

    return panel_fn


def training_pairs(cfg: StageConfig) -> list[io.ImagePair]:
    """The image/mask pairs a stage trains on (the first `max_files` when set)."""
    pairs = io.list_pairs(cfg.data)
    return pairs[: cfg.max_files] if cfg.max_files else pairs


def intensity_stats(cfg: StageConfig, workdir: pathlib.Path) -> normalize.IntensityStats:
    """The data set's intensity statistics, kept in the workdir while the data stays the same.

    A resumed run trains on the same scale; a rerun after the data changed recomputes them
    (the cache records its source files).
    """
    pairs = training_pairs(cfg)
    return normalize.cached_intensity_stats(
        workdir / "intensity_stats.json", [p.image_path for p in pairs], cfg.norm, cfg.ndim
    )


def fitted_sensor(cfg: StageConfig, stats: normalize.IntensityStats) -> SensorModel | None:
    """The camera (Poisson-Gaussian noise) of the training images, for the stage-3 manifest.

    Without it an own stage 3 would give clean images while the bundled one adds noise. Data
    without shot noise (e.g. simulated images) has no camera to fit: None, with a warning.
    """
    pairs = training_pairs(cfg)
    images = (io.read_image(p.image_path, cfg.ndim) for p in pairs)
    try:
        return fit_sensor(images, stats.max_value)
    except ValueError as err:
        logging.warning("%s: no camera noise fitted (%s); synthesis will add none", cfg.data, err)
        return None


def fitted_arrangement(cfg: StageConfig) -> arrangement_fit.FittedArrangement | None:
    """The seed layout of the training masks, for the stage-1 manifest.

    Synthesis draws its default ("fitted") seed arrangement from it, so that a stage 1 trained
    on a user's data also places nuclei as in that data. Masks too sparse to fit: None, with
    a warning (synthesis then falls back to the mixed artificial arrangements).
    """
    pairs = training_pairs(cfg)
    masks = (io.read_labels(p.mask_path, cfg.ndim) for p in pairs)
    try:
        return arrangement_fit.fit_labels(masks, cfg.spacing or None)
    except ValueError as err:
        logging.warning("%s: no seed arrangement fitted (%s); synthesis will use mixed ones", cfg.data, err)
        return None


def _resumed_data_config(cfg: StageConfig, workdir: pathlib.Path) -> StageConfig:
    """After a resume, draw new patches: the data seed moves on by the restored step.

    The pipeline is a stateless function of (seed, element index); without this a resumed
    run would see again the very patches it started with.
    """
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    if latest is None:
        return cfg
    step = int(latest.rsplit("-", 1)[1])
    return dataclasses.replace(cfg, patch=dataclasses.replace(cfg.patch, seed=cfg.patch.seed + step))


def train(
    cfg: StageConfig, workdir: str | pathlib.Path, export_dir: str | pathlib.Path | None = None
) -> pathlib.Path:
    """Train one stage in `workdir` (resuming if it holds checkpoints) and export its generator.

    Returns:
        The exported SavedModel folder (`export_dir`, default `<workdir>/export`).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    io.write_json(workdir / "config.json", to_dict(cfg))
    keras.utils.set_random_seed(cfg.train.seed)
    runtime.set_precision(cfg.train.precision)
    strategy = runtime.make_strategy(cfg.train.strategy)
    stage = STAGES[cfg.stage]
    stats = intensity_stats(cfg, workdir)
    sensor = fitted_sensor(cfg, stats) if cfg.stage == 3 else None
    dataset = stage.make_dataset(_resumed_data_config(cfg, workdir), stats)
    batches = iter(dataset)
    first = next(batches)
    # Two batches for the panels: the first examples of a stream are often near-empty.
    panel_batch = tuple(tf.concat([a, b], axis=0) for a, b in zip(first, next(batches)))
    with strategy.scope():
        model = stage.make_model(cfg)
        model.build([tuple(t.shape) for t in first])
        model.compile(make_optimizer(cfg.train, "g_adam"), make_optimizer(cfg.train, "d_adam"))
    generator = getattr(model, stage.exported)
    evaluation = None
    if cfg.evaluation.every:
        evaluate = realism_eval.make_evaluator(cfg, stats, sensor)
        evaluation = realism_eval.Evaluation(cfg.evaluation.every, evaluate, generator, workdir)
    panel_fn = _panels(cfg.stage, stage.domains)
    step = loop.train_loop(
        model, dataset, cfg.train, workdir, strategy, panel_fn, panel_batch, cfg.ndim, evaluation
    )
    manifest = {
        "stage": cfg.stage,
        "ndim": cfg.ndim,
        "input": {
            "name": stage.domains[0],
            "channels": stage.channels[0],
            "layout": LAYOUTS[stage.domains[0]],
            # N(0, 1) channels the caller appends after `channels` (the network takes both).
            "noise_channels": cfg.generator.noise_channels,
        },
        "output": {
            "name": stage.domains[1],
            "channels": stage.channels[1],
            "layout": LAYOUTS[stage.domains[1]],
        },
        "divisor": list(cfg.divisor),
        "patch_shape": list(cfg.patch.patch_shape),
        "step": step,
        "intensity_stats": stats.to_dict(),
        "config": to_dict(cfg),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if sensor is not None:  # synthesis adds this camera noise to what the generator paints
        manifest["sensor"] = sensor.to_dict()
    arrangement = fitted_arrangement(cfg) if cfg.stage == 1 else None
    if arrangement is not None:  # synthesis's default seed layout
        manifest["arrangement_fit"] = arrangement.to_dict()
    if evaluation is not None:
        # Loads the best checkpoint's weights into `generator` unless "latest" is asked for.
        manifest["selected"] = evaluation.select(cfg.evaluation.export_checkpoint, step)
        manifest["step"] = manifest["selected"]["step"]
    target = pathlib.Path(export_dir) if export_dir else workdir / "export"
    export.export_generator(generator, target, manifest)
    logging.info("exported stage %d generator (step %d) to %s", cfg.stage, manifest["step"], target)
    return target
