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
        np.array([[10.0, 20.0, 20.0]]),
        (21, 41, 41),
        np.random.default_rng(0),
        radius_range=(8.5, 8.5),
        elongation=(1, 1),
        spacing=(2.0, 1.0, 1.0),
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
    labels = phantoms.ellipsoid_labels(
        seeds, (40, 44), np.random.default_rng(0), radius_range=(8, 8), elongation=(1, 1)
    )
    assert labels.max() == 2 and _touching(labels)
    # Equal circles meet along the perpendicular bisector x = 21.
    rows = labels[12:29]
    assert np.all(rows[:, 20][rows[:, 20] > 0] == 1) and np.all(rows[:, 22][rows[:, 22] > 0] == 2)


def test_min_size_drops_small_instances_and_relabels():
    seeds = np.array([[10.0, 10.0], [30.0, 30.0], [-5.0, 20.0]])  # the last one barely reaches in
    labels = phantoms.ellipsoid_labels(
        seeds, (40, 40), np.random.default_rng(0), radius_range=(6, 6), elongation=(1, 1), min_size=30
    )
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


# --- BBBC024-like stand-in: deformed, clustered nuclei at two SNRs -------------------------------


def _small_config(ndim: int, **overrides) -> phantoms.PhantomConfig:
    """~12 nuclei of radius 6-8 on a small canvas: fast, still clumped at high clustering."""
    base = (
        {"shape": (24, 64, 64), "spacing": (2.0, 1.0, 1.0)}
        if ndim == 3
        else {"shape": (128, 128), "spacing": (1.0, 1.0)}
    )
    return phantoms.PhantomConfig(**{**base, "n_nuclei": 12, "radius": (6.0, 8.0), **overrides})


def _pieces(labels: np.ndarray) -> list[int]:
    """Face-connected pieces per label 1..N."""
    from scipy import ndimage

    counts = []
    for label, window in enumerate(ndimage.find_objects(labels), start=1):
        _, n = ndimage.label(labels[window] == label)
        counts.append(n)
    return counts


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("clustering", [0.0, 0.75])
def test_place_nuclei_consecutive_single_piece_labels(ndim, clustering):
    config = _small_config(ndim, clustering=clustering)
    labels = phantoms.place_nuclei(config, np.random.default_rng(0))
    assert labels.shape == config.shape and labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(labels), np.arange(config.n_nuclei + 1))
    assert _pieces(labels) == [1] * config.n_nuclei
    # Every nucleus keeps at least min_kept of the smallest possible undeformed nucleus.
    smallest = (np.pi * 6.0**2 if ndim == 2 else 4 / 3 * np.pi * 6.0**3) * 0.85**ndim
    voxel = float(np.prod(config.spacing))
    sizes = np.bincount(labels.ravel())[1:] * voxel
    assert sizes.min() >= config.min_kept * smallest * (1 - config.deformation * 3)


@pytest.mark.parametrize("ndim", [2, 3])
def test_clustered_pair_is_squeezed_along_a_flat_face_without_overlap(ndim):
    # Two equal spheres pushed together by 30% of the sum of radii: the overlap is split at the
    # bisector, so each keeps the ball minus the same cap and the contact face is flat.
    r = 8.0
    config = _small_config(
        ndim,
        n_nuclei=2,
        radius=(r, r),
        axis_ratio=(1, 1),
        deformation=0.0,
        clustering=1.0,
        squeeze=(0.3, 0.3),
    )
    labels = phantoms.place_nuclei(config, np.random.default_rng(3))
    assert labels.max() == 2 and phantoms.touching_fraction(labels) == 1.0
    spacing = np.asarray(config.spacing)
    points = [np.argwhere(labels == k) * spacing for k in (1, 2)]
    c1, c2 = (p.mean(0) for p in points)
    axis = (c2 - c1) / np.linalg.norm(c2 - c1)
    middle = (c1 + c2) / 2
    assert np.max((points[0] - middle) @ axis) <= 1.0 and np.min((points[1] - middle) @ axis) >= -1.0
    h = 0.3 * r  # cap height: centres 1.4 r apart
    if ndim == 2:
        expected = np.pi * r**2 - (r**2 * np.arccos((r - h) / r) - (r - h) * np.sqrt(2 * r * h - h**2))
    else:
        expected = 4 / 3 * np.pi * r**3 - np.pi * h**2 * (3 * r - h) / 3
    for p in points:
        assert abs(len(p) * np.prod(spacing) / expected - 1) < 0.06


def test_uniform_nuclei_never_touch_and_touching_rises_with_clustering():
    # 2D keeps this fast; 20 nuclei as in BBBC024 (with fewer, the fraction saturates early).
    means = []
    for level in phantoms.CLUSTERING_LEVELS:
        config = _small_config(2, clustering=level, n_nuclei=20)
        fractions = [
            phantoms.touching_fraction(phantoms.place_nuclei(config, np.random.default_rng([11, i])))
            for i in range(5)
        ]
        means.append(float(np.mean(fractions)))
    assert means[0] == 0.0  # clustering 0: every nucleus is placed with a gap
    assert all(b - a >= 0.1 for a, b in zip(means, means[1:])), means
    assert means[-1] >= 0.75, means


def test_touching_fraction_of_hand_built_labels():
    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3], labels[1:3, 3:5], labels[6:8, 6:8] = 1, 2, 3
    assert phantoms.touching_fraction(labels) == pytest.approx(2 / 3)
    assert phantoms.touching_fraction(np.zeros((4, 4), np.int32)) == 0.0


def test_deformed_ellipsoid_radius_matches_its_outline():
    config = phantoms.default_config(3, deformation=0.1)
    nucleus = phantoms.DeformedEllipsoid.random(config, np.random.default_rng(5))
    directions = phantoms.reference_directions(3, 64)
    radii = np.array([nucleus.radius_along(v) for v in directions])
    q = nucleus.q((directions * radii[:, None]).T)
    np.testing.assert_allclose(q, 1.0, atol=1e-9)
    # The perturbation really deforms: relative radii vary beyond what the axis ratios explain.
    scale = nucleus.radial_scale(directions.T)
    assert 0.05 < scale.std() < 0.15


def test_undeformed_sphere_has_the_ball_volume():
    config = phantoms.PhantomConfig(
        shape=(21, 41, 41), n_nuclei=1, radius=(8.5, 8.5), axis_ratio=(1, 1), deformation=0.0
    )
    labels = phantoms.place_nuclei(config, np.random.default_rng(0))
    assert abs((labels == 1).sum() * 2.0 / (4 / 3 * np.pi * 8.5**3) - 1) < 0.05
    extent = [np.ptp(np.nonzero(labels)[axis]) + 1 for axis in range(3)]
    # Physically round on the Z-coarse grid: 8-9 slices of 2 units, 16-18 pixels of 1 unit.
    assert extent[0] in (8, 9) and extent[1] in (16, 17, 18) and extent[2] in (16, 17, 18)


def test_phantom_config_rejects_bad_clustering():
    with pytest.raises(ValueError, match="clustering"):
        phantoms.PhantomConfig(clustering=1.5)


def test_phantom_config_rejects_nuclei_larger_than_the_canvas():
    with pytest.raises(ValueError, match="does not fit"):
        phantoms.PhantomConfig(shape=(8, 64, 64))


def test_phantom_config_rejects_mismatched_spacing():
    with pytest.raises(ValueError, match="spacing"):
        phantoms.PhantomConfig(shape=(128, 128))


def test_crowded_canvas_places_fewer_nuclei_and_stops():
    config = _small_config(2, shape=(40, 40), n_nuclei=30, max_tries=20)
    labels = phantoms.place_nuclei(config, np.random.default_rng(0))
    n = int(labels.max())
    assert 1 <= n < 30
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))


def test_measure_snr_of_a_known_image_ignores_the_halo():
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int32)
    labels[24:40, 24:40] = 1
    image = 10.0 + rng.normal(scale=2.0, size=labels.shape)
    image[labels == 1] = 30.0
    from scipy import ndimage

    gap = ndimage.distance_transform_edt(labels == 0)
    image[(gap > 0) & (gap <= 3)] = 1000.0  # a bright halo within 3 px: not background
    assert phantoms.measure_snr(image, labels) == pytest.approx(10.0, rel=0.05)
    assert phantoms.measure_snr(image, labels, margin=1.0) < 1.0


def test_measure_snr_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        phantoms.measure_snr(np.zeros((4, 4)), np.zeros((4, 5), np.int32))


def test_measure_snr_rejects_labels_without_nuclei():
    with pytest.raises(ValueError, match="no nucleus"):
        phantoms.measure_snr(np.zeros((4, 4)), np.zeros((4, 4), np.int32))


def test_chromatin_density_nucleoli_are_dark_spots_inside_nuclei():
    config = _small_config(3, clustering=0.5)
    labels = phantoms.place_nuclei(config, np.random.default_rng(1))
    plain = phantoms.TextureConfig(nucleoli=(0, 0))
    spotted = phantoms.TextureConfig(nucleoli=(2, 2), nucleolus_level=0.6)
    without = phantoms.chromatin_density(labels, np.random.default_rng(2), config.spacing, plain)
    with_spots = phantoms.chromatin_density(labels, np.random.default_rng(2), config.spacing, spotted)
    assert without.dtype == np.float32
    assert np.all(without[labels == 0] == 0) and 0.8 < without[labels > 0].mean() < 1.2
    ratio = with_spots[labels > 0] / without[labels > 0]
    darker = np.isclose(ratio, 0.6, rtol=1e-5) | np.isclose(ratio, 0.36, rtol=1e-5)  # 0.36: two overlap
    assert np.all(darker | np.isclose(ratio, 1.0, rtol=1e-5))
    assert np.all(with_spots[labels == 0] == 0)
    # Every nucleus got dark voxels, a few percent of its volume.
    dark_labels = np.unique(labels[labels > 0][darker])
    np.testing.assert_array_equal(dark_labels, np.arange(1, labels.max() + 1))
    assert 0.005 < darker.mean() < 0.2


def test_render_image_psf_is_longer_along_z():
    density = np.zeros((33, 33, 33), np.float32)
    density[16, 16, 16] = 1.0
    setting = phantoms.ImagingSetting(snr=1e5, background=0.0, read_noise=0.0, gain=1e6)
    image = phantoms.render_image(density, setting, np.random.default_rng(0), spacing=(2.0, 1.0, 1.0))
    assert image.dtype == np.uint16
    weights = image.astype(np.float64)
    coords = np.indices(image.shape) * np.array([2.0, 1.0, 1.0])[:, None, None, None]
    sigma = [np.sqrt((weights * (c - 16 * s) ** 2).sum() / weights.sum()) for c, s in zip(coords, (2, 1, 1))]
    assert sigma[0] == pytest.approx(2.5, rel=0.1)
    assert sigma[1] == pytest.approx(1.0, rel=0.1) and sigma[2] == pytest.approx(1.0, rel=0.1)


@pytest.fixture(scope="module")
def default_volumes():
    """Two default 3D volumes (clustering 0 and 0.75) and one default 2D image, both SNRs."""
    out = {}
    for ndim, level, seed in ((3, 0.0, 1), (3, 0.75, 2), (2, 0.5, 3)):
        out[(ndim, level)] = phantoms.phantom_volume(seed, phantoms.default_config(ndim, clustering=level))
    return out


def test_default_volumes_have_20_nuclei_of_the_documented_size(default_volumes):
    assert phantoms.touching_fraction(default_volumes[(3, 0.0)][0]) == 0.0
    assert phantoms.touching_fraction(default_volumes[(3, 0.75)][0]) >= 0.6
    for (ndim, _), (labels, images) in default_volumes.items():
        config = phantoms.default_config(ndim)
        assert labels.shape == config.shape and set(images) == {"high", "low"}
        np.testing.assert_array_equal(np.unique(labels), np.arange(21))
        # Equivalent XY diameters of the nuclei: 18-32 px, mean ~23 px.
        volumes = np.bincount(labels.ravel())[1:] * float(np.prod(config.spacing))
        power = 1 / ndim
        unit = np.pi if ndim == 2 else 4 / 3 * np.pi
        diameters = 2 * (volumes / unit) ** power
        assert 18 <= diameters.min() and diameters.max() <= 32 and 21 <= diameters.mean() <= 26


def test_measured_snr_lands_in_the_documented_ranges(default_volumes):
    for (ndim, level), (labels, images) in default_volumes.items():
        measured = {name: phantoms.measure_snr(image, labels) for name, image in images.items()}
        for name, value in measured.items():
            low, high = phantoms.SNR_RANGES[name]
            assert low <= value <= high, (ndim, level, name, value)
        assert measured["high"] > 4 * measured["low"]
        for image in images.values():
            assert image.dtype == np.uint16
            background = image[labels == 0]
            assert abs(np.median(background) - 100) < 5  # the background offset


@pytest.mark.parametrize("ndim", [2, 3])
def test_phantom_volume_is_deterministic_and_masks_ignore_the_snr_choice(ndim):
    config = _small_config(ndim, clustering=0.5, n_nuclei=6)
    labels, images = phantoms.phantom_volume([4, 2], config)
    again_labels, again_images = phantoms.phantom_volume([4, 2], config)
    low_labels, low_only = phantoms.phantom_volume([4, 2], config, snrs=("low",))
    other_labels, _ = phantoms.phantom_volume([4, 3], config, snrs=())
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(labels, low_labels)
    for name in ("high", "low"):
        np.testing.assert_array_equal(images[name], again_images[name])
    np.testing.assert_array_equal(images["low"], low_only["low"])
    assert set(low_only) == {"low"}
    assert not np.array_equal(labels, other_labels)
    assert not np.array_equal(images["high"], images["low"])


def test_phantom_volume_rejects_unknown_snr():
    with pytest.raises(ValueError, match="Unknown SNR"):
        phantoms.phantom_volume(0, _small_config(2, n_nuclei=1), snrs=("medium",))
