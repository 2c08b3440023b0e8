"""Synthesis pieces without models: alignment check, seeding, seed CSVs, layouts, manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nucgen_tf.config import SeedConfig
from nucgen_tf.io import DataError
from nucgen_tf.synthesis import alignment, sampling, writers
from nucgen_tf.synthesis.options import SynthesisOptions


def _disks(shape, centers, radius):
    grid = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for k, c in enumerate(centers, start=1):
        inside = sum((g - v) ** 2 for g, v in zip(grid, c)) <= radius**2
        labels[inside] = k
    return labels


@pytest.mark.parametrize("ndim", [2, 3])
def test_alignment_scores_a_matching_image_high_and_an_inverted_one_low(ndim):
    shape = (40, 40) if ndim == 2 else (12, 24, 24)
    centers = [(10, 10), (28, 25)] if ndim == 2 else [(6, 7, 7), (6, 16, 15)]
    labels = _disks(shape, centers, 5)
    noise = np.random.default_rng(0).normal(0, 5, shape)
    image = (200 + 800 * (labels > 0) + noise).clip(0).astype(np.uint16)
    good = alignment.alignment_report(image, labels)
    assert good["iou"] > 0.95 and good["brighter_fraction"] == 1.0 and not good["flagged"]
    inverted = alignment.alignment_report(image.max() - image, labels)
    assert inverted["brighter_fraction"] == 0.0 and inverted["score"] < 0.1 and inverted["flagged"]
    shifted = alignment.alignment_report(np.roll(image, 6, axis=-1), labels, min_alignment=0.8)
    assert 0.1 < shifted["iou"] < 0.8 and shifted["flagged"]


def test_alignment_of_constant_images_and_empty_masks_is_defined():
    empty = np.zeros((16, 16), np.int32)
    flat = np.full((16, 16), 7, np.uint16)
    assert alignment.alignment_report(flat, empty)["score"] == 1.0  # nothing vs nothing
    labels = _disks((16, 16), [(8, 8)], 3)
    report = alignment.alignment_report(flat, labels)
    assert report["iou"] == 0.0 and report["brighter_fraction"] == 0.0 and report["flagged"]
    with pytest.raises(ValueError, match="one shape"):
        alignment.alignment_report(flat, labels[:8])


def test_sample_streams_depend_only_on_base_seed_and_index():
    a = sampling.sample_rngs(3, 17)
    b = sampling.sample_rngs(3, 17)
    assert set(a) == {"seeds", "colors_stage2", "colors_stage3", "sensor", "texture"}
    for key in a:
        assert np.array_equal(a[key].random(5), b[key].random(5))
    draws = {key: rng.random() for key, rng in sampling.sample_rngs(3, 17).items()}
    assert len(set(draws.values())) == 5  # independent streams
    # Streams of samples made before the sensor (3) and the texture (4) stream existed.
    for n, keys in ((3, ("seeds", "colors_stage2", "colors_stage3")), (4, ("sensor",))):
        for key, seq in zip(keys, np.random.SeedSequence([3, 17]).spawn(n)[-len(keys) :]):
            expected = np.random.default_rng(seq).random(5)
            assert np.array_equal(sampling.sample_rngs(3, 17)[key].random(5), expected)
    assert sampling.sample_rngs(3, 18)["seeds"].random() != draws["seeds"]
    assert sampling.sample_rngs(4, 17)["seeds"].random() != draws["seeds"]


@pytest.mark.parametrize("ndim", [2, 3])
def test_mixed_arrangement_draws_every_configured_kind(ndim):
    shape = (64, 64) if ndim == 2 else (8, 32, 32)
    config = SeedConfig(kinds=("random", "sparse", "crowded"), sparse_min_distance=8, crowded_min_distance=4)
    kinds = set()
    for i in range(30):
        kind, seeds = sampling.draw_seeds("mixed", shape, sampling.sample_rngs(0, i)["seeds"], config)
        kinds.add(kind)
        assert seeds.shape[1] == ndim
        assert np.all((seeds >= -0.5) & (seeds < np.asarray(shape) - 0.5))
    assert kinds == {"random", "sparse", "crowded"}
    kind, _ = sampling.draw_seeds("clustered", shape, np.random.default_rng(0), config)
    assert kind == "clustered"


def test_seeds_csv_with_and_without_sample_column(tmp_path):
    many = tmp_path / "many.csv"
    many.write_text("x,y,sample,note\n1.5,2,0,a\n3,4,2,b\n5,6.25,2,c\n")
    seeds = sampling.read_seeds_csv(many, 2)
    assert sorted(seeds) == [0, 2]
    np.testing.assert_array_equal(seeds[2], [[4, 3], [6.25, 5]])  # (y, x) whatever the column order
    one = tmp_path / "one.csv"
    one.write_text("z,y,x\n1,2,3\n")
    np.testing.assert_array_equal(sampling.read_seeds_csv(one, 3)[0], [[1, 2, 3]])
    with pytest.raises(DataError, match="many.csv: 3D seeds need columns z,y,x"):
        sampling.read_seeds_csv(many, 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("y,x\n1,nan\n")
    with pytest.raises(DataError, match="bad.csv: line 2"):
        sampling.read_seeds_csv(bad, 2)


def test_layout_paths_for_stardist_and_cellpose(tmp_path):
    name = writers.sample_name(123)
    assert name == "sample_000123" and writers.sample_name(1234567, "x") == "x_1234567"
    stardist = writers.Layout(tmp_path, "stardist")
    assert stardist.image_path(name) == tmp_path / "images" / "sample_000123.tif"
    assert stardist.mask_path(name) == tmp_path / "masks" / "sample_000123.tif"
    cellpose = writers.Layout(tmp_path, "cellpose")
    assert cellpose.image_path(name) == tmp_path / "sample_000123.tif"
    assert cellpose.mask_path(name) == tmp_path / "sample_000123_masks.tif"
    with pytest.raises(ValueError, match="layout"):
        writers.Layout(tmp_path, "coco")


def test_shard_manifests_merge_only_when_complete(tmp_path):
    header = {"settings": {"seed": 0}}
    writers.write_manifest(writers.manifest_path(tmp_path, 0, 2), header, {"s_0": {"index": 0}}, 1)
    assert writers.merge_shards(tmp_path, header, 2, 2) is None  # shard 1 missing
    writers.write_manifest(writers.manifest_path(tmp_path, 1, 2), header, {"s_1": {"index": 1}}, 1)
    merged = writers.merge_shards(tmp_path, header, 2, 2)
    assert sorted(merged["samples"]) == ["s_0", "s_1"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["summary"]["complete"] and on_disk["format"] == writers.FORMAT
    assert len(writers.read_manifests(tmp_path)) == 3
    assert writers.settings_mismatch({"seed": 0, "shape": (4, 4)}, {"seed": 1, "shape": [4, 4]}) == {
        "seed": (0, 1)
    }


def test_options_validate_what_flags_cannot():
    with pytest.raises(ValueError, match="shard_index"):
        SynthesisOptions(models="m", out="o", n=2, num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match="`n` is required"):
        SynthesisOptions(models="m", out="o")
    with pytest.raises(ValueError, match="arrangement"):
        SynthesisOptions(models="m", out="o", n=1, arrangement="grid")


def test_coloring_reuses_palette_colors_rather_than_failing():
    from nucgen_tf import geometry
    from nucgen_tf.synthesis.pipeline import color_nuclei

    # 20 ellipses around one point: every pair overlaps, so no palette of 12 can color them.
    centers = np.array([[32.0 + i % 4, 32.0 + i // 4] for i in range(20)])
    boxes = geometry.Boxes(centers, np.full((20, 2), 30.0))
    colors, margin = color_nuclei(boxes, None, 3.0, np.random.default_rng(0))
    assert margin == -1.0
    assert set(colors) == set(boxes.ids.tolist())
    assert all(0 <= c < len(geometry.PALETTE) for c in colors.values())


@pytest.mark.parametrize("ndim", [2, 3])
def test_an_empty_field_is_judged_against_a_level_not_otsu(ndim):
    rng = np.random.default_rng(0)
    shape = (24, 24) if ndim == 2 else (6, 24, 24)
    empty = np.zeros(shape, np.int32)
    noise = rng.normal(100, 5, shape)  # a dark field: Otsu splits its noise in two
    assert alignment.alignment_report(noise, empty)["flagged"]
    assert not alignment.alignment_report(noise, empty, empty_threshold=500.0)["flagged"]
    stripe = noise.copy()
    stripe[..., 10:14] = 1000.0  # something bright painted where the mask has nothing
    assert alignment.alignment_report(stripe, empty, empty_threshold=500.0)["flagged"]
    # Samples with nuclei keep Otsu whatever the level.
    labels = empty.copy()
    labels[..., 10:14] = 1
    assert alignment.alignment_report(stripe, labels, empty_threshold=5000.0)["score"] > 0.95
