"""Turn three exported generators into a compact bundle inside the package.

    python -m nucgen_tf.commands.bundle --models runs/bbbc039_cpu/models --name bbbc039_2d
    python -m nucgen_tf.commands.bundle --models runs/mine/models --out bundles/mine   # anywhere

Each stage's SavedModel becomes float16 weights + its manifest (`exported.generator.compact_export`);
a stage that is already compact (e.g. a stage of the current bundle, kept while another is
replaced) is copied as it is. The bundle's `bundle.json` records where they came from and their
sizes.
"""

from __future__ import annotations

import pathlib
import shutil

from absl import logging

from nucgen_tf import io
from nucgen_tf.exported.manifest import content_hash, is_compact, read_manifest
from nucgen_tf.synthesis.models import STAGE_DIRS


def _copy_compact(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """A compact export copied to `target` atomically (nothing to do when it is `target`)."""
    if source.resolve() == target.resolve():
        return target
    with io.atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return target


def bundle(models_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> dict:
    """Compact-export `models_dir/stage{1,2,3}` to `out_dir/stage{1,2,3}`; returns the record.

    Stages already in the compact format are copied unchanged (float16 weights are not
    converted twice).
    """
    from nucgen_tf.exported.generator import compact_export  # imports TensorFlow

    models_dir, out_dir = pathlib.Path(models_dir), pathlib.Path(out_dir)
    record = {"source": str(models_dir.resolve()), "stages": {}}
    for name in STAGE_DIRS:
        source = models_dir / name
        if is_compact(source):
            target = _copy_compact(source, out_dir / name)
        else:
            target = compact_export(source, out_dir / name)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        manifest = read_manifest(target)
        record["stages"][name] = {
            "source_sha256": content_hash(source),
            "source": str(source.resolve()),
            "step": manifest.get("step"),
            "bytes": size,
        }
        logging.info("%s: %.2f MiB", target, size / 2**20)
    record["bytes"] = sum(s["bytes"] for s in record["stages"].values())
    io.write_json(out_dir / "bundle.json", record)
    return record
