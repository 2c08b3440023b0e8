"""Untrained exported generators with real manifests: smoke tests and benchmarks of synthesis.

`export_untrained_models(dir, patch_shape)` writes `dir/stage1..3` exactly as `nucgen
train` would (same SavedModel endpoint, same manifest keys), but with freshly initialised
tiny networks, so the whole synthesis path runs in seconds without training. Their images
are noise-like, so alignment checks flag them: that is what an untrained generator is.

A test helper (it builds the networks with training code), not part of the package; bench
scripts import it with the repo root on `sys.path`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

from nucgen_tf.config import PatchConfig, SeedConfig, to_dict
from nucgen_tf.data.normalize import IntensityStats
from nucgen_tf.models.config import GeneratorConfig

DEFAULT_STATS = IntensityStats(
    low=100.0, high=1800.0, span=1700.0, max_value=4095.0, dtype="uint16", num_images=1
)


def export_untrained_models(
    directory: str | pathlib.Path,
    patch_shape: Sequence[int],
    base_filters: int = 4,
    depth: int = 2,
    seed: int = 0,
    stats: IntensityStats = DEFAULT_STATS,
    seeds: SeedConfig | None = None,
    stage3: GeneratorConfig | None = None,
    noise_scale: float = 0.0,
) -> pathlib.Path:
    """Export three untrained generators to `directory/stage{1,2,3}` with trainer-style manifests.

    Args:
        directory: the `--models` folder to create.
        patch_shape: training patch shape recorded in the manifests (sets ndim).
        base_filters: generator base filters.
        depth: generator depth (divisor 2**depth per axis).
        seed: Keras seed of the initial weights.
        stats: intensity statistics recorded for stage 3.
        seeds: stage-1 seed config (default `SeedConfig()`).
        stage3: the stage-3 generator's config (e.g. pix2pix with noise channels); default
            that of stages 1-2.
        noise_scale: every noise-injection scale of the stage-3 generator (untrained they
            are 0 and the noise would not show).

    Returns:
        `directory`.
    """
    import keras
    import tensorflow as tf

    from nucgen_tf.models import gan
    from nucgen_tf.models.config import DiscriminatorConfig
    from nucgen_tf.models.layers import NoiseInjection
    from nucgen_tf.trainers import export, stages
    from nucgen_tf.trainers.config import StageConfig, downsampling_factor

    directory = pathlib.Path(directory)
    patch_shape = tuple(int(s) for s in patch_shape)
    ndim = len(patch_shape)
    shared = GeneratorConfig(base_filters=base_filters, depth=depth, max_filters=max(base_filters, 64))
    disc = DiscriminatorConfig(base_filters=4, n_layers=1)
    keras.utils.set_random_seed(seed)
    for stage, spec in stages.STAGES.items():
        generator = stage3 if stage == 3 and stage3 is not None else shared
        cfg = StageConfig(
            stage=stage,
            data="untrained",
            patch=PatchConfig(patch_shape=patch_shape, rot90=patch_shape[-1] == patch_shape[-2]),
            generator=generator,
            seeds=seeds or SeedConfig(),
        )
        c_in, c_out = spec.channels
        if stage == 3:
            net = gan.build_pix2pix(ndim, c_in, c_out, generator, disc).generator
            for layer in net.layers:
                if isinstance(layer, NoiseInjection):
                    layer.scale.assign(np.full(layer.scale.shape, noise_scale, np.float32))
        else:
            net = gan.build_cyclegan(ndim, c_in, c_out, generator, disc, paired=stage == 2).gen_ab
        manifest = {
            "stage": stage,
            "ndim": ndim,
            "input": {
                "name": spec.domains[0],
                "channels": c_in,
                "layout": stages.LAYOUTS[spec.domains[0]],
                "noise_channels": generator.noise_channels,
            },
            "output": {"name": spec.domains[1], "channels": c_out, "layout": stages.LAYOUTS[spec.domains[1]]},
            "divisor": [downsampling_factor(generator, ndim, axis) for axis in range(ndim)],
            "patch_shape": list(patch_shape),
            "step": 0,
            "intensity_stats": stats.to_dict(),
            "config": to_dict(dataclasses.replace(cfg)),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        export.export_generator(net, directory / f"stage{stage}", manifest)
    return directory


def _gaussian_kernels(ndim: int, radius: Sequence[float], seed_radius: float) -> list[np.ndarray]:
    """Separable Gaussian blur, one (*size, 1, 1) kernel per axis, scaled so that a lone seed
    dot peaks at 1.0 and falls to 0.1 (the default box-map threshold) near `radius`."""
    from scipy import ndimage

    from nucgen_tf.geometry import render_seed_map

    sigma = [r / np.sqrt(2.0 * np.log(10.0)) for r in radius]
    kernels = []
    for axis, s in enumerate(sigma):
        reach = int(np.ceil(3.0 * s))
        taps = np.exp(-0.5 * (np.arange(-reach, reach + 1) / s) ** 2)
        shape = [1] * ndim
        shape[axis] = len(taps)
        kernels.append(taps.reshape(*shape, 1, 1))
    size = [k.shape[a] + 4 for a, k in enumerate(kernels)]
    blob = render_seed_map(np.asarray([[n // 2 for n in size]], float), size, seed_radius)
    for axis, kernel in enumerate(kernels):
        blob = ndimage.convolve1d(blob, kernel.ravel(), axis=axis, mode="constant")
    kernels[-1] = kernels[-1] / float(blob.max())
    return kernels


def _turned_kernel(radius: Sequence[float], turn_deg: float, seed_radius: float) -> np.ndarray:
    """One (h, w, 1, 1) 2D kernel: a Gaussian with `radius` along axes turned by `turn_deg`,
    scaled like `_gaussian_kernels` (a lone seed dot peaks at 1.0)."""
    from scipy import ndimage

    from nucgen_tf.geometry import render_seed_map

    sigma = np.asarray([r / np.sqrt(2.0 * np.log(10.0)) for r in radius])
    reach = int(np.ceil(3.0 * sigma.max()))
    grid = np.stack(np.mgrid[-reach : reach + 1, -reach : reach + 1], -1).astype(np.float64)
    a = np.deg2rad(turn_deg)
    local = grid @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    taps = np.exp(-0.5 * ((local / sigma) ** 2).sum(-1))
    size = [2 * reach + 5] * 2
    blob = render_seed_map(np.asarray([[n // 2 for n in size]], float), size, seed_radius)
    peak = ndimage.convolve(blob, taps, mode="constant").max()
    return (taps / peak).reshape(*taps.shape, 1, 1)


def _fixed_model(ndim: int, c_in: int, kernels: Sequence[np.ndarray], name: str):
    """(x + 1) / 2 -> fixed convolutions -> clip to [0, 1] -> 2 y - 1, of built-in layers."""
    import keras

    conv_cls = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[ndim]
    inputs = keras.Input(shape=(None,) * ndim + (c_in,), name=f"{name}_input")
    x = keras.layers.Rescaling(0.5, offset=0.5, name=f"{name}_to_stored")(inputs)
    convs = []
    for i, kernel in enumerate(kernels):
        convs.append(conv_cls(kernel.shape[-1], kernel.shape[:ndim], padding="same", name=f"{name}_conv{i}"))
        x = convs[-1](x)
    x = keras.layers.ReLU(max_value=1.0, name=f"{name}_clip")(x)
    outputs = keras.layers.Rescaling(2.0, offset=-1.0, name=f"{name}_to_network")(x)
    model = keras.Model(inputs, outputs, name=name)
    for conv, kernel in zip(convs, kernels):
        conv.set_weights([kernel.astype(np.float32), np.zeros(kernel.shape[-1], np.float32)])
    return model


def export_reference_models(
    directory: str | pathlib.Path,
    patch_shape: Sequence[int],
    nucleus_radius: float | Sequence[float] = 6.0,
    divisor: int = 4,
    seed_radius: float = 1.5,
    stats: IntensityStats = DEFAULT_STATS,
    seeds: SeedConfig | None = None,
    turn_deg: float | None = None,
) -> pathlib.Path:
    """Export three hand-set convolutional "generators" that do each stage's job roughly.

    Unlike untrained networks they produce content that synthesis can be checked against:
    stage 1 blurs each seed dot with a separable Gaussian (a bright-centred blob, like an
    Eq. 1 oval),
    stage 2 copies the ellipse colors into the mask (boundary class 0), stage 3 paints every
    colored pixel bright on a dark background. Same manifests and SavedModel endpoint as
    `nucgen train` writes.

    Args:
        directory: the `--models` folder to create.
        patch_shape: recorded training patch shape (sets ndim).
        nucleus_radius: radius in pixels (one value or one per axis) at which a lone seed's
            blob falls to the default box-map threshold 0.1.
        divisor: recorded per-axis size multiple (the convolutions accept any size; a
            divisor > 1 exercises the padding path).
        seed_radius: recorded RenderConfig.seed_radius.
        stats: recorded intensity statistics.
        seeds: recorded stage-1 seed config.
        turn_deg: 2D only: stage 1 paints blobs turned by this angle (one non-separable
            kernel; `nucleus_radius` along the turned axes) and the manifests record
            oriented boxes (`RenderConfig.oriented`).

    Returns:
        `directory`.
    """
    import keras
    import tensorflow as tf

    from nucgen_tf.config import RenderConfig
    from nucgen_tf.trainers import export, stages

    directory = pathlib.Path(directory)
    patch_shape = tuple(int(s) for s in patch_shape)
    ndim = len(patch_shape)
    radius = (float(nucleus_radius),) * ndim if np.ndim(nucleus_radius) == 0 else tuple(nucleus_radius)
    copy = np.zeros((1,) * ndim + (3, 4))
    copy[(0,) * ndim] = np.eye(3, 4)
    bright = np.zeros((1,) * ndim + (4, 1))
    bright[(0,) * ndim + (slice(0, 3),)] = 4.0
    if turn_deg is None:
        blur = _gaussian_kernels(ndim, radius, seed_radius)
    elif ndim == 2:
        blur = [_turned_kernel(radius, turn_deg, seed_radius)]
    else:
        raise ValueError(f"`turn_deg` is 2D only. Received: ndim={ndim}")
    nets = {
        1: _fixed_model(ndim, 1, blur, "reference_stage1"),
        2: _fixed_model(ndim, 3, [copy], "reference_stage2"),
        3: _fixed_model(ndim, 4, [bright], "reference_stage3"),
    }
    render = RenderConfig(seed_radius=seed_radius, oriented=turn_deg is not None)
    for stage, spec in stages.STAGES.items():
        c_in, c_out = spec.channels
        manifest = {
            "stage": stage,
            "ndim": ndim,
            "input": {"name": spec.domains[0], "channels": c_in, "layout": stages.LAYOUTS[spec.domains[0]]},
            "output": {"name": spec.domains[1], "channels": c_out, "layout": stages.LAYOUTS[spec.domains[1]]},
            "divisor": [divisor] * ndim,
            "patch_shape": list(patch_shape),
            "step": 0,
            "intensity_stats": stats.to_dict(),
            "config": {"stage": stage, "render": to_dict(render), "seeds": to_dict(seeds or SeedConfig())},
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "reference": "hand-set convolutions from tests.tiny_generators, not a trained GAN",
        }
        export.export_generator(nets[stage], directory / f"stage{stage}", manifest)
    return directory
