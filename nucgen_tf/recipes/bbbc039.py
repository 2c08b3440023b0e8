"""BBBC039v1 (2D U2OS nuclei, CC0): download, decode, split and convert to plain TIFF.

Writes the layout every nucgen tool reads::

    <out>/{train,val,test,heldout}/images/<name>.tif   uint16 520 x 696, zlib TIFF, values unchanged
    <out>/{train,val,test,heldout}/masks/<name>.tif    uint16 instance labels 1..N, zlib TIFF
    <out>/manifest.csv                                 split,name,height,width,n_instances,n_instances_ge25px
    <out>/split.json                                   seed, sizes and names of each split

Source masks are RGBA PNGs whose red channel holds a color index {0..3} (touching nuclei always
get different indices); they are decoded exactly as the BBBC039 authors' pipeline does, as
connected components of equal index with 8-connectivity. The split is our own seeded one (the
official lists in metadata.zip are not used) and matches the staged shared data.

Run: ``nucgen fetch --out=DIR [--src=FOLDER_WITH_ZIPS_OR_FOLDERS]``.
Every step skips finished outputs (all writes are atomic), so a rerun resumes.
"""

from __future__ import annotations

import collections
import http.client
import os
import pathlib
import secrets
import shutil
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from absl import logging
from tqdm import tqdm

from nucgen_tf import io
from nucgen_tf.progress import track

BBBC039_URL = "https://data.broadinstitute.org/bbbc/BBBC039/"
ZIP_NAMES = ("images.zip", "masks.zip", "metadata.zip")
DEFAULT_SEED = 20120628
SPLITS = ("train", "val", "test", "heldout")
MANIFEST_COLUMNS = ("split", "name", "height", "width", "n_instances", "n_instances_ge25px")
MIN_AREA = 25  # the BBBC039 reference pipeline drops objects under 25 px; the manifest counts both.
_CHUNK = 1 << 20


def decode_mask_png(path: io.PathLike) -> np.ndarray:
    """Decodes a BBBC039 mask PNG into int32 instance labels.

    The red channel holds a color index in {0..3}, 0 = background. ``skimage.measure.label``
    labels connected regions of *equal* value, so touching nuclei (different indices) stay
    apart, and 8-connectivity keeps diagonally joined pixels of one nucleus together.

    Args:
        path: an RGB or RGBA PNG.

    Returns:
        ``(H, W)`` int32 labels 0..N.

    Raises:
        DataError: missing/unreadable file, or not an RGB(A) image.
    """
    import imageio.v3 as iio
    from skimage.measure import label

    path = pathlib.Path(path)
    if not path.is_file():
        raise io.DataError(path, "file not found")
    try:
        rgba = np.asarray(iio.imread(path, plugin="pillow", extension=".png"))
    except Exception as err:  # imageio/Pillow raise many types on corrupt files.
        raise io.DataError(path, f"cannot read as PNG ({type(err).__name__}: {err})") from err
    if rgba.ndim != 3 or rgba.shape[-1] not in (3, 4):
        raise io.DataError(path, f"expected an RGB or RGBA mask of shape (H, W, 3|4), got shape {rgba.shape}")
    return label(rgba[..., 0], background=0, connectivity=2).astype(np.int32)


def count_instances(labels: np.ndarray, min_area: int = MIN_AREA) -> tuple[int, int]:
    """Returns ``(number of instances, number with at least min_area pixels)``."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return int(areas.size), int(np.count_nonzero(areas >= min_area))


def split_names(
    names: Sequence[str],
    seed: int = DEFAULT_SEED,
    n_train: int = 20,
    n_val: int = 10,
    n_test: int = 50,
    has_nuclei: Callable[[str], bool] | Mapping[str, bool] | None = None,
) -> dict[str, list[str]]:
    """Seeded random split: ``default_rng(seed).permutation`` over the sorted names.

    Train takes the first ``n_train`` names in permuted order whose image holds nuclei; empty
    images it passes over stay in the list. Val takes the next ``n_val`` of what remains, test
    the next ``n_test``, and the rest are "heldout". Sorting first makes the split independent
    of directory listing order.

    Args:
        names: unique image names.
        seed: permutation seed; 20120628 reproduces the staged shared data.
        n_train, n_val, n_test: split sizes.
        has_nuclei: name -> whether the mask holds any nucleus; None means all do.

    Returns:
        ``{"train": [...], "val": [...], "test": [...], "heldout": [...]}``, each in permuted
        order.
    """
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 0:
            raise ValueError(f"`{key}` must be >= 0. Received: {key}={value}")
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        dupes = sorted(n for n, c in collections.Counter(ordered).items() if c > 1)
        raise ValueError(f"Image names must be unique. Received duplicates: {dupes}")
    if len(ordered) < n_train + n_val + n_test:
        raise ValueError(
            f"Need at least n_train + n_val + n_test = {n_train + n_val + n_test} images. "
            f"Received: {len(ordered)} names"
        )
    if has_nuclei is None:
        nonempty = lambda name: True
    elif isinstance(has_nuclei, Mapping):
        missing = [n for n in ordered if n not in has_nuclei]
        if missing:
            raise ValueError(f"`has_nuclei` lacks {len(missing)} names, e.g. {missing[0]!r}")
        nonempty = has_nuclei.__getitem__
    else:
        nonempty = has_nuclei
    permuted = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    train: list[str] = []
    rest: list[str] = []
    for name in permuted:
        if len(train) < n_train and nonempty(name):
            train.append(name)
        else:
            rest.append(name)
    if len(train) < n_train:
        raise ValueError(f"Only {len(train)} images hold nuclei; `n_train` asks for {n_train}")
    return {
        "train": train,
        "val": rest[:n_val],
        "test": rest[n_val : n_val + n_test],
        "heldout": rest[n_val + n_test :],
    }


def _files_by_name(folder: pathlib.Path, suffixes: tuple[str, ...]) -> dict[str, pathlib.Path]:
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    }


def _locate(src: pathlib.Path, kind: str, suffixes: tuple[str, ...]) -> pathlib.Path | None:
    """Finds the folder of ``kind`` files: src/kind, src/kind/kind or src/*/kind (zip layouts vary)."""
    candidates = [src / kind, src / kind / kind]
    if src.is_dir():
        candidates += [d / kind for d in sorted(src.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for folder in candidates:
        if folder.is_dir() and _files_by_name(folder, suffixes):
            return folder
    return None


def _source_pairs(src: pathlib.Path) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
    images_dir = _locate(src, "images", io.TIFF_SUFFIXES)
    masks_dir = _locate(src, "masks", (".png",))
    if images_dir is None or masks_dir is None:
        raise io.DataError(
            src,
            "expected images/*.tif and masks/*.png (the extracted images.zip and masks.zip); "
            f"found images: {images_dir}, masks: {masks_dir}",
        )
    images = _files_by_name(images_dir, io.TIFF_SUFFIXES)
    masks = _files_by_name(masks_dir, (".png",))
    for name, path in images.items():
        if name not in masks:
            raise io.DataError(path, f"image has no mask; expected {masks_dir / (name + '.png')}")
    for name, path in masks.items():
        if name not in images:
            raise io.DataError(path, f"mask has no image; expected {images_dir / (name + '.tif')}")
    return {name: (images[name], masks[name]) for name in sorted(images)}


def convert(
    src_dir: io.PathLike,
    out_dir: io.PathLike,
    seed: int = DEFAULT_SEED,
    n_train: int = 20,
    n_val: int = 10,
    n_test: int = 50,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Converts extracted BBBC039 files to the nucgen layout, split and manifest.

    Images are rewritten as zlib TIFF with unchanged values; masks are decoded with
    :func:`decode_mask_png` and stored as uint16 labels. Pairs whose outputs both exist are
    skipped (writes are atomic, so existing files are complete), so a rerun resumes.

    Args:
        src_dir: folder holding ``images/*.tif`` and ``masks/*.png`` (or one level above them).
        out_dir: output folder; see the module docstring for the layout.
        seed, n_train, n_val, n_test: passed to :func:`split_names`.
        progress: show progress (a bar on a terminal, else log lines).

    Returns:
        The split, as :func:`split_names` returns it.

    Raises:
        DataError: missing/unpaired/bad source files, or ``out_dir`` holds a different split.
    """
    src_dir, out_dir = pathlib.Path(src_dir), pathlib.Path(out_dir)
    if not src_dir.is_dir():
        raise io.DataError(src_dir, "source folder not found")
    pairs = _source_pairs(src_dir)

    # Decode every mask first: the split needs to know which images hold nuclei.
    stats: dict[str, tuple[tuple[int, ...], int, int]] = {}
    for name, (_, mask_png) in track(list(pairs.items()), "decode masks", "mask", enabled=progress):
        labels = decode_mask_png(mask_png)
        stats[name] = (labels.shape, *count_instances(labels))
    split = split_names(
        list(pairs), seed, n_train, n_val, n_test, has_nuclei={n: s[1] > 0 for n, s in stats.items()}
    )
    record = {"dataset": "BBBC039v1", "seed": seed, "sizes": {k: len(v) for k, v in split.items()}, **split}
    io.check_record(
        out_dir / "split.json",
        record,
        "this folder holds a different split",
        "convert into an empty folder, or rerun with the same source and seed",
    )
    io.write_json(out_dir / "split.json", record)

    rows = []
    jobs = [(part, name) for part in SPLITS for name in sorted(split[part])]
    n_skipped = 0
    for part, name in track(jobs, "convert", "file pair", enabled=progress):
        shape, n, n_ge = stats[name]
        rows.append([part, name, shape[0], shape[1], n, n_ge])
        image_out = out_dir / part / "images" / f"{name}.tif"
        mask_out = out_dir / part / "masks" / f"{name}.tif"
        if image_out.is_file() and mask_out.is_file():
            n_skipped += 1
            continue
        image_src, mask_src = pairs[name]
        image = io.read_image(image_src, ndim=2)
        if image.shape != shape:
            raise io.DataError(
                image_src, f"image shape {image.shape} does not match mask {mask_src} shape {shape}"
            )
        io.write_tiff(image_out, image)
        io.write_labels(mask_out, decode_mask_png(mask_src))
    io.write_csv(out_dir / "manifest.csv", rows, MANIFEST_COLUMNS)
    logging.info(
        "BBBC039: %s written to %s (%d pairs already there).",
        ", ".join(f"{len(v)} {k}" for k, v in split.items()),
        out_dir,
        n_skipped,
    )
    return split


def _download_help(url: str) -> str:
    return (
        f"If this machine cannot reach {url}, download {', '.join(ZIP_NAMES)} by hand from "
        f"{BBBC039_URL} into a folder and rerun with --src=<that folder>."
    )


def download(url: str, dest: io.PathLike, timeout: float = 60.0, progress: bool = True) -> pathlib.Path:
    """Downloads ``url`` to ``dest`` atomically; an existing ``dest`` is complete and kept.

    Raises:
        RuntimeError: the download failed or was cut short; says how to fetch by hand.
    """
    dest = pathlib.Path(dest)
    if dest.is_file():
        logging.info("%s exists; not downloading again.", dest)
        return dest
    try:
        with io.atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total else None
            done = 0
            with (
                open(tmp, "wb") as f,
                tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            if total is not None and done != total:
                raise OSError(f"got {done} of {total} bytes")
    except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError, timeouts, IncompleteRead.
        raise RuntimeError(f"Could not download {url} to {dest} ({err}). {_download_help(url)}") from err
    return dest


def _extract(zip_path: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Extracts a zip into ``dest`` via a temporary folder, so ``dest`` exists only when complete."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)  # zipfile drops absolute paths and ".." components.
        os.replace(tmp, dest)
    except zipfile.BadZipFile as err:
        raise io.DataError(zip_path, f"not a valid zip file ({err}); delete it and download again") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch(
    out_dir: io.PathLike,
    src: io.PathLike | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    **split_sizes: int,
) -> dict[str, list[str]]:
    """Gets BBBC039 into ``out_dir``: download (unless ``src``), extract, convert.

    Args:
        out_dir: output folder (also holds ``downloads/`` and ``raw/`` when it extracts zips).
        src: a folder with the extracted ``images/`` and ``masks/`` folders, or with
            ``images.zip`` and ``masks.zip``; then nothing is downloaded.
        seed: split seed.
        progress: show progress bars.
        **split_sizes: ``n_train``, ``n_val``, ``n_test`` for :func:`convert`.

    Returns:
        The split.
    """
    out_dir = pathlib.Path(out_dir)
    if src is None:
        zip_dir = out_dir / "downloads"
        for name in ZIP_NAMES:
            download(BBBC039_URL + name, zip_dir / name, progress=progress)
        source = None
    else:
        zip_dir = pathlib.Path(src)
        if not zip_dir.is_dir():
            raise io.DataError(zip_dir, "source folder (--src) not found")
        extracted = _locate(zip_dir, "images", io.TIFF_SUFFIXES) and _locate(zip_dir, "masks", (".png",))
        source = zip_dir if extracted else None
    if source is None:
        for name in ("images.zip", "masks.zip"):
            if not (zip_dir / name).is_file():
                raise io.DataError(
                    zip_dir,
                    f"holds neither extracted images/ and masks/ folders nor {name}. "
                    + _download_help(BBBC039_URL),
                )
        source = out_dir / "raw"
        for name in ZIP_NAMES:
            if (zip_dir / name).is_file():
                _extract(zip_dir / name, source / pathlib.Path(name).stem)
    return convert(source, out_dir, seed=seed, progress=progress, **split_sizes)
