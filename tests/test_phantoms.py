"""Tests for nucgen_tf.phantoms: ellipsoid nuclei and simulated fluorescence."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf import phantoms


def _touching(labels: np.ndarray) -> bool:
    """Some pair of different labels is face-adjacent."""
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        first, second = a[1:], a[:-1]
        if np.any((first != second) & (first > 0) & (second > 0)):
            return True
    return False


@pytest.fixture(scope="module", params=[2, 3])
def clustered_example(request):
    return request.param, phantoms.example(request.param, seed=0, kind="clustered")


def test_example_shapes_dtypes_and_labels(clustered_example):
    ndim, (image, labels) = clustered_example
    expected = phantoms.EXAMPLE_SHAPE_2D if ndim == 2 else phantoms.EXAMPLE_SHAPE_3D
    assert image.shape == labels.shape == expected
    assert image.dtype == np.uint16 and labels.dtype == np.int32
    assert image.max() <= 4095
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))  # consecutive
    assert 15 <= labels.max() <= 60


def test_example_nuclei_brighter_than_background(clustered_example):
    _, (image, labels) = clustered_example
    assert image[labels > 0].mean() > 2 * image[labels == 0].mean()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["clustered", "crowded"])
def test_example_has_touching_nuclei(ndim, kind):
    shape = (128, 128) if ndim == 2 else (24, 64, 64)
    _, labels = phantoms.example(ndim, shape=shape, seed=1, kind=kind)
    assert labels.max() >= 3 and _touching(labels)


@pytest.mark.parametrize("ndim", [2, 3])
def test_example_is_deterministic(ndim):
    shape = (96, 96) if ndim == 2 else (16, 48, 48)
    image, labels = phantoms.example(ndim, shape=shape, seed=3, kind="random")
    again_image, again_labels = phantoms.example(ndim, shape=shape, seed=3, kind="random")
    other_image, _ = phantoms.example(ndim, shape=shape, seed=4, kind="random")
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(labels, again_labels)
    assert not np.array_equal(image, other_image)


def test_example_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ndim"):
        phantoms.example(4)


def test_example_rejects_mismatched_shape():
    with pytest.raises(ValueError, match="shape"):
        phantoms.example(2, shape=(8, 8, 8))


@pytest.mark.parametrize("ndim", [2, 3])
def test_single_round_nucleus_has_the_ball_volume(ndim):
    shape = (41,) * ndim
    labels = phantoms.ellipsoid_labels(
        np.array([[20.0] * ndim]), shape, np.random.default_rng(0), radius_range=(8, 8), elongation=(1, 1)
    )
    volume = np.pi * 64 if ndim == 2 else 4 / 3 * np.pi * 512
    assert labels.max() == 1
    assert abs((labels == 1).sum() / volume - 1) < 0.05


def test_anisotropic_spacing_keeps_nuclei_round_physically():
    labels = phantoms.ellipsoid_labels(
        np.array([[10.0, 20.0, 20.0]]), (21, 41, 41), np.random.default_rng(0),
        radius_range=(8.5, 8.5), elongation=(1, 1), spacing=(2.0, 1.0, 1.0),
    )
    extent = [np.ptp(np.nonzero(labels)[axis]) + 1 for axis in range(3)]
    assert extent[0] == 9 and extent[1] == extent[2] == 17  # 8.5 physical = 4 Z slices each side


def test_elongation_and_rotation_vary_shapes():
    rng = np.random.default_rng(2)
    seeds = np.array([[20.0, 20.0], [20.0, 60.0], [60.0, 20.0], [60.0, 60.0]])
    labels = phantoms.ellipsoid_labels(seeds, (80, 80), rng, radius_range=(8, 8), elongation=(1.5, 1.6))
    ratios = []
    for label in range(1, 5):
        coords = np.argwhere(labels == label).astype(float)
        eigen = np.linalg.eigvalsh(np.cov(coords.T))
        ratios.append(np.sqrt(eigen[1] / eigen[0]))
    assert min(ratios) > 1.35  # elongated ~1.55 : 1
    orientations = {tuple(np.ptp(np.argwhere(labels == k), 0)) for k in range(1, 5)}
    assert len(orientations) > 1


def test_overlapping_ellipsoids_split_and_touch():
    seeds = np.array([[20.0, 16.0], [20.0, 26.0]])
    labels = phantoms.ellipsoid_labels(seeds, (40, 44), np.random.default_rng(0), radius_range=(8, 8),
                                       elongation=(1, 1))
    assert labels.max() == 2 and _touching(labels)
    # Equal circles meet along the perpendicular bisector x = 21.
    rows = labels[12:29]
    assert np.all(rows[:, 20][rows[:, 20] > 0] == 1) and np.all(rows[:, 22][rows[:, 22] > 0] == 2)


def test_min_size_drops_small_instances_and_relabels():
    seeds = np.array([[10.0, 10.0], [30.0, 30.0], [-5.0, 20.0]])  # the last one barely reaches in
    labels = phantoms.ellipsoid_labels(seeds, (40, 40), np.random.default_rng(0), radius_range=(6, 6),
                                       elongation=(1, 1), min_size=30)
    assert labels.max() == 2
    np.testing.assert_array_equal(np.unique(labels), [0, 1, 2])


def test_fluorescence_image_levels():
    labels = np.zeros((64, 64), np.int32)
    labels[16:48, 16:48] = 1
    image = phantoms.fluorescence_image(labels, np.random.default_rng(0), signal=(1000, 1000), texture=0.0)
    assert image.dtype == np.uint16
    assert abs(image[:8, :8].mean() - 100) < 5  # background far from the nucleus
    assert 900 < image[24:40, 24:40].mean() - 100 < 1300
    saturated = phantoms.fluorescence_image(labels, np.random.default_rng(0), signal=(9000, 9000))
    assert saturated.max() == 4095


def test_fluorescence_image_rejects_bad_blur():
    labels = np.zeros((8, 8), np.int32)
    with pytest.raises(ValueError, match="blur_sigma"):
        phantoms.fluorescence_image(labels, np.random.default_rng(0), blur_sigma=(1.0, 1.0, 1.0))
