"""Which files of a folder are the fields to measure, in three layouts, and the real halves.

Layouts: ``images/`` + ``masks/`` (the project's), ``masks/`` alone (a mask-only synthetic
set: no image statistics) and cellpose's ``<name>.tif`` + ``<name>_masks.tif`` in one folder
(what ``nucgen synthesize --layout cellpose`` writes).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

from nucgen_tf import io
from nucgen_tf.eval.evaluate import label_files

_CELLPOSE_SUFFIX = "_masks"


@dataclasses.dataclass(frozen=True)
class Field:
    """One label mask and, if there is one, its image."""

    name: str
    mask_path: pathlib.Path
    image_path: pathlib.Path | None = None


def _cellpose_fields(root: pathlib.Path) -> list[Field]:
    masks = {p.stem[: -len(_CELLPOSE_SUFFIX)]: p for p in root.glob(f"*{_CELLPOSE_SUFFIX}.tif*")}
    fields = []
    for name, mask in sorted(masks.items()):
        image = next((root / f"{name}{s}" for s in io.TIFF_SUFFIXES if (root / f"{name}{s}").is_file()), None)
        if image is None:
            raise io.DataError(mask, f"mask has no image; expected {root / (name + '.tif')}")
        fields.append(Field(name, mask, image))
    return fields


def list_fields(folder: io.PathLike) -> list[Field]:
    """The fields of a folder in name order, in whichever layout it has.

    Raises:
        io.DataError: the folder is missing, holds no masks, or an image lacks its mask
            (or the reverse).
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise io.DataError(root, "folder not found (expected images/ + masks/, masks/, or cellpose files)")
    if (root / "images").is_dir():
        return [Field(p.name, p.mask_path, p.image_path) for p in io.list_pairs(root)]
    if (root / "masks").is_dir():
        return [Field(name, path) for name, path in label_files(root / "masks").items()]
    fields = _cellpose_fields(root)
    if not fields:
        raise io.DataError(root, "no fields: expected images/ + masks/, masks/, or <name>_masks.tif files")
    return fields


def read_field(field: Field) -> tuple[np.ndarray | None, np.ndarray]:
    """(image or None, int32 labels), checked as `io.read_pair` checks them.

    Raises:
        io.DataError: an unreadable file, or image and mask shapes that differ.
    """
    if field.image_path is None:
        return None, io.read_labels(field.mask_path)
    return io.read_pair(io.ImagePair(field.name, field.image_path, field.mask_path))


def halves(fields: Sequence[Field]) -> tuple[list[Field], list[Field]]:
    """Alternate fields by name (even, odd positions): two real sets as alike as chance allows."""
    ordered = sorted(fields, key=lambda f: f.name)
    return ordered[0::2], ordered[1::2]
