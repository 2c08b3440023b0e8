"""Tests for nucgen_tf.geometry.seeds: point processes and the seed map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, spatial

from nucgen_tf.config import SeedConfig
from nucgen_tf.geometry import (
    SEED_KINDS,
    arrange_seeds,
    clustered_seeds,
    hard_core_seeds,
    interaction_seeds,
    poisson_nn_distance,
    random_seeds,
    render_seed_map,
)

SHAPES = {2: (64, 64), 3: (16, 32, 32)}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _inside(seeds, shape) -> bool:
    return bool(np.all((seeds >= -0.5) & (seeds < np.asarray(shape) - 0.5)))


def _mean_nn_distance(seeds) -> float:
    distance, _ = spatial.cKDTree(seeds).query(seeds, k=2)
    return float(distance[:, 1].mean())


@pytest.mark.parametrize("ndim", [2, 3])
def test_random_seed_counts_match_density(ndim):
    shape = SHAPES[ndim]
    density = 50.0
    expected = density * np.prod(shape) / 1e4
    draws = [random_seeds(shape, density, np.random.default_rng(k)) for k in range(20)]
    counts = np.array([len(d) for d in draws])
    assert abs(counts.mean() - expected) < 4 * np.sqrt(expected / len(counts))
    assert all(d.shape[1] == ndim and d.dtype == np.float64 and _inside(d, shape) for d in draws)


def test_random_seed_density_is_physical_with_spacing():
    shape = (16, 32, 32)
    spacing = (2.0, 1.0, 1.0)
    counts = [len(random_seeds(shape, 50.0, np.random.default_rng(k), spacing=spacing)) for k in range(20)]
    expected = 50.0 * 2 * np.prod(shape) / 1e4
    assert abs(np.mean(counts) - expected) < 4 * np.sqrt(expected / 20)


@pytest.mark.parametrize("ndim", [2, 3])
def test_hard_core_respects_min_distance(ndim):
    shape = SHAPES[ndim]
    seeds = hard_core_seeds(shape, 40.0, 6.0, np.random.default_rng(0))
    assert len(seeds) > 5 and _inside(seeds, shape)
    assert spatial.distance.pdist(seeds).min() > 6.0


def test_hard_core_min_distance_is_physical():
    spacing = (3.0, 1.0, 1.0)
    seeds = hard_core_seeds((16, 32, 32), 20.0, 6.0, np.random.default_rng(1), spacing=spacing)
    assert len(seeds) > 5
    assert spatial.distance.pdist(seeds * np.asarray(spacing)).min() > 6.0
    # In pixel units two seeds may be closer along Z than 6 (only physical distance counts).
    assert spatial.distance.pdist(seeds).min() < 6.0


def test_hard_core_gives_up_when_infeasible():
    # Discs of radius 10 cannot cover a 32 x 32 canvas 100 times: fewer seeds, no endless loop.
    seeds = hard_core_seeds((32, 32), 1e5, 20.0, np.random.default_rng(0), max_tries=2000)
    assert 1 <= len(seeds) < 10
    assert spatial.distance.pdist(seeds).min() > 20.0 if len(seeds) > 1 else True


def test_hard_core_zero_budget_gives_no_seeds():
    assert len(hard_core_seeds((32, 32), 50.0, 3.0, np.random.default_rng(0), max_tries=0)) == 0


@pytest.mark.parametrize("ndim", [2, 3])
def test_interaction_seeds_place_the_count_with_a_physical_hard_core(ndim):
    shape, spacing = SHAPES[ndim], (1.0, 1.0) if ndim == 2 else (3.0, 1.0, 1.0)
    seeds = interaction_seeds(shape, 25, 5.0, 0.5, np.random.default_rng(0), spacing=spacing)
    assert seeds.shape == (25, ndim) and _inside(seeds, shape)
    assert spatial.distance.pdist(seeds * np.asarray(spacing)).min() >= 5.0
    again = interaction_seeds(shape, 25, 5.0, 0.5, np.random.default_rng(0), spacing=spacing)
    np.testing.assert_array_equal(seeds, again)


@pytest.mark.parametrize("ndim", [2, 3])
def test_interaction_knob_goes_from_clumped_to_regular(ndim):
    shape = (128, 128) if ndim == 2 else (24, 48, 48)
    mean_nn = {
        k: np.mean([_mean_nn_distance(interaction_seeds(shape, 60, 2.0, k, _rng(s))) for s in range(4)])
        for k in (-1.0, 0.0, 1.0)
    }
    assert mean_nn[-1.0] < 0.8 * mean_nn[0.0] and mean_nn[1.0] > 1.2 * mean_nn[0.0]


def test_interaction_seeds_give_up_when_infeasible():
    seeds = interaction_seeds((32, 32), 500, 8.0, 0.0, np.random.default_rng(0), max_tries=3000)
    assert 1 <= len(seeds) < 30 and spatial.distance.pdist(seeds).min() >= 8.0


def test_poisson_nn_distance_is_the_clark_evans_expectation():
    assert poisson_nn_distance(4.0, 2) == pytest.approx(0.5 / np.sqrt(4e-4))
    assert poisson_nn_distance(4.0, 3) == pytest.approx(0.55396 * 4e-4 ** (-1 / 3), rel=1e-4)
    seeds = random_seeds((48, 64, 64), 20.0, np.random.default_rng(0))
    inner = np.all((seeds > 12) & (seeds < np.array([35, 51, 51])), axis=1)  # away from the edges
    distance, _ = spatial.cKDTree(seeds).query(seeds[inner], k=2)
    assert distance[:, 1].mean() == pytest.approx(poisson_nn_distance(20.0, 3), rel=0.1)


@pytest.mark.parametrize("ndim", [2, 3])
def test_clustered_is_more_clumped_than_random(ndim):
    shape = (128, 128) if ndim == 2 else (24, 48, 48)
    density = 30.0
    clustered, random = [], []
    for k in range(5):
        rng = np.random.default_rng(k)
        clustered.append(_mean_nn_distance(clustered_seeds(shape, density, 2.0, 8.0, rng)))
        random.append(_mean_nn_distance(random_seeds(shape, density, np.random.default_rng(k))))
    assert np.mean(clustered) < 0.7 * np.mean(random)


def test_clustered_count_matches_density():
    shape = (128, 128)
    density = 20.0
    counts = [len(clustered_seeds(shape, density, 4.0, 5.0, np.random.default_rng(k))) for k in range(100)]
    expected = density * np.prod(shape) / 1e4
    assert abs(np.mean(counts) - expected) < 0.2 * expected


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", SEED_KINDS)
def test_arrange_seeds_deterministic(ndim, kind):
    config = SeedConfig(density=30.0, crowded_min_distance=4.0, sparse_min_distance=8.0, cluster_radius=4.0)
    first = arrange_seeds(kind, SHAPES[ndim], np.random.default_rng(5), config)
    second = arrange_seeds(kind, SHAPES[ndim], np.random.default_rng(5), config)
    other = arrange_seeds(kind, SHAPES[ndim], np.random.default_rng(6), config)
    np.testing.assert_array_equal(first, second)
    assert first.shape[1] == ndim and len(first) > 0
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_arrange_seeds_kinds_follow_config():
    config = SeedConfig(density=20.0, crowded_min_distance=5.0, sparse_min_distance=10.0)
    counts = {
        kind: np.mean([len(arrange_seeds(kind, (128, 128), _rng(k), config)) for k in range(6)])
        for kind in ("sparse", "random", "crowded")
    }
    assert counts["sparse"] < counts["random"] < counts["crowded"]
    sparse = arrange_seeds("sparse", (128, 128), np.random.default_rng(0), config)
    assert spatial.distance.pdist(sparse).min() > 10.0


def test_arrange_seeds_rejects_unknown_kind():
    with pytest.raises(ValueError, match="random.*clustered.*sparse.*crowded"):
        arrange_seeds("hexagonal", (32, 32), np.random.default_rng(0))


def test_random_seeds_rejects_bad_spacing():
    with pytest.raises(ValueError, match="spacing"):
        random_seeds((8, 8), 10.0, np.random.default_rng(0), spacing=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("ndim", [2, 3])
def test_seed_map_blobs(ndim):
    shape = SHAPES[ndim]
    seeds = hard_core_seeds(shape, 30.0, 6.0, np.random.default_rng(2))
    seed_map = render_seed_map(seeds, shape, radius=1.5)
    assert seed_map.dtype == np.float32 and seed_map.shape == shape
    assert set(np.unique(seed_map).tolist()) == {0.0, 1.0}
    _, n_blobs = ndimage.label(seed_map > 0)
    assert n_blobs == len(seeds)


@pytest.mark.parametrize("ndim, size", [(2, 9), (3, 19)])
def test_seed_map_ball_at_integer_seed(ndim, size):
    """radius 1.5 around a pixel centre: the face and edge neighbours (dist <= sqrt(2)), not corners in 3D."""
    seed_map = render_seed_map(np.array([[4.0] * ndim]), (9,) * ndim, radius=1.5)
    assert seed_map.sum() == size


def test_seed_map_ignores_seeds_off_canvas_and_marks_tiny_radius():
    seed_map = render_seed_map(np.array([[-3.0, 4.0], [4.0, 20.0], [2.4, 2.4]]), (8, 8), radius=0.1)
    assert seed_map.sum() == 1 and seed_map[2, 2] == 1
