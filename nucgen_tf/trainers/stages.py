"""What differs between the GAN stages: data, model, panels, fits and the exported generator.

Everything else (checkpoints, logs, precision, realism checks, export) is shared by `train()`,
so a stage is a small table row, not a trainer of its own: the paper's stages 1, 2, 3 and the
p + CycleGAN baseline (its data: `nucgen_tf.data.polygon_masks`), which thus gets every
engine option the stages get (a fair baseline).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from nucgen_tf import io, runtime
from nucgen_tf.config import to_dict
from nucgen_tf.data import normalize, pipelines, polygon_masks
from nucgen_tf.models import gan
from nucgen_tf.models.schedules import LinearDecay
from nucgen_tf.phantoms.polygons import PolygonConfig
from nucgen_tf.sensor import SensorModel, fit_sensor
from nucgen_tf.synthesis import arrangement_fit
from nucgen_tf.trainers import export, loop, realism_eval
from nucgen_tf.trainers.config import POLYGON_CYCLEGAN, StageConfig, TrainConfig

# Channel layouts of the stage domains (see README "The representations").
LAYOUTS = {
    "seed_map": "1 channel: seed points, [-1, 1] (stored [0, 1] * 2 - 1)",
    "box_map": "1 channel: Eq. 1 ovals at half box size, [-1, 1]",
    "ellipses": "3 channels: palette RGB of full-size ellipses, [-1, 1]",
    "mask": "4 channels: palette RGB of instances + boundary class, [-1, 1]",
    "image": "1 channel: percentile-normalized intensity, [-1, 1]",
}

# What a row fits to the training data before training: manifest entries (each a config
# dataclass or an object with `to_dict`; None = nothing fitted), also read by the row's
# dataset ("polygons") and realism check ("sensor").
Fitted = Mapping[str, Any]
# Examples of the fixed panel batch shown, one row each (an empty seed map alone says little).
_PANEL_ROWS = 4


def _cycle_panels(name: str, titles: tuple[str, str, str, str]) -> loop.PanelFn:
    """Panels of a CycleGAN: a, G(a), real b, F(b)."""

    def panel_fn(model, batch):
        x, y = (t[:_PANEL_ROWS] for t in batch)
        fake_b = model.gen_ab(x, training=False)
        fake_a = model.gen_ba(y, training=False)
        return [(name, [[x[i], fake_b[i], y[i], fake_a[i]] for i in range(len(x))], list(titles))]

    return panel_fn


def _pix2pix_panels(name: str, titles: tuple[str, str, str]) -> loop.PanelFn:
    """Panels of a pix2pix: input, generated, real output."""

    def panel_fn(model, batch):
        x, y = (t[:_PANEL_ROWS] for t in batch)
        fake = model(x, training=False)  # with the generator's noise channels, if any
        return [(name, [[x[i], fake[i], y[i]] for i in range(len(x))], list(titles))]

    return panel_fn


def _cycle_titles(a: str, b: str) -> tuple[str, str, str, str]:
    return (a, f"G({a})", f"real {b}", f"F({b})")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the stage table.

    Attributes:
        domains: (input, output) representation names of the exported generator.
        channels: their channel counts.
        make_dataset: (config, stats, fitted) -> tf.data.Dataset of (input, output) batches.
        make_model: config -> compiled-ready GAN.
        exported: attribute of the GAN holding the generator that synthesis uses.
        panels: (model, batch) -> the TensorBoard / PNG panels (`loop.PanelFn`).
        fit: (config, stats, workdir) -> what is fitted to the training data (`Fitted`).
    """

    domains: tuple[str, str]
    channels: tuple[int, int]
    make_dataset: Callable[[StageConfig, normalize.IntensityStats, Fitted], tf.data.Dataset]
    make_model: Callable[[StageConfig], keras.Model]
    exported: str
    panels: loop.PanelFn
    fit: Callable[[StageConfig, normalize.IntensityStats, pathlib.Path], Fitted] = lambda *_: {}


def _data_kwargs(cfg: StageConfig, stats) -> dict:
    return {"stats": stats, "max_files": cfg.max_files or None}


def make_optimizer(t: TrainConfig, name: str) -> keras.optimizers.Optimizer:
    """Adam with the linear-decay schedule and optional global-norm clipping of `t`."""
    schedule = LinearDecay(t.lr, hold_steps=int(t.steps * t.decay_from), total_steps=t.steps)
    return keras.optimizers.Adam(schedule, beta_1=t.beta_1, global_clipnorm=t.clipnorm or None, name=name)


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


def fitted_polygons(cfg: StageConfig, workdir: pathlib.Path) -> PolygonConfig:
    """The parametric masks of the p + CycleGAN row, fitted to the training masks.

    Also kept in `<workdir>/polygons.json`, for a look at what the baseline trains on.
    """
    polygons = polygon_masks.fitted_polygons(cfg.data, cfg.patch.patch_shape, max_files=cfg.max_files)
    io.write_json(workdir / "polygons.json", to_dict(polygons))
    logging.info("%s parametric masks: %s", cfg.stage, polygons)
    return polygons


TABLE = {
    1: Stage(
        domains=("seed_map", "box_map"),
        channels=(1, 1),
        make_dataset=lambda cfg, stats, fitted: pipelines.stage1_dataset(
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
        panels=_cycle_panels("stage1", _cycle_titles("seed_map", "box_map")),
        # Synthesis's default seed layout.
        fit=lambda cfg, stats, workdir: {"arrangement_fit": fitted_arrangement(cfg)},
    ),
    2: Stage(
        domains=("ellipses", "mask"),
        channels=(3, 4),
        make_dataset=lambda cfg, stats, fitted: pipelines.stage2_dataset(
            cfg.data, cfg.patch, cfg.render, cfg.norm, **_data_kwargs(cfg, stats)
        ),
        make_model=lambda cfg: gan.build_cyclegan(
            cfg.ndim, 3, 4, cfg.generator, cfg.discriminator, cfg.loss, paired=True
        ),
        exported="gen_ab",
        panels=_cycle_panels("stage2", _cycle_titles("ellipses", "mask")),
    ),
    3: Stage(
        domains=("mask", "image"),
        channels=(4, 1),
        make_dataset=lambda cfg, stats, fitted: pipelines.stage3_dataset(
            cfg.data, cfg.patch, cfg.render, cfg.norm, **_data_kwargs(cfg, stats)
        ),
        make_model=lambda cfg: gan.build_pix2pix(cfg.ndim, 4, 1, cfg.generator, cfg.discriminator, cfg.loss),
        exported="generator",
        panels=_pix2pix_panels("stage3", ("input mask", "generated", "real image")),
        # Synthesis adds this camera noise to what the generator paints (and so does the check).
        fit=lambda cfg, stats, workdir: {"sensor": fitted_sensor(cfg, stats)},
    ),
    # The baseline of Mahmood et al.: unpaired parametric masks <-> real images; synthesis of
    # the baseline (`experiments.baselines`) paints new parametric masks with `gen_ab`.
    POLYGON_CYCLEGAN: Stage(
        domains=("mask", "image"),
        channels=(4, 1),
        make_dataset=lambda cfg, stats, fitted: polygon_masks.polygon_cyclegan_dataset(
            cfg.data, fitted["polygons"], cfg.patch, cfg.render, norm=cfg.norm, **_data_kwargs(cfg, stats)
        ),
        make_model=lambda cfg: gan.build_cyclegan(
            cfg.ndim, 4, 1, cfg.generator, cfg.discriminator, cfg.loss, name="p_cyclegan"
        ),
        exported="gen_ab",
        panels=_cycle_panels("p_cyclegan", ("parametric mask", "G(mask)", "real image", "F(image)")),
        fit=lambda cfg, stats, workdir: {"polygons": fitted_polygons(cfg, workdir)},
    ),
}
# The synthesis chain's rows, in order (what `nucgen synthesize` loads).
STAGES = {stage: TABLE[stage] for stage in (1, 2, 3)}


def _record(value: Any) -> dict:
    """A fitted entry as the manifest stores it."""
    return value.to_dict() if hasattr(value, "to_dict") else to_dict(value)


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
    stage = TABLE[cfg.stage]
    stats = intensity_stats(cfg, workdir)
    fitted = stage.fit(cfg, stats, workdir)
    dataset = stage.make_dataset(_resumed_data_config(cfg, workdir), stats, fitted)
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
        evaluate = realism_eval.make_evaluator(cfg, stats, fitted.get("sensor"))
        evaluation = realism_eval.Evaluation(cfg.evaluation.every, evaluate, generator, workdir)
    step = loop.train_loop(
        model, dataset, cfg.train, workdir, strategy, stage.panels, panel_batch, cfg.ndim, evaluation
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
    manifest.update({name: _record(value) for name, value in fitted.items() if value is not None})
    if evaluation is not None:
        # Loads the best checkpoint's weights into `generator` unless "latest" is asked for.
        manifest["selected"] = evaluation.select(cfg.evaluation.export_checkpoint, step)
        manifest["step"] = manifest["selected"]["step"]
    target = pathlib.Path(export_dir) if export_dir else workdir / "export"
    export.export_generator(generator, target, manifest)
    logging.info("exported the stage %s generator (step %d) to %s", cfg.stage, manifest["step"], target)
    return target
