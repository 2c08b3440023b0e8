"""Mask and image statistics on hand-made fields with known answers, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops

from nucgen_tf import realism
from nucgen_tf.realism import intensity, shapes


def ball(shape, center, radius, semi_axes=None) -> np.ndarray:
    """Boolean disc/ball (or ellipse/ellipsoid with `semi_axes`) in any ndim."""
    axes = np.asarray(semi_axes if semi_axes is not None else (radius,) * len(shape), float)
    grid = np.indices(shape).astype(float)
    offsets = (grid - np.asarray(center, float).reshape((-1,) + (1,) * len(shape))) / axes.reshape(
        (-1,) + (1,) * len(shape)
    )
    return (offsets**2).sum(0) <= 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_ball_is_solid_and_round(ndim):
    shape = (41,) * ndim
    labels = ball(shape, (20,) * ndim, 12).astype(np.int32)
    stats = shapes.mask_statistics(labels)
    assert stats["solidity"][0] == pytest.approx(regionprops(labels)[0].solidity)  # the usual convention
    assert stats["solidity"][0] > 0.94
    assert stats["aspect_ratio"][0] == pytest.approx(1.0, abs=0.02)
    assert stats["area"][0] == np.count_nonzero(labels)
    assert stats["touching"].tolist() == [0.0]
    assert stats["density"][0] == pytest.approx(10_000 / labels.size)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ellipse_aspect_ratio(ndim):
    semi = (10, 20) if ndim == 2 else (6, 6, 18)
    labels = ball((61,) * ndim, (30,) * ndim, None, semi).astype(np.int32)
    expected = max(semi) / min(semi)
    assert shapes.mask_statistics(labels)["aspect_ratio"][0] == pytest.approx(expected, rel=0.03)


def test_crescent_has_low_solidity():
    labels = (ball((61, 61), (30, 30), 20) & ~ball((61, 61), (30, 42), 18)).astype(np.int32)
    assert shapes.solidity(labels.astype(bool)) < 0.6


@pytest.mark.parametrize("ndim", [2, 3])
def test_two_touching_balls_and_one_apart(ndim):
    shape = (30,) + (80,) * (ndim - 1)
    labels = np.zeros(shape, np.int32)
    centers = [(15,) + (20,) * (ndim - 1), (15,) + (20,) * (ndim - 2) + (31,), (15,) + (60,) * (ndim - 1)]
    for label, center in enumerate(centers, start=1):
        labels[ball(shape, center, 6) & (labels == 0)] = label
    stats = shapes.mask_statistics(labels)
    assert stats["touching"].tolist() == [1.0, 1.0, 0.0]
    assert sorted(stats["clump_size"].tolist()) == [1.0, 2.0]
    assert stats["nn_distance"][:2] == pytest.approx([11.0, 11.0], abs=0.5)


def test_diagonal_contact_counts_as_touching():
    labels = np.zeros((6, 6), np.int32)
    labels[1:3, 1:3], labels[3:5, 3:5] = 1, 2
    assert shapes.touching(labels) == {1: True, 2: True}


def test_border_nuclei_are_left_out_of_shape_statistics_only():
    labels = np.zeros((60, 60), np.int32)
    labels[ball((60, 60), (30, 30), 8)] = 1
    labels[ball((60, 60), (2, 2), 8)] = 2  # cut by the corner
    stats = shapes.mask_statistics(labels, small_area=100)
    assert len(stats["area"]) == len(stats["solidity"]) == len(stats["small"]) == 1
    assert len(stats["touching"]) == 2
    assert stats["density"][0] == pytest.approx(2 * 10_000 / 3600)
    assert stats["small"].tolist() == [0.0]  # area ~200 >= 100
    assert shapes.mask_statistics(labels, small_area=500)["small"].tolist() == [1.0]


def test_thin_and_single_pixel_objects_are_finite():
    labels = np.zeros((3, 9, 9), np.int32)
    labels[1, 4, 4] = 1
    labels[1, 1, 1:8] = 2
    stats = shapes.mask_statistics(labels)
    assert np.all(np.isfinite(stats["aspect_ratio"])) and np.all(stats["solidity"] == 1.0)


@pytest.mark.parametrize("sigma", [2.0, 4.4, 10.0])
@pytest.mark.parametrize("ndim", [2, 3])
def test_background_noise_recovers_gaussian_sigma(ndim, sigma):
    rng = np.random.default_rng(int(sigma * 10))
    shape = (256, 256) if ndim == 2 else (24, 64, 64)
    ramp = np.linspace(0, 50, shape[-1])  # smooth illumination must not count as noise
    image = np.round(300 + ramp + rng.normal(0, sigma, shape))
    labels = np.zeros(shape, np.int32)
    labels[ball(shape, np.asarray(shape) // 2, 6)] = 1
    image[labels > 0] += 500
    stats = intensity.image_statistics(image, labels)
    assert stats["background_noise"][0] == pytest.approx(sigma, rel=0.1)
    assert stats["contrast"][0] == pytest.approx(500, rel=0.05)


def test_flat_nucleus_has_no_texture_and_blur_lowers_edge_sharpness():
    from scipy import ndimage as ndi

    labels = ball((64, 64), (32, 32), 12).astype(np.int32)
    image = 100.0 + 400.0 * labels
    sharp = intensity.image_statistics(image, labels)
    blurred = intensity.image_statistics(ndi.gaussian_filter(image, 2), labels)
    assert sharp["texture"][0] == pytest.approx(0.0, abs=1e-9)
    assert sharp["background_level"][0] == 100.0
    assert sharp["background_noise"][0] == 0.0
    assert blurred["edge_sharpness"][0] < 0.7 * sharp["edge_sharpness"][0]


def test_field_without_nuclei_still_has_background_figures():
    image = np.random.default_rng(0).normal(200, 3, (128, 128))
    m = realism.measure([(image, np.zeros((128, 128), np.uint16))])
    assert m["area"].size == 0 and m["contrast"].size == 0
    assert m["background_noise"][0] == pytest.approx(3, rel=0.1)
    assert m["density"].tolist() == [0.0]
