"""Loading a trained StarDist folder and predicting instance labels with it.

Images are normalized as in training and predicted whole up to `DEFAULT_TILE` per axis,
in StarDist's tiles beyond; labels are renumbered 1..N.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nucgen_tf import io
from nucgen_tf.config import from_dict
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment.data import LabeledImages, PathLike
from nucgen_tf.segment.stardist.config import (
    DEFAULT_THRESHOLDS,
    DEFAULT_TILE,
    META_FILE,
    MODEL_NAME,
    WEIGHTS_FILE,
    StardistTrainConfig,
)
from nucgen_tf.segment.stardist.network import model_class, normalize_image, quiet


def n_tiles_of(shape: Sequence[int], ndim: int) -> tuple[int, ...] | None:
    """StarDist's `n_tiles` for an image of `shape`: None when it fits `DEFAULT_TILE`."""
    tiles = tuple(max(1, math.ceil(s / DEFAULT_TILE[ndim])) for s in shape)
    return None if all(t == 1 for t in tiles) else tiles


def predict_labels(model, normalized: np.ndarray, prob: float, nms: float, n_tiles=None) -> np.ndarray:
    """Instance labels of a normalized image (int32, 0 = background, 1..N)."""
    from skimage.segmentation import relabel_sequential

    tiles = n_tiles if n_tiles is not None else n_tiles_of(normalized.shape, normalized.ndim)
    with quiet():
        labels, _ = model.predict_instances(
            normalized, prob_thresh=prob, nms_thresh=nms, n_tiles=tiles, show_tile_progress=False
        )
    return relabel_sequential(np.asarray(labels, np.int32))[0].astype(np.int32, copy=False)


def validate(model, val: LabeledImages, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Pooled `nucgen_tf.eval` scores of whole validation images at the given thresholds."""
    prob, nms = thresholds["prob"], thresholds["nms"]
    predictions = (predict_labels(model, image, prob, nms) for image in val.images)
    return seg_data.pooled_figures(val.labels, predictions)


@dataclasses.dataclass(frozen=True, eq=False)
class StardistSegmenter:
    """A loaded StarDist segmenter.

    Attributes:
        model: the `StarDist2D` / `StarDist3D` with its best weights.
        config: the training config.
        meta: the whole `stardist.json` (step, validation scores, thresholds, ...).
        thresholds: {"prob", "nms"} used by default.
    """

    model: Any
    config: StardistTrainConfig
    meta: dict
    thresholds: dict

    @property
    def ndim(self) -> int:
        return self.config.ndim

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Raw image -> float32, as in training."""
        return normalize_image(image, self.config.percentiles)

    def instances(
        self,
        image: np.ndarray,
        prob_thresh: float | None = None,
        nms_thresh: float | None = None,
        n_tiles: Sequence[int] | None = None,
    ) -> np.ndarray:
        """(*spatial) int32 labels of a raw image (saved thresholds by default)."""
        image = np.asarray(image)
        if image.ndim != self.ndim or min(image.shape) < 1:
            raise ValueError(
                f"This segmenter is {self.ndim}D; the image must have {self.ndim} non-empty axes. "
                f"Received: shape={image.shape}"
            )
        prob = self.thresholds["prob"] if prob_thresh is None else prob_thresh
        nms = self.thresholds["nms"] if nms_thresh is None else nms_thresh
        return predict_labels(self.model, self.normalize(image), prob, nms, n_tiles)


def load_stardist(model_dir: PathLike) -> StardistSegmenter:
    """Loads a folder written by `train_stardist` (its `model/` and `stardist.json`).

    Raises:
        nucgen_tf.io.DataError: a file is missing or unusable.
        ImportError: stardist is not installed.
    """
    model_dir = pathlib.Path(model_dir)
    meta_path = model_dir / META_FILE
    weights = model_dir / MODEL_NAME / WEIGHTS_FILE
    for path in (meta_path, weights, model_dir / MODEL_NAME / "config.json"):
        if not path.is_file():
            raise io.DataError(
                path, f"not found; {model_dir} must hold {META_FILE} and a trained {MODEL_NAME}/"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = from_dict(StardistTrainConfig, meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise io.DataError(meta_path, f"not a StarDist sidecar ({type(err).__name__}: {err})") from err
    thresholds = dict(meta.get("thresholds") or DEFAULT_THRESHOLDS)
    try:
        with quiet():
            model = model_class(config.ndim)(None, name=MODEL_NAME, basedir=str(model_dir))
            model.keras_model.load_weights(str(weights))
    except ImportError:
        raise
    except Exception as err:  # csbdeep/Keras raise many types on a corrupt folder; all mean "unusable".
        raise io.DataError(weights, f"cannot load the StarDist model ({type(err).__name__}: {err})") from err
    return StardistSegmenter(model=model, config=config, meta=meta, thresholds=thresholds)


def _segmenter(model: PathLike | StardistSegmenter) -> StardistSegmenter:
    return model if isinstance(model, StardistSegmenter) else load_stardist(model)


def predict_instances(
    model: PathLike | StardistSegmenter,
    image: np.ndarray,
    prob_thresh: float | None = None,
    nms_thresh: float | None = None,
    n_tiles: Sequence[int] | None = None,
) -> np.ndarray:
    """Instance labels of one raw image.

    Args:
        model: a model folder or an already loaded `StardistSegmenter`.
        image: (*spatial) raw image of any size and numeric dtype.
        prob_thresh, nms_thresh: StarDist's thresholds; default the ones saved with the model.
        n_tiles: tiles per axis; default whole images up to `DEFAULT_TILE` per axis.

    Returns:
        (*spatial) int32 labels, 0 = background, 1..N.
    """
    return _segmenter(model).instances(image, prob_thresh, nms_thresh, n_tiles)


def predict_folder(
    model: PathLike | StardistSegmenter,
    images_dir: PathLike,
    out_dir: PathLike,
    prob_thresh: float | None = None,
    nms_thresh: float | None = None,
    n_tiles: Sequence[int] | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Predicts every TIFF of a folder and writes uint16 label TIFFs of the same names.

    As `segment.predict.predict_folder`: `images_dir` may be a folder of TIFFs or a data
    folder holding `images/`; outputs `<out_dir>/<stem>.tif` are written atomically and
    existing ones are skipped unless `overwrite`, so an interrupted run resumes.

    Returns:
        The written (or already present) label files, in name order.

    Raises:
        nucgen_tf.io.DataError: the folder holds no TIFF, or an image is unreadable.
    """
    paths = io.list_images(images_dir)
    segmenter = _segmenter(model)

    def labels_of(image: np.ndarray) -> np.ndarray:
        return segmenter.instances(image, prob_thresh, nms_thresh, n_tiles)

    return seg_data.write_label_folder(paths, out_dir, segmenter.ndim, labels_of, overwrite)
