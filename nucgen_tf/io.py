"""Validated TIFF I/O for images and instance masks, and atomic writers for every output file.

Every reader checks what later code silently relies on (dimensions, dtype, finite values,
integer labels 1..N) and fails with a :class:`DataError` whose message starts with the file
path, so a bad file in a folder of hundreds is found at once. Every writer goes through
:func:`atomic_path`: a crash mid-write leaves either the old file or no file, never a truncated
one, which is what lets recipes and trainers resume by skipping files that already exist.

Arrays are ``(Y, X)`` or ``(Z, Y, X)``; label masks come back as int32 with 0 = background.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tifffile
from absl import logging

PathLike = str | os.PathLike

TIFF_SUFFIXES = (".tif", ".tiff")
_INT32_MAX = np.iinfo(np.int32).max
_DEFAULT_AXES = {2: "YX", 3: "ZYX"}


class DataError(ValueError):
    """A file that cannot be used as it is; the message starts with the file's path.

    Attributes:
        path: the offending file or folder.
        problem: the message without the path prefix.
    """

    def __init__(self, path: PathLike, problem: str):
        self.path = pathlib.Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # The default pickling would call DataError(message) and lose `path`; tf.data workers
        # and multiprocessing pools pickle exceptions to send them back.
        return (type(self), (self.path, self.problem))


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """An image and its instance mask, which share a file name stem.

    Attributes:
        name: the shared stem, e.g. ``"IXMtest_A02_s1_w1..."``.
        image_path: ``<root>/images/<name>.tif``.
        mask_path: ``<root>/masks/<name>.tif``.
    """

    name: str
    image_path: pathlib.Path
    mask_path: pathlib.Path


def _check_ndim_arg(ndim: int | None) -> None:
    if ndim is not None and ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2, 3 or None. Received: ndim={ndim}")


def _squeeze_to(array: np.ndarray, allowed: tuple[int, ...]) -> np.ndarray | None:
    """Drops one singleton leading or trailing axis if that makes the rank allowed."""
    if array.ndim in allowed:
        return array
    if array.ndim - 1 in allowed:
        if array.shape[0] == 1:
            return array[0]
        if array.shape[-1] == 1:
            return array[..., 0]
    return None


def read_image(path: PathLike, ndim: int | None = None) -> np.ndarray:
    """Reads a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` TIFF image in its native numeric dtype.

    A singleton leading or trailing axis (``(1, Y, X)``, ``(Y, X, 1)``) is dropped when that
    gives the expected rank, because many tools save 2D images that way.

    Args:
        path: the TIFF file.
        ndim: expected spatial rank, 2 or 3; None accepts either.

    Returns:
        The array, integer or float dtype, unchanged values.

    Raises:
        DataError: the file is missing or unreadable, has the wrong number of dimensions,
            a non-numeric dtype, or NaN/inf values.
    """
    _check_ndim_arg(ndim)
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        array = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types on corrupt files; all mean "unreadable".
        raise DataError(path, f"cannot read as TIFF ({type(err).__name__}: {err})") from err
    array = np.asarray(array)
    allowed = (ndim,) if ndim is not None else (2, 3)
    squeezed = _squeeze_to(array, allowed)
    if squeezed is None:
        if array.ndim == (ndim or 2) + 1 and array.shape[-1] in (3, 4):  # (Y, X, RGB[A])
            kind = "RGB" if array.shape[-1] == 3 else "RGBA"
            raise DataError(
                path,
                f"an {kind} image {array.shape}; nuclei need one channel: save the nuclear stain alone, "
                f"e.g. tifffile.imwrite(path, tifffile.imread(path)[..., 2]) for blue (DAPI/Hoechst)",
            )
        want = f"{ndim}" if ndim is not None else "2 or 3"
        raise DataError(path, f"expected {want} dimensions ((Y, X) or (Z, Y, X)), got shape {array.shape}")
    array = squeezed
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(path, f"expected an integer or float image, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise DataError(path, f"{n_bad} NaN/inf values in a {array.dtype} image")
    return array


def read_labels(path: PathLike, ndim: int | None = None) -> np.ndarray:
    """Reads an instance mask as int32 labels 0 (background) and 1..N without gaps.

    Masks with gaps (e.g. labels {3, 7, 9}) are relabelled to 1..N in the same order, with one
    warning, because box and color representations index nuclei by label. Objects that are
    not connected are *not* split: the annotation decides what one nucleus is.

    Args:
        path: the TIFF file.
        ndim: expected spatial rank, 2 or 3; None accepts either.

    Returns:
        int32 array of the file's shape.

    Raises:
        DataError: as :func:`read_image`, or float, negative or over-int32 labels.
    """
    array = read_image(path, ndim)
    if np.issubdtype(array.dtype, np.floating):
        raise DataError(path, f"labels must be integers, got {array.dtype}")
    if array.size == 0:
        return array.astype(np.int32)
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise DataError(path, f"labels must be >= 0 (0 = background), got minimum {low}")
    if high > _INT32_MAX:
        raise DataError(path, f"largest label {high} does not fit in int32 (max {_INT32_MAX})")
    labels = array.astype(np.int32, copy=False)
    ids = np.unique(labels)
    n = int(np.count_nonzero(ids))
    if high != n:
        from skimage.segmentation import relabel_sequential  # slow import; only needed here.

        labels = relabel_sequential(labels)[0].astype(np.int32, copy=False)
        logging.warning(
            "%s: %d labels with gaps (largest %d); relabelled to 1..%d in the same order.",
            path,
            n,
            high,
            n,
        )
    return labels


def _tiffs_by_name(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        # Dot files are temporaries from atomic writes or macOS resource forks ("._x.tif").
        if path.name.startswith(".") or path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(path, f"two files share the name {path.stem!r}: also {found[path.stem]}")
        found[path.stem] = path
    return found


def list_images(folder: PathLike) -> list[pathlib.Path]:
    """The TIFFs of an image folder (or of a data folder's ``images/``), in name order.

    Raises:
        DataError: the folder is missing or holds no TIFF.
    """
    folder = pathlib.Path(folder)
    if (folder / "images").is_dir():
        folder = folder / "images"
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TIFF_SUFFIXES
    )
    if not paths:
        raise DataError(folder, "empty folder: no *.tif or *.tiff files")
    return paths


def list_pairs(root: PathLike) -> list[ImagePair]:
    """Lists image/mask pairs in ``<root>/images/*.tif`` and ``<root>/masks/*.tif``.

    Args:
        root: a folder holding ``images/`` and ``masks/`` whose TIFFs share file names.

    Returns:
        Pairs sorted by name.

    Raises:
        DataError: a folder is missing or holds no TIFF, or a file lacks its partner.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(root, "data folder not found (expected <root>/images and <root>/masks)")
    for kind in ("images", "masks"):
        if not (root / kind).is_dir():
            raise DataError(root / kind, f"folder not found; {root} must hold images/ and masks/")
    folders = {}
    for kind in ("images", "masks"):
        folder = root / kind
        folders[kind] = _tiffs_by_name(folder)
        if not folders[kind]:
            raise DataError(folder, "empty folder: no *.tif or *.tiff files")
    images, masks = folders["images"], folders["masks"]
    for name, path in images.items():
        if name not in masks:
            raise DataError(path, f"image has no mask; expected {root / 'masks' / path.name}")
    for name, path in masks.items():
        if name not in images:
            raise DataError(path, f"mask has no image; expected {root / 'images' / path.name}")
    return [ImagePair(name, images[name], masks[name]) for name in sorted(images)]


def read_pair(pair: ImagePair, ndim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads an image and its labels, checking that their shapes agree.

    Returns:
        ``(image, labels)``: native-dtype image and int32 labels of the same shape.

    Raises:
        DataError: either file is bad, or the shapes differ.
    """
    image = read_image(pair.image_path, ndim)
    labels = read_labels(pair.mask_path, ndim)
    if image.shape != labels.shape:
        raise DataError(
            pair.image_path,
            f"image shape {image.shape} does not match mask {pair.mask_path} shape {labels.shape}",
        )
    return image, labels


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside ``path``; moves it onto ``path`` only on success.

    The temporary ``<dir>/.<name>.<random>.tmp`` lives in the same directory so that
    ``os.replace`` is atomic (same file system). On any exception it is removed and the old
    ``path``, if any, is left untouched. Parent directories are created.

    Example:
        >>> with atomic_path("out/a.npy") as tmp:  # doctest: +SKIP
        ...     np.save(open(tmp, "wb"), array)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        yield tmp
        if not tmp.exists():
            raise DataError(path, f"atomic write produced no file at {tmp}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[pathlib.Path]:
    """Yields an empty temporary folder beside ``path``; it replaces ``path`` only on success.

    The folder version of :func:`atomic_path`: a crash leaves the old folder (or none), never
    a half-written one. The result is made world-readable (``mkdtemp`` creates it private).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        path.chmod(0o755)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_tiff(path: PathLike, array: np.ndarray, axes: str | None = None, compress: bool = True) -> None:
    """Writes an array as a (zlib-compressed) TIFF atomically, keeping its dtype and values.

    Args:
        path: destination file.
        array: ``(Y, X)`` or ``(Z, Y, X)`` (any rank if ``axes`` is given); bool becomes uint8.
        axes: tifffile axes string, default ``"YX"`` / ``"ZYX"`` from the rank; a trailing
            ``"S"`` writes RGB samples.
        compress: zlib (TIFF compression 8), readable by tifffile, Pillow and skimage.
    """
    array = np.asarray(array)
    if axes is None:
        if array.ndim not in _DEFAULT_AXES:
            raise ValueError(
                f"Pass `axes` for arrays that are not 2D or 3D. Received: shape={array.shape} for {path}"
            )
        axes = _DEFAULT_AXES[array.ndim]
    if len(axes) != array.ndim:
        raise ValueError(f"`axes` must name every axis. Received: axes={axes!r}, shape={array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    photometric = "rgb" if axes.endswith("S") else "minisblack"
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            array,
            compression="zlib" if compress else None,
            photometric=photometric,
            metadata={"axes": axes},
        )


def write_labels(path: PathLike, labels: np.ndarray) -> None:
    """Writes an instance mask as uint16 TIFF (uint32 if a label is >= 65536), atomically.

    The maximum is checked before narrowing, so labels are never wrapped around.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Labels for {path} must be integers. Received: dtype={labels.dtype}")
    low = int(labels.min()) if labels.size else 0
    high = int(labels.max()) if labels.size else 0
    if low < 0:
        raise ValueError(f"Labels for {path} must be >= 0. Received: min={low}")
    if high > np.iinfo(np.uint32).max:
        raise ValueError(f"Labels for {path} must fit in uint32. Received: max={high}")
    dtype = np.uint16 if high < 2**16 else np.uint32
    write_tiff(path, labels.astype(dtype, copy=False))


def _json_key(key: Any) -> Any:
    # JSON keys are strings; convert up front as json would, so sort_keys works on mixed keys.
    key = key.item() if isinstance(key, np.generic) else key
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return key  # let json raise its usual TypeError for unsupported keys


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def check_record(path: PathLike, record: Mapping[str, Any], conflict: str, advice: str) -> None:
    """Refuses to add to a folder made with other settings, as its JSON record at `path` says.

    Nothing to check when `path` does not exist yet (a fresh folder).

    Raises:
        DataError: the record is unreadable, or differs from `record` ("<conflict> (differs in
            [keys]); <advice>").
    """
    path = pathlib.Path(path)
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(path, f"unreadable record ({err}); delete it to start over") from err
    new = json.loads(json.dumps(_jsonable(record)))
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise DataError(path, f"{conflict} (differs in {keys}); {advice}")


def write_json(path: PathLike, obj: Any) -> None:
    """Writes JSON (indent 2, sorted keys) atomically; numpy scalars/arrays, paths and
    dataclasses are converted to plain values."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_png(path: PathLike, rgb_uint8: np.ndarray) -> None:
    """Writes a ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array as PNG, atomically."""
    import imageio.v3 as iio  # imageio comes with scikit-image; imported lazily (slow).

    array = np.asarray(rgb_uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"PNG data for {path} must be uint8. Received: dtype={array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"PNG data for {path} must be (H, W[, 3|4]). Received: shape={array.shape}")
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, array, plugin="pillow", extension=".png")


def write_csv(
    path: PathLike, rows: Iterable[Sequence[Any] | Mapping[str, Any]], header: Sequence[str]
) -> None:
    """Writes a CSV with a header row, atomically.

    Args:
        path: destination file.
        rows: sequences in header order, or mappings keyed by the header's names.
        header: column names.
    """
    header = list(header)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                missing = [k for k in header if k not in row]
                if missing:
                    raise ValueError(f"Row {i} for {path} lacks columns {missing}. Received: row={row}")
                row = [row[k] for k in header]
            row = [_jsonable(v) for v in row]
            if len(row) != len(header):
                raise ValueError(
                    f"Row {i} for {path} has {len(row)} values for {len(header)} columns. Received: row={row}"
                )
            writer.writerow(row)
