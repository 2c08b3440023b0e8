"""Tiled prediction with a trained segmenter: probabilities, instance labels, label TIFFs.

A model folder (written by `segment.training.train_segmenter`) holds `segmenter.keras` (the
float32 network) and `segmenter.json` (its configs and the training set's intensity
statistics). An image is normalized exactly as in training (per-image percentiles, the
stretch bounded by the training statistics), reflect-padded to a multiple of the network's
total stride, and predicted in one pass or, when larger than `tile_shape`, in aligned
overlapping tiles: each tile is predicted with `margin` pixels of context on every side
and only its centre is kept, so no tile border (where zero padding makes the network
unreliable) reaches the output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import keras
import numpy as np

from nucgen_tf import io
from nucgen_tf.config import from_dict
from nucgen_tf.data import normalize as nz
from nucgen_tf.models import segmenters
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment.config import InstanceConfig, SegmentTrainConfig
from nucgen_tf.segment.instances import instances_from_probabilities

MODEL_FILE = "segmenter.keras"
SIDECAR_FILE = "segmenter.json"

# Largest tile (per axis, before margins) predicted in one pass, by ndim.
DEFAULT_TILE = {2: 1024, 3: 128}
DEFAULT_MARGIN = 32


@dataclasses.dataclass(frozen=True, eq=False)
class Segmenter:
    """A loaded segmenter: network, configs and normalization statistics.

    Attributes:
        model: float32 Keras model, (B, *spatial, 1) -> (B, *spatial, 3).
        config: the training config (network, post-processing, normalization).
        stats: intensity statistics of the real training images.
        meta: the whole sidecar (steps, validation scores, ...).
    """

    model: keras.Model
    config: SegmentTrainConfig
    stats: nz.IntensityStats
    meta: dict

    @property
    def ndim(self) -> int:
        return self.config.ndim

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Raw image -> float32 in [-1, 1], as in training."""
        lo, hi = nz.image_range(image, self.stats, self.config.norm)
        return nz.normalize(image, lo, hi)

    def probabilities(
        self, image: np.ndarray, tile_shape: int | Sequence[int] | None = None, margin: int | None = None
    ) -> np.ndarray:
        """(*spatial, 3) class probabilities of a raw image of any size."""
        return predict_probabilities(
            self.model,
            self.normalize(_check_image(image, self.ndim)),
            self.config.network,
            tile_shape,
            margin,
        )

    def instances(
        self,
        image: np.ndarray,
        instances: InstanceConfig | None = None,
        tile_shape: int | Sequence[int] | None = None,
        margin: int | None = None,
    ) -> np.ndarray:
        """(*spatial) int32 instance labels of a raw image (saved post-processing by default)."""
        probs = self.probabilities(image, tile_shape, margin)
        return instances_from_probabilities(probs, instances or self.config.instances)


def _check_image(image: np.ndarray, ndim: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != ndim:
        raise ValueError(
            f"This segmenter is {ndim}D; the image must have {ndim} axes. Received: shape={image.shape}"
        )
    if min(image.shape) < 1:
        raise ValueError(f"The image is empty. Received: shape={image.shape}")
    return image


def load_segmenter(model_dir: str | os.PathLike) -> Segmenter:
    """Loads `segmenter.keras` (safe mode) and `segmenter.json` from a model folder.

    Raises:
        nucgen_tf.io.DataError: a file is missing or unreadable.
    """
    model_dir = pathlib.Path(model_dir)
    model_path, sidecar_path = model_dir / MODEL_FILE, model_dir / SIDECAR_FILE
    for path in (model_path, sidecar_path):
        if not path.is_file():
            raise io.DataError(path, f"not found; {model_dir} must hold {MODEL_FILE} and {SIDECAR_FILE}")
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
        config = from_dict(SegmentTrainConfig, meta["config"])
        stats = nz.IntensityStats.from_dict(meta["intensity_stats"])
    except (ValueError, KeyError, TypeError) as err:
        raise io.DataError(sidecar_path, f"not a segmenter sidecar ({type(err).__name__}: {err})") from err
    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types on a corrupt archive; all mean "unusable".
        raise io.DataError(model_path, f"cannot load the model ({type(err).__name__}: {err})") from err
    return Segmenter(model=model, config=config, stats=stats, meta=meta)


def _per_axis(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    values = (int(value),) * ndim if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(values) != ndim or min(values) < 0:
        raise ValueError(f"`{name}` needs {ndim} non-negative sizes. Received: {name}={value!r}")
    return values


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_mode(shape: Sequence[int], pads: Sequence[tuple[int, int]]) -> str:
    # "reflect" needs pad < size on each axis; "symmetric" allows pad <= size; "edge" always works.
    if all(after < size for size, (_, after) in zip(shape, pads)):
        return "reflect"
    if all(after <= size for size, (_, after) in zip(shape, pads)):
        return "symmetric"
    return "edge"


def _windows(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(window start, window stop, core start, core stop) along one axis of a padded size."""
    if size <= tile:
        return [(0, size, 0, size)]
    out = []
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        out.append((max(start - margin, 0), min(stop + margin, size), start, stop))
    return out


def predict_probabilities(
    model: keras.Model,
    image: np.ndarray,
    network: segmenters.SegmenterConfig,
    tile_shape: int | Sequence[int] | None = None,
    margin: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Class probabilities of a normalized image of any size, by aligned overlapping tiles.

    Args:
        model: segmenter, (B, *spatial, 1) -> (B, *spatial, 3).
        image: (*spatial) float32 normalized image in [-1, 1].
        network: the model's architecture (gives the size multiple).
        tile_shape: largest core tile per axis predicted at once (rounded up to the size
            multiple); default `DEFAULT_TILE[ndim]`. Images no larger are predicted whole.
        margin: context added on each side of a tile (rounded up to the size multiple, so
            that every window is aligned with the network's pooling grid and the tiles
            agree with a whole-image pass); default `DEFAULT_MARGIN`.

    Returns:
        (*spatial, 3) float32 probabilities of the input's shape.
    """
    image = np.asarray(image, np.float32)
    ndim = image.ndim
    if ndim not in (2, 3):
        raise ValueError(f"`image` must be 2D or 3D. Received: shape={image.shape}")
    multiple = segmenters.size_multiple(ndim, network)
    tiles = _per_axis(DEFAULT_TILE[ndim] if tile_shape is None else tile_shape, ndim, "tile_shape")
    margins = _per_axis(DEFAULT_MARGIN if margin is None else margin, ndim, "margin")
    tiles = tuple(max(_round_up(t, m), m) for t, m in zip(tiles, multiple))
    margins = tuple(_round_up(g, m) for g, m in zip(margins, multiple))

    padded_shape = tuple(_round_up(s, m) for s, m in zip(image.shape, multiple))
    pads = [(0, p - s) for s, p in zip(image.shape, padded_shape)]
    padded = np.pad(image, pads, mode=_pad_mode(image.shape, pads)) if any(a for _, a in pads) else image

    out = np.zeros(padded_shape + (3,), np.float32)
    per_axis = [_windows(s, t, g) for s, t, g in zip(padded_shape, tiles, margins)]
    for combo in np.ndindex(*(len(w) for w in per_axis)):
        parts = [per_axis[axis][i] for axis, i in enumerate(combo)]
        window = tuple(slice(w0, w1) for w0, w1, _, _ in parts)
        core_out = tuple(slice(c0, c1) for _, _, c0, c1 in parts)
        core_in = tuple(slice(c0 - w0, c1 - w0) for w0, _, c0, c1 in parts)
        x = padded[window][None, ..., None]
        probs = np.asarray(model(x, training=False))[0]
        out[core_out] = probs[core_in]
    return out[tuple(slice(0, s) for s in image.shape)]


def predict_instances(
    model_dir: str | os.PathLike | Segmenter,
    image: np.ndarray,
    instances: InstanceConfig | None = None,
    tile_shape: int | Sequence[int] | None = None,
    margin: int | None = None,
) -> np.ndarray:
    """Instance labels of one raw image.

    Args:
        model_dir: a model folder (see module docstring) or an already loaded `Segmenter`.
        image: (*spatial) raw image of any size and numeric dtype.
        instances: post-processing; default the one saved with the model.
        tile_shape, margin: see `predict_probabilities`.

    Returns:
        (*spatial) int32 labels, 0 = background.
    """
    segmenter = model_dir if isinstance(model_dir, Segmenter) else load_segmenter(model_dir)
    return segmenter.instances(image, instances, tile_shape, margin)


def predict_folder(
    model_dir: str | os.PathLike | Segmenter,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    instances: InstanceConfig | None = None,
    tile_shape: int | Sequence[int] | None = None,
    margin: int | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Predicts every TIFF of a folder and writes uint16 label TIFFs of the same names.

    `images_dir` may be a folder of TIFFs or a data folder holding `images/`. Outputs are
    written atomically; existing outputs are skipped unless `overwrite`, so an interrupted
    run resumes.

    Returns:
        The written (or already present) label files, in name order.

    Raises:
        nucgen_tf.io.DataError: the folder holds no TIFF, or an image is unreadable.
    """
    paths = io.list_images(images_dir)
    segmenter = model_dir if isinstance(model_dir, Segmenter) else load_segmenter(model_dir)

    def labels_of(image: np.ndarray) -> np.ndarray:
        return segmenter.instances(image, instances, tile_shape, margin)

    return seg_data.write_label_folder(paths, out_dir, segmenter.ndim, labels_of, overwrite)
