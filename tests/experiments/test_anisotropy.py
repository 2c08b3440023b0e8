"""Anisotropic grids in the baselines (issue 7): fitted pixel size, flat polygons, physical elastic field.

On isotropic data (BBBC039) nothing may change: the fit says "isotropic" and the old pixel
code paths run bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from nucgen_tf import phantoms
from nucgen_tf.experiments import baselines
from nucgen_tf.phantoms import polygons as P

SHAPES = {2: (96, 96), 3: (24, 64, 64)}
ANISOTROPIC = {2: (1.6, 1.0), 3: (2.0, 1.0, 1.0)}


def _phantom_masks(ndim: int, spacing, n: int = 3) -> list[np.ndarray]:
    shape = SHAPES[ndim]
    radius = (6.0, 8.0)
    config = phantoms.PhantomConfig(shape=shape, spacing=spacing, n_nuclei=6, radius=radius, clustering=0.0)
    return [phantoms.place_nuclei(config, np.random.default_rng(seed)) for seed in range(n)]


@pytest.mark.parametrize("ndim", [2, 3])
def test_fit_spacing_finds_the_coarse_axis_of_phantom_masks(ndim):
    spacing = ANISOTROPIC[ndim]
    fitted = P.fit_spacing(_phantom_masks(ndim, spacing))
    assert len(fitted) == ndim and fitted[-1] == 1.0
    np.testing.assert_allclose(fitted, spacing, rtol=0.15)


@pytest.mark.parametrize("ndim", [2, 3])
def test_fit_spacing_of_isotropic_masks_is_empty(ndim):
    assert P.fit_spacing(_phantom_masks(ndim, (1.0,) * ndim)) == ()


def test_fit_spacing_without_inner_instances_is_empty():
    labels = np.zeros((20, 20), np.int32)
    labels[:5, :5] = 1  # touches the border: its spread is cut
    assert P.fit_spacing([labels]) == ()


def test_bbbc039_stays_isotropic(bbbc039_train):
    """The 2D experiment's p+CycleGAN masks are made exactly as before spacing existed."""
    masks = baselines.real_labels(bbbc039_train)[:5]
    assert P.fit_spacing(masks) == ()
    assert baselines.fitted_polygons(bbbc039_train, (64, 64)).spacing == ()


@pytest.mark.parametrize("ndim", [2, 3])
def test_polygons_on_an_anisotropic_grid_are_flattened_and_physically_sized(ndim):
    spacing = ANISOTROPIC[ndim]
    config = P.PolygonConfig(
        shape=SHAPES[ndim],
        n_nuclei=(8, 8),
        radius=(6.0, 7.0),
        allow_cut=False,
        spacing=spacing,
        elongation=(1, 1.2),
    )
    labels = P.polygon_labels(config, np.random.default_rng(4))
    assert labels.max() >= 5
    np.testing.assert_allclose(P.fit_spacing([labels]), spacing, rtol=0.2)
    radii = P.equivalent_radii(labels, exclude_border=False, spacing=spacing)
    assert np.all(radii > 6.0 - 1.0) and np.all(radii < 7.0 + 1.0)
    face = ndimage.generate_binary_structure(ndim, 1)
    for label in range(1, labels.max() + 1):
        assert ndimage.label(labels == label, structure=face)[1] == 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_fit_polygon_config_keeps_physical_radii_and_spacing(ndim):
    spacing = ANISOTROPIC[ndim]
    masks = _phantom_masks(ndim, spacing)
    fitted = P.fit_polygon_config(masks, SHAPES[ndim], min_size=10, spacing=spacing)
    pixels = P.fit_polygon_config(masks, SHAPES[ndim], min_size=10)
    assert fitted.spacing == spacing and pixels.spacing == ()
    # Physical radii are larger than pixel radii by the cube (square) root of the voxel volume.
    scale = np.prod(spacing) ** (1.0 / ndim)
    assert fitted.log_radius_mean == pytest.approx(pixels.log_radius_mean + np.log(scale))
    assert fitted.n_nuclei == pixels.n_nuclei


def test_polygon_config_rejects_spacing_of_another_ndim():
    with pytest.raises(ValueError, match="spacing"):
        P.PolygonConfig(shape=(8, 16, 16), spacing=(2.0, 1.0))


@pytest.mark.parametrize("ndim", [2, 3])
def test_elastic_field_is_physical(ndim):
    spacing = ANISOTROPIC[ndim]
    fields = baselines.elastic_displacement(SHAPES[ndim], 6.0, 8.0, np.random.default_rng(0), spacing)
    peaks = [float(np.abs(f).max()) for f in fields]
    np.testing.assert_allclose(peaks, [6.0 / s for s in spacing])
    iso = baselines.elastic_displacement(SHAPES[ndim], 6.0, 8.0, np.random.default_rng(0))
    np.testing.assert_allclose([float(np.abs(f).max()) for f in iso], 6.0)
    # Smoothness is physical too: along the coarse axis neighbouring pixels differ more.
    coarse = np.abs(np.diff(fields[-1], axis=0)).mean() / np.abs(np.diff(iso[-1], axis=0)).mean()
    assert coarse > 1.2


@pytest.mark.parametrize("ndim", [2, 3])
def test_elastic_labels_without_spacing_is_the_pixel_deformation(ndim):
    """The reference is the pre-spacing implementation: the 2D experiment's r+p2p is unchanged."""
    labels = _phantom_masks(ndim, (1.0,) * ndim, n=1)[0]
    out = baselines.elastic_labels(labels, 6.0, 8.0, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in labels.shape), indexing="ij")
    coords = []
    for axis_grid in grid:
        field = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, labels.shape), 8.0, mode="reflect")
        field *= 6.0 / max(float(np.abs(field).max()), 1e-12)
        coords.append(axis_grid + field)
    warped = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0).astype(np.int32)
    structure = ndimage.generate_binary_structure(ndim, 1)
    for index, window in enumerate(ndimage.find_objects(warped)):
        if window is None:
            continue
        member = warped[window] == index + 1
        pieces, count = ndimage.label(member, structure=structure)
        if count > 1:
            warped[window][member & (pieces != np.argmax(np.bincount(pieces.ravel())[1:]) + 1)] = 0
    np.testing.assert_array_equal(out, relabel_sequential(warped)[0])


def test_elastic_labels_with_spacing_keeps_3d_nuclei_whole():
    labels = _phantom_masks(3, ANISOTROPIC[3], n=1)[0]
    out = baselines.elastic_labels(labels, 6.0, 12.0, np.random.default_rng(1), ANISOTROPIC[3])
    assert out.shape == labels.shape and out.dtype == np.int32
    np.testing.assert_array_equal(np.unique(out), np.arange(out.max() + 1))
    assert out.max() == labels.max()
    face = ndimage.generate_binary_structure(3, 1)
    for label in range(1, out.max() + 1):
        assert ndimage.label(out == label, structure=face)[1] == 1
