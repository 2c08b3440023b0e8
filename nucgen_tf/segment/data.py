"""What every segmenter family shares about data: folders, labelled image sets, scores, label TIFFs.

The U-Net (`segment.training`, `segment.predict`) and StarDist (`segment.stardist`) read the
same folders (images/ + masks/ pairs, `nucgen_tf.io`), score validation sets with the same
pooled `nucgen_tf.eval` figures and write predictions as the same uint16 label TIFFs; they
differ in how they normalize an image and how they turn it into labels, which they pass in.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from absl import logging

from nucgen_tf import eval as nuc_eval
from nucgen_tf import io

PathLike = str | os.PathLike


def _folders(dirs: PathLike | Sequence[PathLike]) -> tuple[PathLike, ...]:
    return (dirs,) if isinstance(dirs, (str, os.PathLike)) else tuple(dirs)


@dataclasses.dataclass(frozen=True)
class Folders:
    """The data folders of one training run (each with images/ and masks/).

    Attributes:
        train: real training folders (at least one); a single folder may be given bare.
        val: validation folder for model selection, or None.
        extra: extra (e.g. synthetic) training folders; a single folder may be given bare.
    """

    train: tuple[PathLike, ...]
    val: PathLike | None = None
    extra: tuple[PathLike, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "train", _folders(self.train))
        object.__setattr__(self, "extra", _folders(self.extra))
        if not self.train:
            raise ValueError("`train_dirs` needs at least one real training folder. Received: train_dirs=[]")

    def record(self) -> dict[str, Any]:
        """The folders as a model's sidecar states them."""
        return {
            "train_dirs": [str(d) for d in self.train],
            "extra_dirs": [str(d) for d in self.extra],
            "val_dir": None if self.val is None else str(self.val),
        }


def list_pairs(dirs: Iterable[PathLike]) -> list[io.ImagePair]:
    """The image/mask pairs of several folders, folder by folder (`io.list_pairs`)."""
    pairs = []
    for folder in dirs:
        pairs.extend(io.list_pairs(folder))
    return pairs


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledImages:
    """Whole images of one or more folders, ready for patch sampling or validation.

    Attributes:
        names: file name stems.
        images: (*spatial) float32 images, normalized as the family trains on them.
        labels: (*spatial) int32 instance labels.
    """

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def read_images(
    pairs: Sequence[io.ImagePair], ndim: int, normalize: Callable[[np.ndarray], np.ndarray]
) -> LabeledImages:
    """Reads every pair (`io.read_pair`, checked for `ndim`) and normalizes its image once."""
    names, images, labels = [], [], []
    for pair in pairs:
        image, truth = io.read_pair(pair, ndim)
        names.append(pair.name)
        images.append(normalize(image))
        labels.append(truth)
    return LabeledImages(names, images, labels)


# Every key of `figures`: a stored score dict without one of them predates it (rescore it).
FIGURE_KEYS = (*nuc_eval.F1_FIGURES, "mean_ap", "n_true", "n_pred", "n_touching")


def figures(scores: nuc_eval.Scores) -> dict[str, Any]:
    """The score dict of pooled (or single-image) `nucgen_tf.eval` scores (keys `FIGURE_KEYS`)."""
    return {key: getattr(scores, key) for key in FIGURE_KEYS}


def pooled_figures(truths: Iterable[np.ndarray], predictions: Iterable[np.ndarray]) -> dict[str, Any]:
    """`figures` of instance labels scored image by image, then pooled over the set."""
    return figures(nuc_eval.pool([nuc_eval.score(t, p) for t, p in zip(truths, predictions)]))


def write_label_folder(
    paths: Sequence[pathlib.Path],
    out_dir: PathLike,
    ndim: int,
    labels_of: Callable[[np.ndarray], np.ndarray],
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Writes `labels_of(image)` of every image as `<out_dir>/<stem>.tif` (uint16, atomic).

    Existing outputs are skipped unless `overwrite`, so an interrupted run resumes.

    Returns:
        The written (or already present) label files, in the order of `paths`.
    """
    out_dir = pathlib.Path(out_dir)
    written = []
    for path in paths:
        target = out_dir / f"{path.stem}.tif"
        if target.exists() and not overwrite:
            logging.info("%s exists, skipped", target)
        else:
            labels = labels_of(io.read_image(path, ndim))
            io.write_labels(target, labels)
            logging.info("%s: %d nuclei -> %s", path.name, int(labels.max(initial=0)), target)
        written.append(target)
    return written
