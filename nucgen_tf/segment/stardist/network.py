"""StarDist itself, imported lazily: the network, its training targets and its normalization.

StarDist is an optional dependency (`pip install stardist`, the "stardist" extra); these
functions raise ImportError naming the fix.
"""

from __future__ import annotations

import contextlib
import io as _stdio
from collections.abc import Sequence

import numpy as np
from absl import logging

from nucgen_tf.segment.data import PathLike
from nucgen_tf.segment.stardist.config import MODEL_NAME, StardistTrainConfig


def require_stardist():
    """The `stardist` package, or an ImportError that says how to get it."""
    try:
        import stardist
        import stardist.models  # noqa: F401  (imports csbdeep and the Keras models)
    except ImportError as err:
        raise ImportError(
            "The StarDist segmenter family needs the `stardist` package (tested with 0.9.2): "
            "pip install 'stardist==0.9.2' (or the nucgen-tf 'stardist' extra)."
        ) from err
    return stardist


@contextlib.contextmanager
def quiet():
    """Sends what StarDist / csbdeep print on stdout to the absl log instead."""
    buffer = _stdio.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                logging.info("stardist: %s", line.strip())


def resolve_geometry(
    config: StardistTrainConfig, labels: Sequence[np.ndarray] = ()
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """The (grid, anisotropy) a run uses: the config's, or StarDist's automatic choices.

    Args:
        config: training settings.
        labels: real training masks, to estimate a 3D anisotropy when `config.anisotropy` is ().

    Returns:
        grid per axis, and the 3D anisotropy (None in 2D).
    """
    ndim = config.ndim
    anisotropy = None
    if ndim == 3:
        if config.anisotropy:
            anisotropy = config.anisotropy
        else:
            extents = require_stardist().calculate_extents(list(labels), np.median) if labels else np.ones(3)
            extents = np.maximum(np.asarray(extents, np.float64), 1.0)
            anisotropy = tuple(float(v) for v in np.max(extents) / extents)
    if config.grid:
        grid = config.grid
    elif ndim == 2:
        grid = (2, 2)
    else:
        grid = tuple(1 if a > 1.5 else 2 for a in anisotropy)
    return grid, anisotropy


def _stardist_config(config: StardistTrainConfig, grid: Sequence[int], anisotropy: Sequence[float] | None):
    """A csbdeep `Config2D` / `Config3D` for the network (its train_* fields only document)."""
    sd = require_stardist()
    common = {
        "n_channel_in": 1,
        "grid": tuple(grid),
        "backbone": "unet",
        "unet_n_filter_base": config.unet_n_filter_base,
        "unet_n_depth": config.unet_n_depth,
        "train_patch_size": config.patch_shape,
        "train_batch_size": config.batch_size,
        "train_learning_rate": config.lr,
        "train_tensorboard": False,
    }
    if config.ndim == 2:
        return sd.models.Config2D(n_rays=config.n_rays, **common)
    rays = sd.Rays_GoldenSpiral(config.n_rays, anisotropy=tuple(anisotropy))
    return sd.models.Config3D(rays=rays, anisotropy=tuple(anisotropy), **common)


def model_class(ndim: int):
    models = require_stardist().models
    return {2: models.StarDist2D, 3: models.StarDist3D}[ndim]


def build_stardist(
    config: StardistTrainConfig,
    basedir: PathLike | None = None,
    grid: Sequence[int] | None = None,
    anisotropy: Sequence[float] | None = None,
):
    """A fresh StarDist2D / StarDist3D model (by `config.ndim`), saved config and all.

    Args:
        config: training settings (network size, rays, patch).
        basedir: folder that gets StarDist's `model/` folder (config.json); None = in memory.
        grid, anisotropy: resolved geometry (`resolve_geometry`); default: the config's own
            or StarDist's automatic choice for isotropic data.
    """
    auto_grid, auto_anisotropy = resolve_geometry(config)
    grid = tuple(grid) if grid is not None else auto_grid
    anisotropy = tuple(anisotropy) if anisotropy is not None else auto_anisotropy
    sd_config = _stardist_config(config, grid, anisotropy)
    with quiet():
        return model_class(config.ndim)(
            sd_config, name=MODEL_NAME if basedir is not None else None,
            basedir=None if basedir is None else str(basedir),
        )  # fmt: skip


def normalize_image(image: np.ndarray, percentiles: Sequence[float] = (1.0, 99.8)) -> np.ndarray:
    """csbdeep's per-image percentile normalization (low -> 0, high -> 1, not clipped), float32."""
    from csbdeep.utils import normalize

    require_stardist()
    low, high = percentiles
    return np.asarray(normalize(np.asarray(image, np.float32), low, high, axis=None), np.float32)


def stardist_targets(labels: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """StarDist's training targets of a batch of label patches, as its data generators make them.

    Args:
        labels: (B, *P) integer label patches.
        model: the StarDist model (gives rays, grid, anisotropy).

    Returns:
        prob (B, *P / grid, 1) float32: per object, its EDT normalized to 1 at the centre;
        dist_and_mask (B, *P / grid, n_rays + 1) float32: ray distances, then prob again as
        the mask that weights the distance loss.
    """
    from skimage.segmentation import relabel_sequential

    sd = require_stardist()
    cfg = model.config
    ndim = labels.ndim - 1
    grid = tuple(cfg.grid)
    sub = tuple(slice(0, None, g) for g in grid)
    rays = sd.rays_from_json(cfg.rays_json) if ndim == 3 else None
    probs, dists = [], []
    for lbl in labels:
        # StarDist's C++ code reads labels as uint16: number them 1..N per patch first.
        lbl = np.ascontiguousarray(relabel_sequential(np.asarray(lbl, np.int32))[0])
        if ndim == 2:
            probs.append(sd.edt_prob(lbl[sub]))
            dists.append(sd.star_dist(lbl, cfg.n_rays, grid=grid, mode="cpp"))
        else:
            probs.append(sd.edt_prob(lbl, anisotropy=cfg.anisotropy)[sub])
            dists.append(sd.star_dist3D(lbl, rays, grid=grid, mode="cpp"))
    prob = np.stack(probs).astype(np.float32)[..., None]
    dist = np.stack(dists).astype(np.float32)
    return prob, np.concatenate([dist, prob], axis=-1)
