"""Parametric star-convex nucleus masks (nucgen_tf.phantoms.polygons), 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import points_in_poly

from nucgen_tf.phantoms import polygons as P

SHAPES = {2: (96, 96), 3: (24, 48, 48)}


def _config(ndim: int, **kw) -> P.PolygonConfig:
    values = {"shape": SHAPES[ndim], "n_nuclei": (8, 8), "radius": (4.0, 7.0), "allow_cut": False}
    values.update(kw)
    return P.PolygonConfig(**values)


@pytest.mark.parametrize("ndim", [2, 3])
def test_labels_consecutive_one_piece_and_apart(ndim):
    config = _config(ndim, min_gap=2)
    labels = P.polygon_labels(config, np.random.default_rng(0))
    assert labels.shape == SHAPES[ndim] and labels.dtype == np.int32
    n = int(labels.max())
    assert n >= 5  # 8 asked; a crowded canvas may refuse a few, never most
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    face = ndimage.generate_binary_structure(ndim, 1)
    full = ndimage.generate_binary_structure(ndim, ndim)
    for label in range(1, n + 1):
        member = labels == label
        assert ndimage.label(member, structure=face)[1] == 1
        # min_gap=2: no other nucleus within chessboard distance 2.
        near = ndimage.binary_dilation(member, full, iterations=2)
        assert set(np.unique(labels[near])) <= {0, label}


@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_gap_never_overwrites_a_placed_nucleus(ndim):
    config = _config(ndim, n_nuclei=(30, 30), min_gap=0, radius=(4.0, 5.0))
    labels = P.polygon_labels(config, np.random.default_rng(1))
    # Labels hold one id per pixel, so "no overlap" means no nucleus lost pixels to another:
    # each keeps (about) its full volume when rendered whole (allow_cut=False).
    radii = P.equivalent_radii(labels, exclude_border=False)
    assert len(radii) == labels.max() >= 10
    assert radii.min() >= 4.0 - 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_sizes_within_requested_range(ndim):
    config = _config(
        ndim, n_nuclei=(8, 8), radius=(5.0, 6.0), log_radius_mean=math.log(5.5), log_radius_std=0.3
    )
    labels = P.polygon_labels(config, np.random.default_rng(2))
    radii = P.equivalent_radii(labels, exclude_border=False)
    assert len(radii) >= 6
    # Digitization moves the pixel count of a shape of equivalent radius R by about its surface
    # times half a pixel: allow +-0.6 px around the requested range.
    assert radii.min() >= 5.0 - 0.6 and radii.max() <= 6.0 + 0.6


@pytest.mark.parametrize("ndim", [2, 3])
def test_deterministic_under_a_seed(ndim):
    config = _config(ndim)
    a = P.polygon_labels(config, np.random.default_rng(7))
    b = P.polygon_labels(config, np.random.default_rng(7))
    c = P.polygon_labels(config, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cut_nuclei_keep_the_visible_share():
    config = P.PolygonConfig(shape=(40, 40), n_nuclei=(30, 30), radius=(6.0, 6.0), min_visible=0.6)
    labels = P.polygon_labels(config, np.random.default_rng(3))
    sizes = np.bincount(labels.ravel())[1:]
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    assert len(touching[touching > 0]) >= 1  # some nuclei are cut by the border ...
    assert sizes.min() >= 0.6 * math.pi * 36 - 12  # ... but each keeps >= 60% (minus digitization)


@pytest.mark.parametrize("ndim", [2, 3])
def test_star_shape_volume_is_the_requested_ball_volume(ndim):
    config = _config(ndim)
    shape = P.random_star_shape(ndim, 9.0, config, np.random.default_rng(4))
    assert shape.volume == pytest.approx(P.unit_ball_volume(ndim) * 9.0**ndim, rel=1e-9)
    # The rendered pixel count approaches the exact volume (digitization error ~ surface / 2).
    _, mask = P._render(shape, np.zeros(ndim))
    assert abs(mask.sum() - shape.volume) < 0.05 * shape.volume


def test_2d_shape_is_the_polygon_through_its_vertices():
    config = _config(2)
    shape = P.random_star_shape(2, 10.0, config, np.random.default_rng(5))
    vertices = shape.directions * shape.radii[:, None]
    order = np.argsort(np.arctan2(vertices[:, 0], vertices[:, 1]))
    grid = np.stack(np.meshgrid(np.arange(-20, 21), np.arange(-20, 21), indexing="ij"), axis=-1).reshape(
        -1, 2
    )
    inside = shape.gauge(grid.T.astype(float)) <= 1.0
    reference = points_in_poly(grid.astype(float), vertices[order])
    # Points exactly on an edge may go either way.
    assert np.count_nonzero(inside != reference) <= 4
    assert inside.sum() > 250


def test_regular_polygon_area_formula():
    n, r = 12, 5.0
    angles = 2 * np.pi * np.arange(n) / n
    directions = np.stack([np.sin(angles), np.cos(angles)], axis=1)
    facets = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    inverses = np.linalg.inv(np.transpose(directions[facets], (0, 2, 1)))
    shape = P.StarShape(directions, np.full(n, r), facets, inverses)
    assert shape.volume == pytest.approx(0.5 * n * r**2 * math.sin(2 * math.pi / n))


def test_fit_follows_real_sizes_and_counts():
    labels = np.zeros((100, 100), np.int32)
    yy, xx = np.mgrid[:100, :100]
    centres = [(20, 20, 5), (20, 60, 5), (60, 20, 8), (60, 60, 8)]
    for i, (y, x, r) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i
    config = P.fit_polygon_config([labels, labels], (50, 50), min_size=1)
    radii = P.equivalent_radii(labels)
    assert config.radius[0] == pytest.approx(np.percentile(radii, 2))
    assert config.radius[1] == pytest.approx(np.percentile(radii, 98))
    assert config.log_radius_mean == pytest.approx(np.log(radii).mean())
    assert 4.5 < math.exp(config.log_radius_mean) < 8.5
    assert config.n_nuclei == (1, 1)  # 4 nuclei per 10,000 px -> 1 per 2,500 px
    assert config.shape == (50, 50)


def test_equivalent_radii_excludes_border_nuclei():
    labels = np.zeros((20, 20), np.int32)
    labels[0:4, 0:4] = 1  # touches the border
    labels[8:12, 8:12] = 2
    np.testing.assert_allclose(P.equivalent_radii(labels), [math.sqrt(16 / math.pi)])
    assert len(P.equivalent_radii(labels, exclude_border=False)) == 2


def test_config_rejects_bad_ranges():
    with pytest.raises(ValueError, match="radius"):
        P.PolygonConfig(radius=(8.0, 4.0))


def test_config_rejects_too_few_rays():
    with pytest.raises(ValueError, match="n_rays"):
        P.PolygonConfig(shape=(8, 32, 32), n_rays=3)


def test_fit_rejects_masks_without_instances():
    with pytest.raises(ValueError, match="No instance"):
        P.fit_polygon_config([np.zeros((16, 16), np.int32)], (16, 16))
