"""The manifest of an exported generator and the files that make an export; no TensorFlow.

Synthesis checks every manifest before it loads any network, so that a wrong folder is
reported before TensorFlow starts; hence nothing here imports it.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from nucgen_tf.io import DataError

MANIFEST = "nucgen_manifest.json"
WEIGHTS = "weights.npz"  # the compact form's float16 weights (see `generator.compact_export`)
SAVED_MODEL_PARTS = ("saved_model.pb", "variables/variables.index")
NOT_AN_EXPORT = "not an exported generator (a folder written by `nucgen train`)"


def write_manifest(directory: str | pathlib.Path, manifest: Mapping[str, Any]) -> pathlib.Path:
    """Write `manifest` into the export folder `directory` (sorted keys, non-JSON values as str)."""
    path = pathlib.Path(directory) / MANIFEST
    path.write_text(json.dumps(dict(manifest), indent=2, sort_keys=True, default=str))
    return path


def read_manifest(directory: str | pathlib.Path, missing: str = NOT_AN_EXPORT) -> dict:
    """The manifest of the export in `directory`, unchecked.

    Args:
        directory: the export folder.
        missing: ends the message when the folder or its manifest is missing.

    Raises:
        DataError: no such folder, no manifest in it, or an unreadable one.
    """
    path = pathlib.Path(directory)
    if not (path / MANIFEST).is_file():
        what = "folder not found" if not path.is_dir() else f"no {MANIFEST}"
        raise DataError(path, f"{what}; {missing}")
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(path / MANIFEST, f"unreadable manifest ({err})") from err


def check_manifest(
    path: pathlib.Path, manifest: Mapping[str, Any], stage: int | str, channels: tuple[int, int]
) -> tuple[int, tuple[int, ...]]:
    """(ndim, divisor) of a manifest used as `stage`, mapping `channels` = (in, out).

    Raises:
        DataError: it records another stage, or its ndim, channels or divisor do not fit.
    """
    recorded = manifest.get("stage")
    if recorded is not None and str(recorded) != str(stage):
        raise DataError(path, f"manifest says stage {recorded}, but the folder is used as stage {stage}")
    ndim = manifest.get("ndim")
    if ndim not in (2, 3):
        raise DataError(path, f"manifest `ndim` must be 2 or 3, got {ndim!r}")
    found = (manifest.get("input", {}).get("channels"), manifest.get("output", {}).get("channels"))
    if found != tuple(channels):
        raise DataError(
            path,
            f"stage {stage} must map {channels[0]} -> {channels[1]} channels, "
            f"its manifest says {found[0]} -> {found[1]}",
        )
    divisor = manifest.get("divisor")
    if not isinstance(divisor, list) or len(divisor) != ndim or any(int(d) < 1 for d in divisor):
        raise DataError(path, f"manifest `divisor` must be {ndim} positive ints, got {divisor!r}")
    return ndim, tuple(int(d) for d in divisor)


def is_compact(directory: str | pathlib.Path) -> bool:
    """Whether the export holds compact weights (rebuilt from the manifest) rather than a SavedModel."""
    return (pathlib.Path(directory) / WEIGHTS).is_file()


def content_hash(directory: str | pathlib.Path) -> str:
    """sha256 of a SavedModel's graph (`saved_model.pb`) and weight index (`variables.index`),
    or of a compact export's `weights.npz` and manifest.

    The index stores a checksum of every variable's bytes, so the hash changes with any
    weight while reading only two small files.
    """
    directory = pathlib.Path(directory)
    digest = hashlib.sha256()
    parts = (WEIGHTS, MANIFEST) if is_compact(directory) else SAVED_MODEL_PARTS
    for part in parts:
        path = directory / part
        if not path.is_file():
            raise DataError(path, f"missing; {directory} is not a complete SavedModel export")
        digest.update(part.encode())
        digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()
