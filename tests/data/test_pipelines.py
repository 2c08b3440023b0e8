"""Tests of the in-memory sources and the tf.data patch pipelines, on real data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage as ndi

from nucgen_tf import geometry, io
from nucgen_tf.config import NormConfig, PatchConfig, RenderConfig, SeedConfig
from nucgen_tf.data import pipelines, sources

RENDER = RenderConfig()
NORM = NormConfig()
RIM = 2 * RENDER.bv / (1 + RENDER.bv) - 1  # Eq. 1 rim value in network range (-0.6).
PATCH = {2: (64, 64), 3: (8, 32, 32)}


@pytest.fixture(scope="module")
def samples_by_ndim(bbbc039_train, stardist_3d):
    """Three BBBC039 train images (2D) and the StarDist example volume (3D), loaded once."""
    two_d, _ = sources.load_arrays(io.list_pairs(bbbc039_train), 2, NORM, RENDER, max_files=3)
    three_d, _ = sources.load_arrays(stardist_3d, 3, NORM, RENDER)
    return {2: two_d, 3: three_d}


def _patch(ndim, **kw) -> PatchConfig:
    return PatchConfig(patch_shape=PATCH[ndim], **{"batch_size": 2, "seed": 3, **kw})


def _take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def _palette() -> np.ndarray:
    return np.asarray(geometry.PALETTE, np.float32)


# ---------------------------------------------------------------- sources


def test_load_arrays(bbbc039_train):
    pairs = io.list_pairs(bbbc039_train)[:2]
    samples, stats = sources.load_arrays(pairs, 2, NORM, RENDER)
    assert [s.name for s in samples] == [p.name for p in pairs]
    assert stats.num_images == 2 and stats.dtype == "uint16"
    for s in samples:
        assert s.image.dtype == np.float32 and s.image.shape == (520, 696)
        assert s.image.min() >= -1 and s.image.max() <= 1
        assert s.labels.dtype == np.int32 and s.labels.shape == (520, 696)
        assert s.lut.shape == (s.labels.max() + 1,)
        assert s.norm_range[1] > s.norm_range[0]
    # Given stats are used as they are (validation data normalized like training data).
    again, same = sources.load_arrays(pairs[:1], 2, NORM, RENDER, stats=stats)
    assert same is stats
    np.testing.assert_array_equal(again[0].image, samples[0].image)


def test_lut_colors_touching_nuclei_differently(samples_by_ndim):
    for ndim in (2, 3):
        for s in samples_by_ndim[ndim]:
            assert np.all((s.lut[1:] >= 0) & (s.lut[1:] < len(geometry.PALETTE)))
            # Face-neighbouring pixels of two different nuclei must have different colors.
            for axis in range(ndim):
                a = np.moveaxis(s.labels, axis, 0)
                left, right = a[:-1], a[1:]
                touching = (left > 0) & (right > 0) & (left != right)
                assert not np.any(s.lut[left[touching]] == s.lut[right[touching]])


def test_load_arrays_rejects_wrong_ndim(stardist_3d):
    with pytest.raises(io.DataError, match="synthetic3d_example"):
        sources.load_arrays(stardist_3d, 2, NORM, RENDER)


# ---------------------------------------------------------------- patch_dataset


@pytest.mark.parametrize("ndim", [2, 3])
def test_patch_dataset_spec_and_ranges(samples_by_ndim, ndim):
    patch = _patch(ndim)
    ds = pipelines.patch_dataset(samples_by_ndim[ndim], patch, RENDER, NORM)
    shape = (2, *PATCH[ndim])
    expected = {
        "image": (shape + (1,), tf.float32),
        "labels": (shape, tf.int32),
        "seed_map": (shape + (1,), tf.float32),
        "box_map": (shape + (1,), tf.float32),
        "ellipses": (shape + (3,), tf.float32),
        "mask": (shape + (4,), tf.float32),
        "norm_range": ((2, 2), tf.float32),
    }
    assert {k: (tuple(s.shape), s.dtype) for k, s in ds.element_spec.items()} == expected
    palette = 2 * _palette() - 1
    n_nuclei = 0
    for batch in _take(ds, 3):
        for key in ("image", "seed_map", "box_map", "ellipses", "mask"):
            assert batch[key].min() >= -1 and batch[key].max() <= 1, key
        assert batch["labels"].min() >= 0
        assert np.all(np.isin(batch["seed_map"], [-1.0, 1.0]))
        assert np.all(np.isin(batch["mask"][..., 3], [-1.0, 1.0]))
        box = batch["box_map"]
        assert np.all((box == -1) | (box >= RIM - 1e-6))
        lo, hi = batch["norm_range"][:, 0], batch["norm_range"][:, 1]
        assert np.all(hi > lo) and np.all(lo > 0)
        # Every colored pixel carries a palette color.
        colors = batch["ellipses"].reshape(-1, 3)
        colors = np.unique(colors[np.any(colors > -1, axis=1)], axis=0)
        assert all(np.any(np.all(np.isclose(c, palette), axis=1)) for c in colors)
        n_nuclei += sum(len(np.unique(lab)) - 1 for lab in batch["labels"])
    assert n_nuclei > 6  # The patches do show nuclei.


@pytest.mark.parametrize("ndim", [2, 3])
def test_patch_dataset_alignment(samples_by_ndim, ndim):
    samples = samples_by_ndim[ndim]
    palette = 2 * _palette() - 1
    ds = pipelines.patch_dataset(samples, _patch(ndim, permute_colors=False), RENDER, NORM)
    checked = 0
    for batch in _take(ds, 3):
        for i in range(2):
            labels = batch["labels"][i]
            foreground = labels > 0
            mask, box, seed = batch["mask"][i], batch["box_map"][i, ..., 0], batch["seed_map"][i, ..., 0]
            # Mask colors exactly cover the nuclei, boundaries lie inside them.
            np.testing.assert_array_equal(np.any(mask[..., :3] > -1, axis=-1), foreground)
            assert np.all(foreground[mask[..., 3] > 0])
            # Box-map ovals lie inside the nuclei's bounding boxes; seeds at the box centres.
            inside_boxes = np.zeros_like(foreground)
            for window in ndi.find_objects(labels):
                if window is not None:
                    inside_boxes[window] = True
            assert np.all(inside_boxes[box > -1])
            boxes = geometry.boxes_from_labels(labels)
            for center, extent in zip(boxes.centers, boxes.extents):
                pixel = tuple(np.round(center).astype(int))
                assert seed[pixel] == 1.0
                # No nucleus vanishes from the box map; sizeable ones peak inside the rim.
                # (A 2-px-thin sliver, e.g. cut by the patch border, may be a single rim pixel.)
                low, high = center - (extent - 1) / 2, center + (extent - 1) / 2
                window = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high))
                assert box[window].max() >= RIM - 1e-6
                if extent.min() >= 4:
                    assert box[pixel] > RIM
            # Colors agree between the mask and the whole-image lookup table; bright nuclei.
            if foreground.any():
                lut = _lut_for(samples, batch["norm_range"][i])
                np.testing.assert_allclose(mask[foreground][:, :3], palette[lut[labels[foreground]]])
                image = batch["image"][i, ..., 0]
                if (~foreground).any():
                    assert image[foreground].mean() > image[~foreground].mean() + 0.3
                checked += 1
    assert checked >= 4


def _lut_for(samples, norm_range):
    """The source sample of a patch, identified by its (unique) normalization range."""
    matches = [s for s in samples if np.allclose(s.norm_range, norm_range)]
    assert len(matches) == 1
    return matches[0].lut


def test_eval_patches_are_unaugmented_windows(samples_by_ndim):
    """Eval: files in order, once each, crops taken as they are from the sample."""
    samples = samples_by_ndim[2]
    ds = pipelines.patch_dataset(samples, _patch(2, batch_size=1), RENDER, NORM, training=False)
    batches = _take(ds, 10)
    assert len(batches) == len(samples)
    for sample, batch in zip(samples, batches):
        image, labels = batch["image"][0, ..., 0], batch["labels"][0]
        limit = np.asarray(sample.image.shape) - 64
        candidates = np.argwhere(sample.image == image[0, 0])
        origins = [
            (y, x)
            for y, x in candidates
            if y <= limit[0] and x <= limit[1] and np.array_equal(sample.image[y : y + 64, x : x + 64], image)
        ]
        assert len(origins) == 1
        y, x = origins[0]
        np.testing.assert_array_equal(labels, sample.labels[y : y + 64, x : x + 64])


def test_3d_patch_larger_than_volume_is_padded(samples_by_ndim):
    (volume,) = samples_by_ndim[3]
    assert volume.image.shape[0] == 31
    patch = PatchConfig(patch_shape=(32, 32, 32), batch_size=1, seed=0)
    (batch,) = _take(pipelines.patch_dataset([volume], patch, RENDER, NORM, training=False), 1)
    labels, image = batch["labels"][0], batch["image"][0, ..., 0]
    # One padded slice (the deficit of 1 goes after the volume): no nuclei, darkest value.
    assert labels[31].max() == 0
    np.testing.assert_array_equal(image[31], volume.image.min())
    assert labels[:31].max() > 0


@pytest.mark.parametrize("ndim", [2, 3])
def test_patch_dataset_deterministic(samples_by_ndim, ndim):
    samples = samples_by_ndim[ndim]

    def first(seed, n=3):
        ds = pipelines.patch_dataset(samples, _patch(ndim, seed=seed), RENDER, NORM)
        return _take(ds, n)

    a, b, c = first(1), first(1), first(2)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_same_dataset_iterated_twice_is_identical(samples_by_ndim):
    ds = pipelines.patch_dataset(samples_by_ndim[2], _patch(2), RENDER, NORM, outputs=("box_map",))
    first, second = _take(ds, 4), _take(ds, 4)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["box_map"], y["box_map"])


def test_training_visits_every_file_each_epoch(samples_by_ndim):
    samples = samples_by_ndim[2]
    patch = _patch(2, batch_size=1, flips=False, rot90=False)
    batches = _take(pipelines.patch_dataset(samples, patch, RENDER, NORM, outputs=()), 3 * len(samples))
    ranges = [tuple(b["norm_range"][0]) for b in batches]
    epochs = [ranges[i : i + len(samples)] for i in range(0, len(ranges), len(samples))]
    assert all(len(set(e)) == len(samples) for e in epochs)
    assert len(set(map(tuple, epochs))) > 1  # Reshuffled between epochs.
    assert set(batches[0]) == {"image", "labels", "norm_range"}


def test_patch_dataset_from_folder_with_max_files(bbbc039_train):
    patch = PatchConfig(patch_shape=(32, 32), batch_size=2, seed=0)
    ds = pipelines.patch_dataset(bbbc039_train, patch, RENDER, NORM, training=False, max_files=2,
                                 outputs=("mask",))
    batches = _take(ds, 5)
    assert len(batches) == 1
    assert batches[0]["mask"].shape == (2, 32, 32, 4)


def test_patch_dataset_rejects_unknown_output(samples_by_ndim):
    with pytest.raises(ValueError, match="outputs"):
        pipelines.patch_dataset(samples_by_ndim[2], _patch(2), RENDER, NORM, outputs=("boxes",))


def test_patch_dataset_rejects_ndim_mismatch(samples_by_ndim):
    with pytest.raises(ValueError, match="3 dims"):
        pipelines.patch_dataset(samples_by_ndim[3], _patch(2), RENDER, NORM)


# ---------------------------------------------------------------- stage datasets


@pytest.mark.parametrize("ndim", [2, 3])
def test_stage_datasets_element_specs(samples_by_ndim, ndim):
    samples, patch = samples_by_ndim[ndim], _patch(ndim)
    shape = (2, *PATCH[ndim])
    cases = {
        "stage1": (pipelines.stage1_dataset(samples, patch, RENDER, NORM, SeedConfig()), (1, 1)),
        "stage2": (pipelines.stage2_dataset(samples, patch, RENDER, NORM), (3, 4)),
        "stage3": (pipelines.stage3_dataset(samples, patch, RENDER, NORM), (4, 1)),
    }
    for name, (ds, channels) in cases.items():
        spec = ds.element_spec
        assert [tuple(s.shape) for s in spec] == [shape + (c,) for c in channels], name
        assert all(s.dtype == tf.float32 for s in spec), name
        a, b = _take(ds, 1)[0]
        assert a.min() >= -1 and a.max() <= 1 and b.min() >= -1 and b.max() <= 1, name


def test_stage1_pairs_artificial_seeds_with_real_boxes(samples_by_ndim):
    samples, patch = samples_by_ndim[2], _patch(2)
    seeds = SeedConfig(density=20.0)
    batches = _take(pipelines.stage1_dataset(samples, patch, RENDER, NORM, seeds), 4)
    again = _take(pipelines.stage1_dataset(samples, patch, RENDER, NORM, seeds), 4)
    for (a, b), (a2, b2) in zip(batches, again):
        np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(b, b2)
        assert np.all(np.isin(a, [-1.0, 1.0]))
        assert np.all((b == -1) | (b >= RIM - 1e-6))
    seed_maps = np.concatenate([a for a, _ in batches])
    assert all(np.any(m > 0) for m in seed_maps)  # Density 20 / 10^4 px: ~8 seeds per patch.
    assert len({m.tobytes() for m in seed_maps}) == len(seed_maps)
    # Domain A is artificial: its dots are not the real box centres of the paired B side.
    real = pipelines.patch_dataset(samples, patch, RENDER, NORM, outputs=("seed_map",))
    real_seeds = np.concatenate([b["seed_map"] for b in _take(real, 4)])
    assert not np.array_equal(seed_maps, real_seeds)


def test_stage2_and_stage3_pairs_are_aligned(samples_by_ndim):
    samples, patch = samples_by_ndim[2], _patch(2)
    (ellipses, mask), = _take(pipelines.stage2_dataset(samples, patch, RENDER, NORM), 1)
    (mask3, image), = _take(pipelines.stage3_dataset(samples, patch, RENDER, NORM), 1)
    (full,) = _take(pipelines.patch_dataset(samples, patch, RENDER, NORM), 1)
    np.testing.assert_array_equal(ellipses, full["ellipses"])
    np.testing.assert_array_equal(mask, full["mask"])
    np.testing.assert_array_equal(mask3, full["mask"])
    np.testing.assert_array_equal(image, full["image"])


def test_unpaired_zips_two_domains():
    a = tf.data.Dataset.range(3)
    b = tf.data.Dataset.range(10, 20)
    pairs = list(itertools.islice(pipelines.unpaired(a, b).as_numpy_iterator(), 5))
    assert pairs == [(0, 10), (1, 11), (2, 12)]


@pytest.mark.parametrize("ndim", [2, 3])
def test_permuted_colors_are_a_consistent_relabelling_of_the_classes(samples_by_ndim, ndim):
    samples = samples_by_ndim[ndim]
    palette = 2 * _palette() - 1
    ds = pipelines.patch_dataset(samples, _patch(ndim), RENDER, NORM, outputs=("mask", "ellipses"))
    seen, changed = set(), 0
    for batch in _take(ds, 4):
        for i in range(2):
            labels, mask = batch["labels"][i], batch["mask"][i]
            if not (labels > 0).any():
                continue
            lut = _lut_for(samples, batch["norm_range"][i])
            colors = {}
            for label in np.unique(labels[labels > 0]):
                rgb = np.unique(mask[labels == label][:, :3], axis=0)
                assert len(rgb) == 1  # one palette color per nucleus
                index = int(np.argmin(np.abs(palette - rgb[0]).sum(axis=1)))
                np.testing.assert_allclose(palette[index], rgb[0])
                colors[int(label)] = index
            # Same class -> same color, different classes -> different colors.
            by_class = {}
            for label, index in colors.items():
                by_class.setdefault(int(lut[label]), set()).add(index)
            assert all(len(v) == 1 for v in by_class.values())
            assert len({next(iter(v)) for v in by_class.values()}) == len(by_class)
            changed += any(lut[label] != index for label, index in colors.items())
            seen |= set(colors.values())
    assert changed > 0 and len(seen) > 2


def test_permute_palette_keeps_primary_colorings_primary():
    rng = np.random.default_rng(0)
    lut = np.array([-1, 0, 1, 0, 2, -1], np.int32)
    for _ in range(20):
        out = pipelines.permute_palette(lut, rng)
        assert out[0] == -1 and out[5] == -1 and out[1] == out[3]
        assert len({out[1], out[2], out[4]}) == 3 and max(out) < geometry.N_PRIMARY
    wide = np.array([-1, *range(9)], np.int32)
    assert len(set(pipelines.permute_palette(wide, rng)[1:])) == 9
