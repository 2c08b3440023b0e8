"""Measure fields: (image or None, labels) pairs -> per-statistic 1-D arrays pooled over fields.

Pooling per nucleus (not per field) gives a crowded field more weight, as it has in a
segmenter's training loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from nucgen_tf import io
from nucgen_tf.realism import fields as fields_lib
from nucgen_tf.realism.intensity import IMAGE_STATISTICS, image_statistics
from nucgen_tf.realism.shapes import MASK_STATISTICS, mask_statistics

STATISTICS: dict[str, str] = {**MASK_STATISTICS, **IMAGE_STATISTICS}


@dataclasses.dataclass(frozen=True)
class Measurements:
    """Per-statistic values pooled over fields.

    Attributes:
        values: statistic name -> 1-D float64 array (per nucleus, per field or per clump, see
            `STATISTICS`); image statistics are absent when no field had an image.
        n_fields: fields measured.
        ndim: spatial rank of the fields (2 or 3).
    """

    values: Mapping[str, np.ndarray]
    n_fields: int
    ndim: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    @classmethod
    def concat(cls, parts: Sequence[Measurements]) -> Measurements:
        """Pools several measurements (e.g. the two real halves back into the whole)."""
        if not parts:
            raise ValueError("`parts` must not be empty.")
        ndims = {p.ndim for p in parts}
        if len(ndims) > 1:
            raise ValueError(f"Measurements of different ranks cannot be pooled. Received: ndims={ndims}")
        names = [n for n in STATISTICS if any(n in p.values for p in parts)]
        values = {n: np.concatenate([p.values.get(n, np.zeros(0)) for p in parts]) for n in names}
        return cls(values, sum(p.n_fields for p in parts), ndims.pop())


def _check(image: np.ndarray | None, labels: np.ndarray, index: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(
            f"Labels must be (Y, X) or (Z, Y, X). Received: shape={labels.shape} (field {index})"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"Labels must be integers >= 0. Received: dtype={labels.dtype} (field {index})")
    if image is not None and np.shape(image) != labels.shape:
        raise ValueError(
            f"Image and labels must have the same shape. Received: {np.shape(image)} and {labels.shape} "
            f"(field {index})"
        )
    return labels.astype(np.int32, copy=False)


def measure(
    pairs: Iterable[tuple[np.ndarray | None, np.ndarray]],
    small_area: float = 150.0,
    background_margin: float = 3.0,
) -> Measurements:
    """Measures every statistic of `STATISTICS` over in-memory fields.

    Args:
        pairs: `(image or None, labels)` per field; labels are integer instance masks
            (0 = background), `(Y, X)` or `(Z, Y, X)`, all of one rank.
        small_area: nuclei below this many pixels (voxels) count as "small".
        background_margin: background pixels closer than this to a nucleus are ignored.

    Raises:
        ValueError: no field, mixed ranks, non-integer labels, or an image whose shape
            differs from its labels.
    """
    collected: dict[str, list[np.ndarray]] = {name: [] for name in STATISTICS}
    n_fields, ndims, any_image = 0, set(), False
    for index, (image, labels) in enumerate(pairs):
        labels = _check(image, labels, index)
        ndims.add(labels.ndim)
        field = mask_statistics(labels, small_area)
        if image is not None:
            any_image = True
            field.update(image_statistics(image, labels, background_margin))
        for name, values in field.items():
            collected[name].append(values[np.isfinite(values)])
        n_fields += 1
    if not n_fields:
        raise ValueError("`pairs` must hold at least one (image, labels) field.")
    if len(ndims) > 1:
        raise ValueError(f"All fields must have one rank. Received: ndims={sorted(ndims)}")
    names = [n for n in STATISTICS if n in MASK_STATISTICS or any_image]
    values = {n: np.concatenate(collected[n]) if collected[n] else np.zeros(0) for n in names}
    return Measurements(values, n_fields, ndims.pop())


def measure_fields(fields: Sequence[fields_lib.Field], **kwargs) -> Measurements:
    """`measure` over fields listed by `fields.list_fields`, read one at a time.

    Raises:
        io.DataError: a bad file, mixed ranks or shapes (naming the file).
    """

    def read():
        for field in fields:
            yield fields_lib.read_field(field)

    try:
        return measure(read(), **kwargs)
    except ValueError as error:
        if isinstance(error, io.DataError) or not fields:
            raise
        raise io.DataError(fields[0].mask_path.parent, str(error)) from error


def measure_folder(
    folder: io.PathLike, small_area: float = 150.0, background_margin: float = 3.0
) -> Measurements:
    """`measure` over a folder (images/ + masks/, masks/ only, or cellpose layout).

    Raises:
        io.DataError: a missing folder, no masks, a bad file, mismatched shapes.
    """
    fields = fields_lib.list_fields(folder)
    return measure_fields(fields, small_area=small_area, background_margin=background_margin)
