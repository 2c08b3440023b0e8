"""One protocol for every segmenter family, and the registry that callers look families up in.

The experiment runner and `nucgen segment` train, load and predict with whichever family a
config names, without branching on the name: every config class states its family (a
`family` class attribute: "unet" for `SegmentTrainConfig`, "stardist" for
`StardistTrainConfig`) and `FAMILIES[config.family]` does the rest. A model folder is
recognized by its family's sidecar file (`family_of_folder`).

    >>> from nucgen_tf.segment import family as seg_family
    >>> unet = seg_family.FAMILIES[config.family]                                   # doctest: +SKIP
    >>> trained = unet.train(config, Folders(["bbbc039/train"], "bbbc039/val"), "runs/seg")  # doctest: +SKIP
    >>> trained.val_scores["instance_f1"]                                           # doctest: +SKIP
    >>> unet.predict_folder(unet.load(trained.model_dir), "bbbc039/test", "runs/seg/pred")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import types
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nucgen_tf.segment import config as unet_config
from nucgen_tf.segment import predict as unet_predict
from nucgen_tf.segment import stardist
from nucgen_tf.segment import training as unet_training
from nucgen_tf.segment.data import Folders, PathLike
from nucgen_tf.segment.stardist import config as stardist_config
from nucgen_tf.segment.stardist import loop as stardist_loop


class LoadedSegmenter(Protocol):
    """What every family's `load` returns: a model ready to predict, with its config and sidecar."""

    config: Any
    meta: dict

    @property
    def ndim(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class Trained:
    """A finished training run: its model folder and the sidecar of the model it kept.

    Attributes:
        model_dir: what the family's `load` reads.
        meta: the kept model's sidecar (configs, step, validation scores, ...).
    """

    model_dir: pathlib.Path
    meta: dict

    @property
    def val_scores(self) -> dict:
        """Validation scores of the kept model ({} without a validation folder)."""
        return self.meta.get("val_scores", {})

    @property
    def step(self) -> int | None:
        """Training step of the kept model."""
        return self.meta.get("step")


class SegmenterFamily(Protocol):
    """A segmenter family: trains on `Folders`, loads what it trained, writes label TIFFs.

    Attributes:
        name: the key in `FAMILIES`, equal to its configs' `family`.
        config_type: its training config class.
        sidecar: the file of a model folder that holds the model's metadata and marks the
            folder as this family's.
    """

    name: str
    config_type: type
    sidecar: str

    def train(self, config: Any, folders: Folders, out_dir: PathLike) -> Trained:
        """Trains (or resumes, or finds finished) a run in `out_dir`; keeps the best model."""
        ...

    def load(self, model_dir: PathLike) -> LoadedSegmenter:
        """Loads a trained model folder (raises `io.DataError` when it is unusable)."""
        ...

    def predict_folder(
        self, segmenter: LoadedSegmenter | PathLike, images_dir: PathLike, out_dir: PathLike, **options: Any
    ) -> list[pathlib.Path]:
        """Writes a uint16 label TIFF per image; `options` are the family's own (and `overwrite`)."""
        ...

    def model_name(self, config: Any) -> str:
        """The report's "Model" cell of a config."""
        ...


@dataclasses.dataclass(frozen=True)
class Family:
    """A `SegmenterFamily` made of its modules' functions (one row of `FAMILIES`).

    Attributes:
        config_type: its training config class; its `family` is the family's name.
        sidecar: see `SegmenterFamily`.
        train_fn: (config, folders, out_dir) -> model folder.
        load_fn: model folder -> loaded segmenter.
        predict_folder_fn: (segmenter or folder, images_dir, out_dir, **options) -> label files.
        model_name_fn: config -> the report's "Model" cell.
    """

    config_type: type
    sidecar: str
    train_fn: Callable[[Any, Folders, PathLike], pathlib.Path]
    load_fn: Callable[[PathLike], LoadedSegmenter]
    predict_folder_fn: Callable[..., list[pathlib.Path]]
    model_name_fn: Callable[[Any], str]

    @property
    def name(self) -> str:
        return self.config_type.family

    def train(self, config: Any, folders: Folders, out_dir: PathLike) -> Trained:
        if not isinstance(config, self.config_type):
            raise ValueError(
                f"The {self.name} family trains with a {self.config_type.__name__}. "
                f"Received: config={type(config).__name__}"
            )
        model_dir = pathlib.Path(self.train_fn(config, folders, out_dir))
        meta = json.loads((model_dir / self.sidecar).read_text(encoding="utf-8"))
        return Trained(model_dir, meta)

    def load(self, model_dir: PathLike) -> LoadedSegmenter:
        return self.load_fn(model_dir)

    def predict_folder(
        self, segmenter: LoadedSegmenter | PathLike, images_dir: PathLike, out_dir: PathLike, **options: Any
    ) -> list[pathlib.Path]:
        return self.predict_folder_fn(segmenter, images_dir, out_dir, **options)

    def model_name(self, config: Any) -> str:
        return self.model_name_fn(config)


def _registry(*families: Family) -> Mapping[str, SegmenterFamily]:
    return types.MappingProxyType({family.name: family for family in families})


# Rows: config class, sidecar, train, load, predict_folder, model name.
FAMILIES = _registry(
    Family(unet_config.SegmentTrainConfig, unet_predict.SIDECAR_FILE, unet_training.train,
           unet_predict.load_segmenter, unet_predict.predict_folder, unet_config.model_name),
    Family(stardist_config.StardistTrainConfig, stardist_config.META_FILE, stardist_loop.train,
           stardist.load_stardist, stardist.predict_folder, stardist_config.model_name),
)  # fmt: skip
# The family of a folder without another family's sidecar (its loader names what is missing).
DEFAULT_FAMILY = "unet"


def family_of(config: Any) -> SegmenterFamily:
    """The family of a training config (by its `family` class attribute)."""
    return FAMILIES[config.family]


def family_of_folder(model_dir: PathLike) -> SegmenterFamily:
    """The family whose sidecar a model folder holds; the default family's when no other's."""
    model_dir = pathlib.Path(model_dir)
    for family in FAMILIES.values():
        if family.name != DEFAULT_FAMILY and (model_dir / family.sidecar).is_file():
            return family
    return FAMILIES[DEFAULT_FAMILY]


def evaluate_segmenter(segmenter: LoadedSegmenter, folder: PathLike, pred_dir: PathLike) -> dict:
    """Predicts every image of a data folder and scores the labels pooled over the images
    (the experiment's cells and TSTR score segmenters this one way)."""
    from nucgen_tf.eval import pool
    from nucgen_tf.eval.evaluate import evaluate_folders
    from nucgen_tf.segment import data as seg_data

    family_of(segmenter.config).predict_folder(segmenter, folder, pred_dir)
    pooled = pool(evaluate_folders(pred_dir, folder, ndim=segmenter.ndim).values())
    return {**seg_data.figures(pooled), "n_images": pooled.n_images, "pooled": pooled.to_dict()}
