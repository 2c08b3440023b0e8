"""The generators bundled in the package: small, loadable, and they make aligned pairs."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from nucgen_tf import pretrained
from nucgen_tf.synthesis.models import load_generators
from nucgen_tf.synthesis.options import SynthesisOptions
from nucgen_tf.synthesis.run import synthesize

MAX_BUNDLE_BYTES = 8 * 2**20


def test_bundle_is_listed_and_small():
    assert pretrained.DEFAULT in pretrained.available()
    root = pretrained.bundled_models()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert 0 < size <= MAX_BUNDLE_BYTES
    record = json.loads((root / "bundle.json").read_text())
    assert set(record["stages"]) == {"stage1", "stage2", "stage3"}


def test_bundled_chain_loads_and_makes_aligned_pairs(tmp_path):
    generators = load_generators(pretrained.bundled_models())
    assert generators.ndim == 2
    manifest = synthesize(
        SynthesisOptions(models=str(pretrained.bundled_models()), out=str(tmp_path), n=2, shape=(128, 128)),
        generators=generators,
    )
    for name, record in manifest["samples"].items():
        image = tifffile.imread(tmp_path / "images" / f"{name}.tif")
        labels = tifffile.imread(tmp_path / "masks" / f"{name}.tif")
        assert image.dtype == np.uint16 and labels.dtype == np.uint16
        assert image.shape == labels.shape == (128, 128)
        ids = np.unique(labels[labels > 0])
        assert len(ids) >= 3
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
        # Aligned: nuclei are brighter than background and the image's own foreground
        # (Otsu) overlaps the mask well.
        assert image[labels > 0].mean() > image[labels == 0].mean() * 1.5
        assert record["alignment"]["iou"] >= 0.6 and not record["alignment"]["flagged"]
