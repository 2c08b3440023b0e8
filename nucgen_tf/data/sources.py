"""In-memory training sources: normalized images, labels and per-image color tables.

Everything that needs the whole image happens here, once per file: reading and
validation (`nucgen_tf.io`), intensity normalization bounded by data-set statistics
(`normalize`), and the graph coloring of the nuclei. Coloring the whole image rather than
each patch keeps a nucleus' color the same in every patch that shows it, and keeps
neighbours that a patch border cuts apart from sharing a color.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from nucgen_tf import geometry, io
from nucgen_tf.config import NormConfig, RenderConfig
from nucgen_tf.data import normalize as nz


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One training image, ready for patch sampling.

    Attributes:
        name: the file name stem.
        image: (*spatial) float32 in [-1, 1], normalized with `norm_range`.
        labels: (*spatial) int32 instance labels, 0 = background, 1..N.
        lut: (N + 1,) int32 palette index per label id (-1 for background and absent ids).
        norm_range: (lo, hi), the raw intensities mapped to -1 and +1 (see `normalize`).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    lut: np.ndarray
    norm_range: tuple[float, float]

    @property
    def ndim(self) -> int:
        return self.image.ndim


def resolve_pairs(
    source: str | os.PathLike | Sequence[io.ImagePair], max_files: int | None = None
) -> list[io.ImagePair]:
    """The image pairs of a data folder (sorted by name), or the given pairs.

    Args:
        source: a folder with images/ and masks/, or a sequence of `io.ImagePair`.
        max_files: keep only the first `max_files` pairs (e.g. for fast tests).
    """
    if isinstance(source, (str, os.PathLike)):
        pairs = io.list_pairs(source)
    else:
        pairs = list(source)
        if not all(isinstance(p, io.ImagePair) for p in pairs):
            raise ValueError(
                "`source` must be a folder or a sequence of nucgen_tf.io.ImagePair. "
                f"Received: {[type(p).__name__ for p in pairs][:5]}"
            )
    if max_files is not None:
        if max_files < 1:
            raise ValueError(f"`max_files` must be >= 1. Received: max_files={max_files}")
        pairs = pairs[:max_files]
    if not pairs:
        raise ValueError(f"No image pairs to load. Received: source={source!r}")
    return pairs


def load_arrays(
    source: str | os.PathLike | Sequence[io.ImagePair],
    ndim: int,
    norm: NormConfig,
    render: RenderConfig,
    stats: nz.IntensityStats | None = None,
    max_files: int | None = None,
    color_seed: int | None = None,
) -> tuple[list[Sample], nz.IntensityStats]:
    """Reads, normalizes and colors every image of a data set.

    Args:
        source: a folder with images/ and masks/, or a sequence of `io.ImagePair`.
        ndim: spatial rank every file must have (2 or 3).
        norm: percentile normalization settings.
        render: representation settings (`color_margin` is used here).
        stats: training-set intensity statistics; computed from these files when None
            (pass the training set's statistics when loading validation data).
        max_files: read only the first `max_files` pairs (sorted by name).
        color_seed: when given, each image's color classes map to a random choice of
            palette entries (seeded by (color_seed, file index)); when None, classes 0, 1,
            ... map to palette rows 0, 1, ... in every image.

    Returns:
        (samples, stats): one `Sample` per file, in name order, and the statistics used.

    Raises:
        nucgen_tf.io.DataError: a file is missing, unreadable or inconsistent.
    """
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim}")
    pairs = resolve_pairs(source, max_files)
    raw = [io.read_pair(pair, ndim) for pair in pairs]
    if stats is None:
        stats = nz.dataset_intensity_stats((image for image, _ in raw), norm)
    samples = []
    for index, (pair, (image, labels)) in enumerate(zip(pairs, raw)):
        lo, hi = nz.image_range(image, stats, norm)
        rng = None if color_seed is None else np.random.default_rng([color_seed % 2**63, index])
        samples.append(
            Sample(
                name=pair.name,
                image=nz.normalize(image, lo, hi),
                labels=labels.astype(np.int32, copy=False),
                lut=geometry.color_labels(labels, render.color_margin, rng, oriented=render.oriented),
                norm_range=(lo, hi),
            )
        )
    logging.info(
        "Loaded %d %dD samples (%d nuclei) from %s; intensity stats %s",
        len(samples),
        ndim,
        sum(len(s.lut) - 1 for s in samples),
        pairs[0].image_path.parent.parent,
        stats.to_dict(),
    )
    return samples, stats
