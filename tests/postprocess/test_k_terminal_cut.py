"""Tests for nucgen_tf.postprocess.k_terminal_cut: the iterative k-terminal cut, any ndim."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from skimage import measure

from nucgen_tf.geometry import PALETTE, boxes_from_labels
from nucgen_tf.geometry.boxes import box_semi_axes
from nucgen_tf.postprocess import k_terminal_cut
from nucgen_tf.postprocess.k_terminal_cut import _crofton_weights, cut_work


def _balls(shape, centers, radius) -> np.ndarray:
    """Labels 1..K of overlapping equal balls, split by the power diagram (their contact)."""
    grid = np.indices(shape, dtype=np.float64)
    distance = np.stack([sum((grid[d] - c[d]) ** 2 for d in range(len(shape))) for c in centers])
    return np.where((distance <= radius**2).any(0), distance.argmin(0) + 1, 0).astype(np.int32)


def _scene(ndim: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centres): K touching balls in a row, centres 1.6 radii apart."""
    if ndim == 2:
        radius, shape = 8.0, (28, 20 + 13 * k)
    else:
        radius, shape = 6.0, (16, 16, 14 + 10 * k)
    centers = np.zeros((k, ndim))
    centers[:, :-1] = (np.asarray(shape[:-1]) - 1) / 2.0
    centers[:, -1] = shape[-1] / 2.0 + 1.6 * radius * (np.arange(k) - (k - 1) / 2.0)
    centers = np.round(centers)
    return _balls(shape, centers, radius), centers


def _features(labels: np.ndarray, distinct: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(labels.max()) + 1
    colors = PALETTE[np.arange(n) - 1] if distinct else np.tile(PALETTE[0], (n, 1))
    features = np.where(labels[..., None] > 0, colors[labels], 0.0)
    return features + rng.normal(0.0, 0.03, features.shape) * (labels > 0)[..., None]


def _ious(labels: np.ndarray, out: np.ndarray) -> list[float]:
    return [
        float(((labels == k) & (out == k)).sum() / ((labels == k) | (out == k)).sum())
        for k in range(1, int(labels.max()) + 1)
    ]


def _assert_valid_partition(out: np.ndarray, region: np.ndarray, points: np.ndarray, k: int) -> None:
    assert out.dtype == np.int32
    assert np.all(out[region] >= 1) and np.all(out[region] <= k) and np.all(out[~region] == 0)
    for label in np.unique(out[region]).tolist():
        assert measure.label(out == label, connectivity=1).max() == 1, f"label {label} is not connected"
    for index, point in enumerate(points):
        assert out[tuple(point)] == index + 1


@pytest.mark.parametrize("k", [2, 3])
def test_distinct_colors_split_touching_discs_even_from_single_pixel_terminals(k):
    labels, centers = _scene(2, k)
    out = k_terminal_cut(labels > 0, _features(labels, distinct=True), centers, seed_semi_axes=0.0)
    assert min(_ious(labels, out)) >= 0.9
    _assert_valid_partition(out, labels > 0, centers.astype(int), k)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("k", [2, 3])
def test_same_color_touching_balls_split_at_their_necks(ndim, k):
    labels, centers = _scene(ndim, k)
    boxes = boxes_from_labels(labels)
    out = k_terminal_cut(
        labels > 0, _features(labels, distinct=False), centers, seed_semi_axes=box_semi_axes(boxes.extents)
    )
    assert min(_ious(labels, out)) >= 0.9
    _assert_valid_partition(out, labels > 0, centers.astype(int), k)


def test_same_color_discs_need_seeds_or_the_prior():
    """A pure min cut from single-pixel terminals isolates a terminal's own pixel (its 8 edges
    are the cheapest cut); seeds or the Voronoi prior each prevent that."""
    labels, centers = _scene(2, 2)
    features = _features(labels, distinct=False)
    out = k_terminal_cut(labels > 0, features, centers, seed_semi_axes=0.0, prior_weight=0.0)
    assert min(np.bincount(out[labels > 0])[1:]) <= 2
    with_prior = k_terminal_cut(labels > 0, features, centers, seed_semi_axes=0.0)
    assert min(_ious(labels, with_prior)) >= 0.9
    with_seeds = k_terminal_cut(labels > 0, features, centers, seed_semi_axes=4.0, prior_weight=0.0)
    assert min(_ious(labels, with_seeds)) >= 0.9


def test_three_discs_in_a_triangle_split_with_the_default_euclidean_weights():
    """Face-neighbour (city-block) cuts cannot follow the two diagonal necks; 8 neighbours can."""
    labels = _balls((50, 50), [(18, 16), (18, 31), (31, 24)], 8.0)
    boxes = boxes_from_labels(labels)
    kwargs = dict(seed_semi_axes=box_semi_axes(boxes.extents), prior_weight=0.0)
    features = _features(labels, distinct=False)
    out = k_terminal_cut(labels > 0, features, boxes.centers, **kwargs)
    assert min(_ious(labels, out)) >= 0.95
    city_block = k_terminal_cut(labels > 0, features, boxes.centers, connectivity=1, **kwargs)
    assert min(_ious(labels, city_block)) < min(_ious(labels, out))


def test_the_prior_keeps_a_ring_of_nuclei_from_cutting_through_its_hole():
    """Five discs on a ring around a hole: a pure min cut joins the hole to the outside by a
    short path across one disc's flank; the Voronoi prior keeps every region >= 0.9 IoU."""
    angles = 2 * np.pi * np.arange(5) / 5
    centers = np.stack([24 + 11.4 * np.sin(angles), 24 + 11.4 * np.cos(angles)], 1)  # 1.6 r apart
    labels = _balls((48, 48), centers, 8.4)
    assert labels[24, 24] == 0, "the ring must have a hole"
    boxes = boxes_from_labels(labels)
    kwargs = dict(seed_semi_axes=box_semi_axes(boxes.extents))
    features = _features(labels, distinct=False)
    plain = k_terminal_cut(labels > 0, features, boxes.centers, prior_weight=0.0, **kwargs)
    out = k_terminal_cut(labels > 0, features, boxes.centers, **kwargs)
    assert min(_ious(labels, out)) >= 0.9 > min(_ious(labels, plain))


@pytest.mark.parametrize("ndim", [2, 3])
def test_every_terminal_keeps_a_connected_region_under_noisy_features(ndim):
    """Random features make ragged cuts; the repair must leave K connected regions."""
    labels, centers = _scene(ndim, 3)
    region = labels > 0
    rng = np.random.default_rng(1)
    features = rng.uniform(0, 1, region.shape + (3,))
    out = k_terminal_cut(region, features, centers, sigma=0.1, seed_semi_axes=1.0)
    _assert_valid_partition(out, region, centers.astype(int), 3)


@pytest.mark.parametrize("ndim", [2, 3])
def test_single_terminal_takes_the_whole_region(ndim):
    labels, centers = _scene(ndim, 2)
    out = k_terminal_cut(labels > 0, _features(labels, False), centers[:1])
    np.testing.assert_array_equal(out, (labels > 0).astype(np.int32))


def test_terminals_outside_the_region_are_snapped_to_the_nearest_pixel():
    labels, centers = _scene(2, 2)
    region = labels > 0
    features = _features(labels, distinct=True)
    outside = centers.copy()
    outside[0, 1] = -5.0  # left of the canvas, level with the first disc
    outside[1, 0] = 0.0  # above the second disc, in the background
    row, col = int(centers[0, 0]), int(centers[1, 1])
    snapped = np.array([[row, np.nonzero(region[row])[0].min()], [np.nonzero(region[:, col])[0].min(), col]])
    out = k_terminal_cut(region, features, outside, seed_semi_axes=3.0)
    expected = k_terminal_cut(region, features, snapped, seed_semi_axes=3.0)
    np.testing.assert_array_equal(out, expected)
    assert min(_ious(labels, out)) >= 0.9


def test_duplicate_terminals_are_merged():
    labels, centers = _scene(2, 2)
    terminals = np.stack([centers[0], centers[1], centers[0] + 0.2])
    out = k_terminal_cut(labels > 0, _features(labels, True), terminals)
    assert set(np.unique(out).tolist()) == {0, 1, 2}


def test_backends_find_the_same_cuts():
    labels, centers = _scene(2, 3)
    features = _features(labels, distinct=False, seed=3)
    kwargs = dict(seed_semi_axes=3.0, return_costs=True)
    scipy_out, scipy_costs = k_terminal_cut(labels > 0, features, centers, **kwargs)
    nx_out, nx_costs = k_terminal_cut(labels > 0, features, centers, backend="networkx", **kwargs)
    pp_out, _ = k_terminal_cut(
        labels > 0, features, centers, backend="networkx", flow_func=nx.algorithms.flow.preflow_push, **kwargs
    )
    np.testing.assert_array_equal(scipy_out, nx_out)
    np.testing.assert_array_equal(scipy_out, pp_out)
    assert scipy_costs == nx_costs and len(scipy_costs) == 2


@pytest.mark.parametrize("flip", [False, True])
def test_cheapest_isolating_cut_goes_first(flip):
    """A - B - C with a narrow A|B neck and a wide B|C one: A is isolated first (cost ~ the
    narrow neck), then B from C; the costs come out ascending whichever end is narrow."""
    labels = _balls((24, 60), [(12, 14), (12, 29), (12, 40)], 8.0)  # 15 px then 11 px apart
    if flip:
        labels = np.where(labels > 0, 4 - labels, 0)[:, ::-1].copy()
    boxes = boxes_from_labels(labels)
    out, costs = k_terminal_cut(
        labels > 0,
        _features(labels, False),
        boxes.centers,
        seed_semi_axes=3.0,
        prior_weight=0,
        return_costs=True,
    )
    narrow = 2 * np.sqrt(8.0**2 - 7.5**2) + 1  # chord lengths of the two contacts, in pixels
    wide = 2 * np.sqrt(8.0**2 - 5.5**2) + 1
    assert costs[0] < costs[1]
    np.testing.assert_allclose(np.asarray(costs) / 1000.0, [narrow, wide], rtol=0.25)
    assert min(_ious(labels, out)) >= 0.9


def test_cut_ignores_the_canvas_around_the_region():
    labels, centers = _scene(2, 2)
    features = _features(labels, True)
    out = k_terminal_cut(labels > 0, features, centers)
    big = np.zeros((80, 90), bool)
    big[20 : 20 + labels.shape[0], 30 : 30 + labels.shape[1]] = labels > 0
    big_features = np.zeros((80, 90, 3))
    big_features[20 : 20 + labels.shape[0], 30 : 30 + labels.shape[1]] = features
    out_big = k_terminal_cut(big, big_features, centers + [20, 30])
    np.testing.assert_array_equal(out_big[20 : 20 + labels.shape[0], 30 : 30 + labels.shape[1]], out)
    assert out_big.sum() == out.sum()


@pytest.mark.parametrize("ndim", [2, 3])
def test_over_budget_regions_fall_back_to_the_watershed_split(ndim):
    labels, centers = _scene(ndim, 3)
    boxes = boxes_from_labels(labels)
    kwargs = dict(seed_semi_axes=box_semi_axes(boxes.extents), return_costs=True)
    features = _features(labels, distinct=False)
    budget = cut_work(int((labels > 0).sum()), 3)
    out, costs = k_terminal_cut(labels > 0, features, centers, max_work=budget - 1, **kwargs)
    assert costs is None
    assert min(_ious(labels, out)) >= 0.9
    _assert_valid_partition(out, labels > 0, centers.astype(int), 3)
    _, costs = k_terminal_cut(labels > 0, features, centers, max_work=budget, **kwargs)
    assert len(costs) == 2


def test_cut_work_counts_max_flows():
    assert [cut_work(100, k) for k in (1, 2, 3, 5)] == [0, 100, 400, 1300]


def test_crofton_weights_are_euclidean():
    """8 neighbours in 2D: diagonal / axis = 1 / sqrt(2) (Boykov & Kolmogorov 2003), and a
    straight boundary costs its length within 10% whatever its orientation (4 neighbours: 41%)."""
    weights = np.asarray(_crofton_weights(2, 2))
    np.testing.assert_allclose(weights / weights[0], [1, 2**-0.5, 1, 2**-0.5])
    offsets = np.array([(0, 1), (1, -1), (1, 0), (1, 1)])
    for angle in np.linspace(0, np.pi, 7):
        normal = np.array([np.cos(angle), np.sin(angle)])
        np.testing.assert_allclose(np.abs(offsets @ normal) @ weights, 1.0, rtol=0.1)
    assert _crofton_weights(3, 1) == (1.0, 1.0, 1.0)
    weights = np.asarray(_crofton_weights(3, 3))
    assert len(weights) == 13 and weights.min() < 0.5 * weights.max()


def test_rejects_a_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        k_terminal_cut(np.ones((4, 4), bool), np.zeros((4, 4, 3)), [[1, 1]], backend="igraph")


def test_rejects_an_empty_region():
    with pytest.raises(ValueError, match="empty"):
        k_terminal_cut(np.zeros((4, 4), bool), np.zeros((4, 4, 3)), [[1, 1]])


def test_rejects_terminals_of_the_wrong_ndim():
    with pytest.raises(ValueError, match="terminals"):
        k_terminal_cut(np.ones((4, 4), bool), np.zeros((4, 4, 3)), [[1, 1, 1]])


def test_rejects_mismatched_features():
    with pytest.raises(ValueError, match="features"):
        k_terminal_cut(np.ones((4, 4), bool), np.zeros((4, 5, 3)), [[1, 1]])


def test_rejects_a_non_bool_region():
    with pytest.raises(ValueError, match="bool"):
        k_terminal_cut(np.ones((4, 4), np.int32), np.zeros((4, 4, 3)), [[1, 1]])
