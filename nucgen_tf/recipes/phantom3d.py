"""A simulated stand-in for BBBC024 (3D HL60 nuclei; 4 clustering levels; high and low SNR).

The paper's 3D data, BBBC024v1 (synthetic HL60 nuclei made with CytoPacq), cannot be obtained
here, so this recipe simulates an openly labelled substitute with the same structure: per SNR
setting a train split of 12 volumes and a test split of 108 volumes of 20 nuclei each (the
paper's 240 and 2,160 instances), clustering probability cycling over 0 / 0.25 / 0.5 / 0.75
by volume index. It is NOT BBBC024: shapes, textures and noise come from
`nucgen_tf.phantoms` (see data/README.md for the model and where each value comes from).
BBBC024 has no validation split; `n_val` (default 0) adds one drawn the same way, for
experiments that select models on held-out volumes (the 3D augmentation experiment uses
``--n_val=12``) without taking any of the paper's 12 training volumes away.

Writes the layout every nucgen tool reads::

    <out>/{high,low}/{train,val,test}/images/<name>.tif   uint16 (Z, Y, X), zlib TIFF
    <out>/{high,low}/{train,val,test}/masks/<name>.tif    uint16 instance labels 1..N, zlib TIFF
    <out>/{high,low}/manifest.csv    split,name,shape,n_instances,clustering,snr_measured,touching_fraction
    <out>/phantom3d.json             every parameter, the seed, and how volume seeds derive from it

Names are ``<split>_c<level>_<index>`` (e.g. ``test_c25_0005``). The high- and low-SNR images of a volume
share its masks and texture. Volume ``index`` of split ``s`` uses
``numpy.random.SeedSequence([seed, s, index])`` (train = 0, test = 1, val = 2), so a volume does
not depend on the split sizes, the chosen SNRs or any other volume; the same seed gives the same
files. Writes are atomic and finished volumes are skipped, so a rerun resumes. A val split may be
added to a folder made without one (its train and test volumes do not change).

Run: ``nucgen phantom3d --out=DIR [--snr=high|low|both] [--seed=S]
[--n_train=12] [--n_val=0] [--n_test=108]``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

from absl import logging

from nucgen_tf import io
from nucgen_tf.phantoms import (
    CLUSTERING_LEVELS,
    SNR_RANGES,
    SNR_SETTINGS,
    ImagingSetting,
    PhantomConfig,
    TextureConfig,
    measure_snr,
    phantom_volume,
    touching_fraction,
)
from nucgen_tf.progress import track

DEFAULT_SEED = 24
# Splits in the order their seed streams were introduced: a volume's seed holds the split's
# index here, so new splits go at the end (train and test volumes never change).
SPLITS = ("train", "test", "val")
# Order of the manifest rows and of generation.
SPLIT_ORDER = ("train", "val", "test")
SNR_CHOICES = ("high", "low", "both")
DEFAULT_SIZES = {"train": 12, "val": 0, "test": 108}
MANIFEST_COLUMNS = (
    "split",
    "name",
    "shape",
    "n_instances",
    "clustering",
    "snr_measured",
    "touching_fraction",
)
RECORD_NAME = "phantom3d.json"
DESCRIPTION = (
    "A simulated stand-in for BBBC024 (synthetic 3D HL60 nuclei, CytoPacq; Svoboda, Kozubek & Stejskal, "
    "Cytometry A 2009), made by nucgen-tf because BBBC024 could not be obtained. It is NOT BBBC024: "
    "it copies its structure (4 clustering levels 0/25/50/75%, ~20 nuclei per volume, high and low SNR, "
    "the paper's 240 train / 2,160 test instances per SNR), not its images."
)
SNR_DEFINITION = (
    "(mean of the image over nucleus voxels - mean over background voxels) / std over background voxels; "
    "background = voxels more than 4 pixels (Euclidean, pixel units) from every nucleus "
    "(nucgen_tf.phantoms.measure_snr)"
)


def volume_name(split: str, index: int) -> str:
    """``<split>_c<clustering %>_<index>``, unique across splits; the level cycles over the four."""
    return f"{split}_c{round(100 * clustering_level(index)):02d}_{index:04d}"


def clustering_level(index: int) -> float:
    """Clustering probability of volume ``index``: CLUSTERING_LEVELS[index % 4]."""
    return CLUSTERING_LEVELS[index % len(CLUSTERING_LEVELS)]


def volume_seed(seed: int, split: str, index: int) -> list[int]:
    """Entropy of volume ``index`` of ``split`` for ``numpy.random.SeedSequence``."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
    return [int(seed), SPLITS.index(split), int(index)]


def _snr_names(snr: str | Sequence[str]) -> list[str]:
    names = ["high", "low"] if snr == "both" else [snr] if isinstance(snr, str) else list(snr)
    bad = [s for s in names if s not in SNR_SETTINGS]
    if not names or bad:
        raise ValueError(
            f"`snr` must be one of {SNR_CHOICES} or a list of {list(SNR_SETTINGS)}. Received: snr={snr}"
        )
    return names


def parameters(
    seed: int,
    n_train: int,
    n_test: int,
    config: PhantomConfig,
    texture: TextureConfig,
    settings: dict[str, ImagingSetting],
    n_val: int = 0,
) -> dict:
    """Everything that determines the files, as plain JSON values (tuples become lists).

    Without a val split the record is the one written before val splits existed, so old
    folders stay valid.
    """
    geometry = dataclasses.asdict(config)
    geometry.pop("clustering")
    sizes = {"train": int(n_train), "test": int(n_test)}
    volume_seed_rule = "numpy.random.SeedSequence([seed, split (train=0, test=1), index])"
    if n_val:
        sizes["val"] = int(n_val)
        volume_seed_rule = "numpy.random.SeedSequence([seed, split (train=0, test=1, val=2), index])"
    record = {
        "dataset": "nucgen-tf phantom3d",
        "description": DESCRIPTION,
        "seed": int(seed),
        "sizes": sizes,
        "clustering_levels": list(CLUSTERING_LEVELS),
        "clustering_rule": "volume i uses clustering_levels[i % 4]; its name is <split>_c<level %>_<i:04d>",
        "volume_seed": volume_seed_rule,
        "geometry": geometry,
        "texture": dataclasses.asdict(texture),
        "snr_definition": SNR_DEFINITION,
        "snr_settings": {
            name: {
                **dataclasses.asdict(setting),
                "noise_std": setting.noise_std,
                "signal": setting.signal,
                "measured_range": list(SNR_RANGES.get(name, ())),
            }
            for name, setting in settings.items()
        },
        "format_version": 1,
    }
    return json.loads(json.dumps(record))


def _row(split: str, name: str, image, labels, level: float) -> dict:
    return {
        "split": split,
        "name": name,
        "shape": "x".join(str(s) for s in labels.shape),
        "n_instances": int(labels.max(initial=0)),
        "clustering": level,
        "snr_measured": round(measure_snr(image, labels), 3),
        "touching_fraction": round(touching_fraction(labels), 3),
    }


def _made_without_val(path: pathlib.Path, legacy: dict) -> bool:
    """True when the record at `path` is `legacy`: this data set, made before it had a val split.

    Adding a val split changes no train or test volume (see `volume_seed`), so such a folder
    is extended rather than refused.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8")) == legacy
    except (OSError, ValueError):
        return False  # missing: a fresh folder; unreadable: `io.check_record` says so


def generate(
    out_dir: io.PathLike,
    snr: str | Sequence[str] = "both",
    seed: int = DEFAULT_SEED,
    n_train: int = DEFAULT_SIZES["train"],
    n_test: int = DEFAULT_SIZES["test"],
    config: PhantomConfig | None = None,
    texture: TextureConfig | None = None,
    progress: bool = True,
    n_val: int = DEFAULT_SIZES["val"],
) -> dict[str, list[dict]]:
    """Simulates the stand-in data set into ``out_dir`` (layout in the module docstring).

    Volumes whose image and mask files exist for every requested SNR are skipped (writes are
    atomic, so existing files are complete); their manifest rows are measured from the files.

    Args:
        out_dir: output folder.
        snr: "high", "low", "both", or a list of names in ``SNR_SETTINGS``.
        seed: data-set seed.
        n_train, n_test: volumes per split.
        n_val: volumes of the val split (0 = none, as BBBC024).
        config: geometry; ``clustering`` is ignored (it cycles by volume). Default
            ``PhantomConfig()``: 32 x 128 x 128 voxels, spacing (2, 1, 1), 20 nuclei.
        texture: texture parameters (default ``TextureConfig()``).
        progress: show progress (a bar on a terminal, else log lines).

    Returns:
        ``{snr name: manifest rows}``, each row a dict keyed by ``MANIFEST_COLUMNS``.

    Raises:
        DataError: ``out_dir`` holds phantoms made with other parameters.
    """
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 0:
            raise ValueError(f"`{key}` must be >= 0. Received: {key}={value}")
    names = _snr_names(snr)
    config = PhantomConfig() if config is None else config
    texture = TextureConfig() if texture is None else texture
    settings = dict(SNR_SETTINGS)
    out_dir = pathlib.Path(out_dir)
    record = parameters(seed, n_train, n_test, config, texture, settings, n_val=n_val)
    legacy = parameters(seed, n_train, n_test, config, texture, settings)
    if not (n_val and _made_without_val(out_dir / RECORD_NAME, legacy)):
        io.check_record(
            out_dir / RECORD_NAME,
            record,
            "this folder holds phantoms made with other parameters",
            "generate into an empty folder, or rerun with the same seed, sizes and shape",
        )
    io.write_json(out_dir / RECORD_NAME, record)

    sizes = {"train": n_train, "val": n_val, "test": n_test}
    jobs = [(split, index) for split in SPLIT_ORDER for index in range(sizes[split])]
    rows: dict[str, list[dict]] = {name: [] for name in names}
    n_skipped = 0
    for split, index in track(jobs, "phantom3d", "volume", enabled=progress):
        name, level = volume_name(split, index), clustering_level(index)
        pairs = {
            s: io.ImagePair(
                name,
                out_dir / s / split / "images" / f"{name}.tif",
                out_dir / s / split / "masks" / f"{name}.tif",
            )
            for s in names
        }
        missing = [s for s in names if not (pairs[s].image_path.is_file() and pairs[s].mask_path.is_file())]
        if missing:
            labels, images = phantom_volume(
                volume_seed(seed, split, index),
                dataclasses.replace(config, clustering=level),
                snrs=missing,
                texture=texture,
                settings=settings,
            )
            for s in missing:
                io.write_labels(pairs[s].mask_path, labels)
                io.write_tiff(pairs[s].image_path, images[s])
        else:
            n_skipped += 1
        for s in names:
            if s in missing:
                image, mask = images[s], labels
            else:
                image, mask = io.read_pair(pairs[s], ndim=config.ndim)
            rows[s].append(_row(split, name, image, mask, level))
    for s in names:
        io.write_csv(out_dir / s / "manifest.csv", rows[s], MANIFEST_COLUMNS)
    logging.info(
        "phantom3d: %d train + %d val + %d test volumes for SNR %s in %s (%d already there).",
        n_train,
        n_val,
        n_test,
        "/".join(names),
        out_dir,
        n_skipped,
    )
    return rows
