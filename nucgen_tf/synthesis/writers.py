"""Output layouts, per-sample files, previews and the synthesis manifest.

Layouts:
    "stardist" (default): `images/<name>.tif` + `masks/<name>.tif` with matching names, as
        StarDist's example notebooks and nucgen's own tools (`io.list_pairs`) read them.
    "cellpose": `<name>.tif` + `<name>_masks.tif` side by side, as Cellpose's training CLI
        reads a folder (`--mask_filter _masks`).

Besides the pair, a sample gets `seeds/<name>.csv` (its seed points, in the format
`--seeds_csv` reads), `previews/<name>.png` and, on request, float32 stored-range TIFFs of
every intermediate in `intermediate/<kind>/<name>.tif` (channels first: CYX / CZYX).

Every file is written atomically, so an existing file is a complete file. The manifest
(`manifest.json`, or `manifest.shard-K-of-N.json` per shard) is rewritten atomically after
every chunk; when every shard is complete the shards are merged into `manifest.json`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import tifffile
from absl import logging

from nucgen_tf import io, viz
from nucgen_tf.synthesis.pipeline import Sample
from nucgen_tf.synthesis.sampling import AXES

LAYOUTS = ("stardist", "cellpose")
FORMAT = "nucgen-synthesis/1"
MANIFEST = "manifest.json"
_SHARD_RE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")
_TITLES = (
    "seed map",
    "box map (stage 1)",
    "ellipses",
    "colored mask (stage 2)",
    "image + contours (stage 3)",
)
INTERMEDIATES = ("seed_map", "box_map", "ellipses", "colored_mask", "stage3_input")


def sample_name(index: int, prefix: str = "sample") -> str:
    """`<prefix>_<index>` with at least 6 digits; depends on the index only."""
    if index < 0:
        raise ValueError(f"`index` must be >= 0. Received: index={index}")
    return f"{prefix}_{index:06d}"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the files of a sample go under `root`."""

    root: pathlib.Path
    kind: str = "stardist"

    def __post_init__(self):
        if self.kind not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={self.kind!r}")
        object.__setattr__(self, "root", pathlib.Path(self.root))

    def image_path(self, name: str) -> pathlib.Path:
        return self.root / (f"{name}.tif" if self.kind == "cellpose" else f"images/{name}.tif")

    def mask_path(self, name: str) -> pathlib.Path:
        return self.root / (f"{name}_masks.tif" if self.kind == "cellpose" else f"masks/{name}.tif")

    def preview_path(self, name: str) -> pathlib.Path:
        return self.root / "previews" / f"{name}.png"

    def seeds_path(self, name: str) -> pathlib.Path:
        return self.root / "seeds" / f"{name}.csv"

    def intermediate_path(self, kind: str, name: str) -> pathlib.Path:
        return self.root / "intermediate" / kind / f"{name}.tif"

    def relative(self, path: pathlib.Path) -> str:
        return path.relative_to(self.root).as_posix()


def _tiff_shape(path: pathlib.Path) -> tuple[int, ...] | None:
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    except Exception:  # any unreadable file means "not done"
        return None


def is_complete(layout: Layout, name: str, shape: tuple[int, ...]) -> bool:
    """Both the image and the mask of `name` exist and are readable TIFFs of `shape`."""
    for path in (layout.image_path(name), layout.mask_path(name)):
        if not path.is_file():
            return False
        found = _tiff_shape(path)
        if found != tuple(shape):
            logging.warning("%s: unreadable or shape %s instead of %s; regenerating", path, found, shape)
            return False
    return True


def preview_panel(sample: Sample) -> np.ndarray:
    """seed map | box map | ellipses | colored mask | image + contours, as an RGB uint8 grid."""
    ndim = sample.labels.ndim
    shown = viz.overlay_contours(viz.display_range(sample.image), sample.labels)
    panels = [sample.seed_map, sample.box_map, sample.ellipses, sample.colored_mask, shown]
    return viz.panel_grid(panels, ndim, titles=_TITLES)


def _channels_first(array: np.ndarray, ndim: int) -> tuple[np.ndarray, str]:
    axes = "".join(a.upper() for a in AXES[ndim])
    if array.ndim == ndim:
        return array.astype(np.float32), axes
    return np.moveaxis(array, -1, 0).astype(np.float32), "C" + axes


def write_sample(
    layout: Layout, name: str, sample: Sample, intermediate: bool = False, preview: bool = True
) -> dict[str, str]:
    """Write one sample's files; the image last, so a complete pair implies the rest exists.

    Returns:
        {kind: path relative to the layout root}.
    """
    ndim = sample.labels.ndim
    files = {}
    seeds_path = layout.seeds_path(name)
    io.write_csv(seeds_path, [[round(float(v), 4) for v in p] for p in sample.seeds], AXES[ndim])
    files["seeds"] = layout.relative(seeds_path)
    if intermediate:
        for kind in INTERMEDIATES:
            path = layout.intermediate_path(kind, name)
            array, axes = _channels_first(getattr(sample, kind), ndim)
            io.write_tiff(path, array, axes=axes)
            files[kind] = layout.relative(path)
    if preview:
        path = layout.preview_path(name)
        io.write_png(path, preview_panel(sample))
        files["preview"] = layout.relative(path)
    io.write_labels(layout.mask_path(name), sample.labels)
    io.write_tiff(layout.image_path(name), sample.image)
    files["mask"] = layout.relative(layout.mask_path(name))
    files["image"] = layout.relative(layout.image_path(name))
    return files


def recover_record(layout: Layout, name: str, index: int, seed: int, min_alignment: float) -> dict:
    """The manifest record of a finished sample whose record was lost, rebuilt from its files.

    Files are written atomically and the image last, so an existing image means a finished
    sample; what only the run knew (timings, decoder reports) is missing and marked so.
    """
    from nucgen_tf.synthesis.alignment import alignment_report

    labels = io.read_labels(layout.mask_path(name))
    image = io.read_image(layout.image_path(name))
    files = {
        "image": layout.relative(layout.image_path(name)),
        "mask": layout.relative(layout.mask_path(name)),
    }
    for kind, path in (("seeds", layout.seeds_path(name)), ("preview", layout.preview_path(name))):
        if path.is_file():
            files[kind] = layout.relative(path)
    for kind in INTERMEDIATES:
        if layout.intermediate_path(kind, name).is_file():
            files[kind] = layout.relative(layout.intermediate_path(kind, name))
    return {
        "index": index,
        "seed": [seed, index],
        "recovered": True,
        "files": files,
        "counts": {"instances": int(labels.max(initial=0))},
        "alignment": alignment_report(image, labels, min_alignment),
    }


def manifest_path(root: str | pathlib.Path, shard_index: int = 0, num_shards: int = 1) -> pathlib.Path:
    """`manifest.json` for an unsharded job, `manifest.shard-K-of-N.json` for shard K."""
    root = pathlib.Path(root)
    if num_shards == 1:
        return root / MANIFEST
    return root / f"manifest.shard-{shard_index}-of-{num_shards}.json"


def read_manifests(root: str | pathlib.Path) -> list[dict]:
    """Every synthesis manifest in `root` (merged and per shard), oldest format checked."""
    root = pathlib.Path(root)
    found = []
    paths = [root / MANIFEST] + sorted(
        p for p in root.glob("manifest.shard-*-of-*.json") if _SHARD_RE.match(p.name)
    )
    for path in paths:
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise io.DataError(
                path, f"unreadable synthesis manifest ({err}); move it away to start over"
            ) from err
        if manifest.get("format") != FORMAT:
            raise io.DataError(path, f"not a {FORMAT} manifest (format={manifest.get('format')!r})")
        manifest["_path"] = str(path)
        found.append(manifest)
    return found


def settings_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (old, new)} for the generation settings that differ (JSON-normalized)."""
    old_n, new_n = json.loads(json.dumps(old)), json.loads(json.dumps(new))
    return {
        k: (old_n.get(k), new_n.get(k))
        for k in sorted(set(old_n) | set(new_n))
        if old_n.get(k) != new_n.get(k)
    }


def summarize(records: Mapping[str, dict], n: int) -> dict:
    """Counts over the sample records of a manifest."""
    flagged = sorted(name for name, r in records.items() if r.get("alignment", {}).get("flagged"))
    scores = [r["alignment"]["score"] for r in records.values() if "alignment" in r]
    instances = [r["counts"]["instances"] for r in records.values() if "counts" in r]
    checked = [r["mask_checks"] for r in records.values() if "mask_checks" in r]
    shattered = sorted(name for name, r in records.items() if r.get("mask_checks", {}).get("flagged"))
    small = [c["small_label_share"] for c in checked if c["small_label_share"] is not None]
    return {
        "samples": len(records),
        "expected": n,
        "complete": len(records) >= n,
        "instances_total": int(sum(instances)),
        "instances_mean": float(np.mean(instances)) if instances else None,
        "alignment_mean": float(np.mean(scores)) if scores else None,
        "flagged": flagged,
        "labels_per_box_mean": float(np.mean([c["labels_per_box"] for c in checked])) if checked else None,
        "small_label_share_mean": float(np.mean(small)) if small else None,
        "flagged_labels_per_box": shattered,
    }


def write_manifest(
    path: pathlib.Path, header: Mapping[str, Any], records: Mapping[str, dict], n: int
) -> dict:
    """Write a manifest atomically: `header` + sorted sample records + summary."""
    manifest = {
        **header,
        "format": FORMAT,
        "samples": dict(sorted(records.items())),
        "summary": summarize(records, n),
    }
    io.write_json(path, manifest)
    return manifest


def merge_shards(root: str | pathlib.Path, header: Mapping[str, Any], n: int, num_shards: int) -> dict | None:
    """Merge the shard manifests into `manifest.json` once all `n` samples are recorded.

    Returns:
        The merged manifest, or None while some shard is still missing samples.
    """
    root = pathlib.Path(root)
    records: dict[str, dict] = {}
    for k in range(num_shards):
        path = manifest_path(root, k, num_shards)
        if not path.is_file():
            return None
        records.update(json.loads(path.read_text(encoding="utf-8")).get("samples", {}))
    if len(records) < n:
        return None
    merged_header = {**header, "shard": {"index": None, "num_shards": num_shards, "merged": True}}
    return write_manifest(root / MANIFEST, merged_header, records, n)
