"""Pieces of the baselines and conditions: mask transforms, real subsets (the parametric mask
stream: tests/data/test_polygon_masks.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nucgen_tf import io
from nucgen_tf.experiments import baselines, conditions, runner
from nucgen_tf.experiments.config import smoke_preset, with_overrides


def _discs(shape=(64, 64), radius=6, step=16):
    labels = np.zeros(shape, np.int32)
    grid = np.indices(shape)
    label = 0
    for centre in np.ndindex(*(s // step for s in shape)):
        centre = np.asarray(centre) * step + step // 2
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        label += 1
        labels[dist <= radius] = label
    return labels


@pytest.mark.parametrize("ndim", [2, 3])
def test_elastic_labels_keeps_nuclei_whole(ndim):
    labels = _discs((64, 64) if ndim == 2 else (32, 32, 32), radius=5)
    warped = baselines.elastic_labels(labels, alpha=3.0, sigma=8.0, rng=np.random.default_rng(0))
    assert warped.shape == labels.shape and warped.dtype == np.int32
    n = int(warped.max())
    assert n == labels.max()  # small displacements keep every nucleus ...
    np.testing.assert_array_equal(np.unique(warped), np.arange(n + 1))
    face = ndimage.generate_binary_structure(ndim, 1)
    for label in range(1, n + 1):
        assert ndimage.label(warped == label, structure=face)[1] == 1  # ... in one piece ...
    assert not np.array_equal(warped, labels)  # ... but moves them
    sizes, original = np.bincount(warped.ravel())[1:], np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(sizes, original, rtol=0.35)


def test_elastic_labels_without_displacement_only_relabels():
    labels = _discs() * 3
    warped = baselines.elastic_labels(labels, alpha=0.0, sigma=5.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(warped > 0, labels > 0)
    assert warped.max() == len(np.unique(labels)) - 1


def test_transformed_mask_crops_and_pads():
    labels = _discs((64, 96))
    crop = baselines.transformed_mask(labels, (32, 32), 2.0, 6.0, np.random.default_rng(1))
    assert crop.shape == (32, 32) and crop.max() >= 1
    padded = baselines.transformed_mask(labels, (128, 128), 0.0, 6.0, np.random.default_rng(2))
    assert padded.shape == (128, 128)
    assert padded.max() == labels.max()  # nothing cut: all nuclei survive the padding
    again = baselines.transformed_mask(labels, (32, 32), 2.0, 6.0, np.random.default_rng(1))
    np.testing.assert_array_equal(crop, again)


def test_image_generator_rejects_a_non_export(tmp_path):
    from nucgen_tf.synthesis.models import load_image_stage  # the baselines' mask -> image loader

    with pytest.raises(io.DataError, match="nucgen_manifest.json"):
        load_image_stage(tmp_path)


def test_subset_folder_links_the_first_pairs(tmp_path, bbbc039_train):
    subset = conditions.subset_folder(bbbc039_train, 3, tmp_path / "sub")
    pairs, everything = io.list_pairs(subset), io.list_pairs(bbbc039_train)
    assert [p.name for p in pairs] == [p.name for p in everything[:3]]
    assert all(p.image_path.is_symlink() and p.image_path.resolve() == q.image_path.resolve()
               for p, q in zip(pairs, everything))  # fmt: skip
    conditions.subset_folder(bbbc039_train, 2, tmp_path / "sub")  # rebuilt for another amount
    assert len(io.list_pairs(tmp_path / "sub")) == 2


def test_subset_folder_rejects_too_many(tmp_path, bbbc039_train):
    with pytest.raises(io.DataError, match="fewer than the 999"):
        conditions.subset_folder(bbbc039_train, 999, tmp_path / "sub")


def test_workdir_refuses_other_settings(tmp_path):
    config = smoke_preset("/data", str(tmp_path))
    runner.check_workdir(config)
    runner.check_workdir(with_overrides(config, {"seeds": (0, 1), "n_train": (1, 2)}))  # free fields
    with pytest.raises(io.DataError, match="n_synthetic: 4 -> 8"):
        runner.check_workdir(with_overrides(config, {"n_synthetic": 8}))


def test_rp2p_images_get_the_stage3_camera_noise_and_keep_their_masks(tmp_path):
    import json

    from tests.helpers import write_disc_pairs
    from tests.tiny_generators import export_reference_models

    real = write_disc_pairs(tmp_path / "real", seeds=[0, 1], shape=(64, 64))
    models = export_reference_models(tmp_path / "models", (64, 64), nucleus_radius=5.0)
    manifest_path = models / "stage3" / "nucgen_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sensor"] = {"model": "poisson-gaussian", "gain": 1.0, "offset_variance": 9.0, "max_value": 4095}
    manifest_path.write_text(json.dumps(manifest))
    made = {}
    for noise in (True, False):
        out = baselines.generate_real_pix2pix(
            models / "stage3", real, tmp_path / f"noise{noise}", 2, (64, 64), seed=3, sensor_noise=noise
        )
        made[noise] = [io.read_pair(p) for p in io.list_pairs(out)]
    for (noisy, mask), (clean, same_mask) in zip(made[True], made[False]):
        np.testing.assert_array_equal(mask, same_mask)
        flat = (mask == 0) & (clean == np.median(clean[mask == 0]))
        expected = np.sqrt(float(np.median(clean[mask == 0])) + 9.0)
        assert (noisy[flat].astype(float) - clean[flat]).std() == pytest.approx(expected, rel=0.15)
