"""Artificial seed-point arrangements (stage 1, point domain), for any ndim.

The point domain only has to tell the stage-1 generator roughly where nuclei should be;
the generator corrects unrealistic arrangements itself (Sec. II-A of the paper). By choosing
the point process we steer the neighbourhoods of the synthetic data: homogeneous Poisson
("random"), Thomas cluster process ("clustered"), and random sequential adsorption with a
hard core at a low ("sparse") or high ("crowded") density. `interaction_seeds` places an exact
count with a hard core and one knob from clustered to regular; `nucgen_tf.synthesis.
arrangement_fit` fits its parameters to real masks (the "fitted" arrangement).

Seeds are float64 coordinates in array-axis order, in pixel units (pixel centres at integer
indices; the canvas covers [-0.5, size - 0.5) per axis). Densities are mean seeds per 10,000
pixels/voxels; with `spacing`, densities, distances and radii are physical, so anisotropic
3D stacks get isotropic arrangements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from absl import logging
from scipy import spatial

from nucgen_tf.config import SeedConfig

SEED_KINDS = ("random", "clustered", "sparse", "crowded")
_PER_AREA = 1e4
# Default reach of `interaction_seeds` per Poisson NN distance: wide enough that k = 1 is more
# regular than real nuclei fields (Clark-Evans ~1.3), far from jamming at any density.
_REACH = 1.25


def _canvas(shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[tuple[int, ...], np.ndarray]:
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"`shape` must be non-empty positive ints. Received: shape={shape}")
    if spacing is None:
        spacing_arr = np.ones(len(shape))
    else:
        spacing_arr = np.asarray(spacing, np.float64).reshape(-1)
        if spacing_arr.shape != (len(shape),) or np.any(spacing_arr <= 0):
            raise ValueError(
                f"`spacing` must be {len(shape)} positive numbers (one per axis of shape={shape}). "
                f"Received: spacing={spacing}"
            )
    return shape, spacing_arr


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")


def _expected_count(shape: tuple[int, ...], spacing: np.ndarray, density: float) -> float:
    return density * float(np.prod(np.asarray(shape) * spacing)) / _PER_AREA


def _uniform(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(size=(n, len(shape))) * np.asarray(shape, np.float64) - 0.5


def random_seeds(
    shape: Sequence[int],
    density: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Homogeneous Poisson process.

    Args:
        shape: canvas shape (Y, X) or (Z, Y, X).
        density: mean seeds per 10,000 pixels (physical units^ndim when `spacing` is given).
        rng: numpy Generator; the only source of randomness.
        spacing: physical size of a pixel per axis.

    Returns:
        (N, ndim) float64 seed coordinates in pixel units, N ~ Poisson(density * volume / 1e4).
    """
    _check_positive(density=density)
    shape, spacing_arr = _canvas(shape, spacing)
    n = rng.poisson(_expected_count(shape, spacing_arr, density))
    return _uniform(n, shape, rng)


def clustered_seeds(
    shape: Sequence[int],
    density: float,
    cluster_radius: float,
    cluster_size: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Thomas cluster process: Gaussian clouds of seeds around Poisson parents.

    Parents have intensity density / cluster_size on the canvas enlarged by 2 sigma on every
    side (so clusters centred just outside still reach in and the edge is not thinned);
    each parent gets Poisson(cluster_size) children at N(0, cluster_radius^2) physical
    offsets per axis; children outside the canvas are dropped. The mean count on the canvas
    is therefore close to density * volume / 1e4.

    Args:
        shape: canvas shape.
        density: mean seeds per 10,000 pixels (physical units with `spacing`).
        cluster_radius: Gaussian sigma of children around their parent (physical units).
        cluster_size: mean number of children per parent.
        rng: numpy Generator.
        spacing: physical size of a pixel per axis.

    Returns:
        (N, ndim) float64 seed coordinates in pixel units.
    """
    _check_positive(density=density, cluster_radius=cluster_radius, cluster_size=cluster_size)
    shape, spacing_arr = _canvas(shape, spacing)
    ndim = len(shape)
    pad = 2.0 * cluster_radius / spacing_arr  # pixels per axis
    size = np.asarray(shape, np.float64)
    big = size + 2 * pad
    n_parents = rng.poisson(density / cluster_size * float(np.prod(big * spacing_arr)) / _PER_AREA)
    parents = rng.uniform(size=(n_parents, ndim)) * big - 0.5 - pad
    n_children = rng.poisson(cluster_size, size=n_parents)
    offsets = rng.normal(scale=cluster_radius, size=(int(n_children.sum()), ndim)) / spacing_arr
    seeds = np.repeat(parents, n_children, axis=0) + offsets
    inside = np.all((seeds >= -0.5) & (seeds < size - 0.5), axis=1)
    return seeds[inside]


def hard_core_seeds(
    shape: Sequence[int],
    density: float,
    min_distance: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    max_tries: int | None = None,
) -> np.ndarray:
    """Random sequential adsorption with a hard core (a Matern-like inhibition process).

    Uniform proposals are accepted in order when they are farther than `min_distance`
    (physical) from every accepted seed, until the Poisson target count is reached or
    `max_tries` proposals were spent; then fewer seeds are returned (logged), never an
    endless loop. Proposals are tested in batches against a KD-tree of the accepted seeds
    and, within a batch, against each other in proposal order, which is exactly sequential
    adsorption.

    Args:
        shape: canvas shape.
        density: target mean seeds per 10,000 pixels (physical units with `spacing`).
        min_distance: hard-core distance (physical units).
        rng: numpy Generator.
        spacing: physical size of a pixel per axis.
        max_tries: proposal budget; default 50 * target + 1000.

    Returns:
        (N, ndim) float64 seed coordinates in pixel units, pairwise physical distance > min_distance.
    """
    _check_positive(density=density, min_distance=min_distance)
    shape, spacing_arr = _canvas(shape, spacing)
    target = int(rng.poisson(_expected_count(shape, spacing_arr, density)))
    if max_tries is None:
        max_tries = 50 * target + 1000
    if max_tries < 0:
        raise ValueError(f"`max_tries` must be >= 0. Received: max_tries={max_tries}")
    accepted = np.zeros((0, len(shape)))  # physical coordinates
    tries = 0
    batch = max(64, 2 * target)
    while len(accepted) < target and tries < max_tries:
        n = min(batch, max_tries - tries)
        tries += n
        proposals = _uniform(n, shape, rng) * spacing_arr
        if len(accepted):
            distance, _ = spatial.cKDTree(accepted).query(proposals, distance_upper_bound=min_distance)
            proposals = proposals[distance > min_distance]
        if len(proposals) > 1:
            keep = np.ones(len(proposals), bool)
            pairs = spatial.cKDTree(proposals).query_pairs(min_distance, output_type="ndarray")
            if len(pairs):
                # pairs have i < j; walking i in order rejects the later member of each conflict.
                pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
                firsts, starts = np.unique(pairs[:, 0], return_index=True)
                stops = np.append(starts[1:], len(pairs))
                for i, start, stop in zip(firsts.tolist(), starts.tolist(), stops.tolist()):
                    if keep[i]:
                        keep[pairs[start:stop, 1]] = False
            proposals = proposals[keep]
        accepted = np.concatenate([accepted, proposals[: target - len(accepted)]])
    if len(accepted) < target:
        logging.warning(
            "hard_core_seeds placed %d of %d seeds (min_distance=%s, shape=%s) after %d proposals.",
            len(accepted), target, min_distance, shape, tries,
        )
    return accepted / spacing_arr


def poisson_nn_distance(density: float, ndim: int) -> float:
    """Mean nearest-neighbour distance of a Poisson process (the Clark-Evans denominator).

    Args:
        density: points per 10,000 units^ndim (pixels, or physical units with a spacing).
        ndim: 2 or 3 (any >= 1 works).

    Returns:
        Gamma(1 + 1/d) / (lambda * V_d)^(1/d), with lambda = density / 1e4 per unit^d and
        V_d the volume of the unit d-ball; 0.5 / sqrt(lambda) in 2D.
    """
    _check_positive(density=density)
    ball = math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1)
    return math.gamma(1 + 1 / ndim) / (density / _PER_AREA * ball) ** (1 / ndim)


def interaction_seeds(
    shape: Sequence[int],
    count: int,
    hard_core: float,
    interaction: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    reach: float | None = None,
    max_tries: int | None = None,
) -> np.ndarray:
    """Exactly `count` seeds (if they fit) with a hard core, clustered or regular by one knob.

    Seeds are placed one proposal at a time. With `interaction` = k:

    - k < 0 (attraction): a proposal is, with probability -k, a Gaussian offset (sigma =
      `reach` per axis) from a uniformly chosen accepted seed, else uniform on the canvas;
      clumps grow where seeds already are (a contagion form of a Thomas process).
    - k > 0 (inhibition): a uniform proposal closer than `reach` to an accepted seed is
      rejected with probability k (k = 1: sequential adsorption with distance `reach`).
    - k = 0: uniform proposals, only the hard core acts.

    A proposal closer than `hard_core` to an accepted seed, or off the canvas, is always
    rejected. At real nuclei densities (3.5 per 10,000 px, hard core 10 px) k = -1, 0, 1 give
    Clark-Evans ratios of about 0.6, 1.06 and 1.5. When `max_tries` proposals were spent,
    fewer seeds are returned (logged), never an endless loop. Deterministic given `rng`.

    Args:
        shape: canvas shape (Y, X) or (Z, Y, X).
        count: seeds to place.
        hard_core: smallest distance between two seeds (physical units; 0 = none).
        interaction: k in [-1, 1], see above.
        rng: numpy Generator; the only source of randomness.
        spacing: physical size of a pixel per axis.
        reach: length scale of attraction and inhibition (physical); default 1.25 times the
            mean nearest-neighbour distance of a Poisson process with `count` seeds on the
            canvas (`poisson_nn_distance`), so the knob means the same at every density.
        max_tries: proposal budget; default 50 * count + 1000.

    Returns:
        (N, ndim) float64 seed coordinates in pixel units, N <= count; pairwise physical
        distance >= hard_core.
    """
    shape, spacing_arr = _canvas(shape, spacing)
    count = int(count)
    if count < 0 or hard_core < 0 or not -1 <= interaction <= 1:
        raise ValueError(
            "Need count >= 0, hard_core >= 0 and -1 <= interaction <= 1. Received: "
            f"count={count}, hard_core={hard_core}, interaction={interaction}"
        )
    ndim = len(shape)
    size = np.asarray(shape, np.float64)
    volume = float(np.prod(size * spacing_arr))
    if reach is None:
        reach = _REACH * poisson_nn_distance(max(count, 1) * _PER_AREA / volume, ndim)
    _check_positive(reach=reach)
    if max_tries is None:
        max_tries = 50 * count + 1000
    attract, inhibit = max(-interaction, 0.0), max(interaction, 0.0)
    accepted = np.zeros((count, ndim))  # physical coordinates
    low, high = -0.5 * spacing_arr, (size - 0.5) * spacing_arr
    n, tries, block = 0, 0, 256
    hard2, reach2 = hard_core**2, reach**2
    while n < count and tries < max_tries:
        # Randomness in fixed-size blocks: the draws do not depend on how many are used.
        uniform = rng.uniform(size=(block, ndim)) * (high - low) + low
        near = rng.uniform(size=block) < attract
        anchor = rng.uniform(size=block)
        offset = rng.normal(scale=reach, size=(block, ndim))
        keep = rng.uniform(size=block)
        for j in range(min(block, max_tries - tries)):
            tries += 1
            point = uniform[j]
            if near[j] and n:
                point = accepted[int(anchor[j] * n)] + offset[j]
                if np.any(point < low) or np.any(point >= high):
                    continue
            if n:
                d2 = np.sum((accepted[:n] - point) ** 2, axis=1)
                if hard2 and d2.min() < hard2:
                    continue
                if inhibit and not near[j] and keep[j] < inhibit and d2.min() < reach2:
                    continue
            accepted[n] = point
            n += 1
            if n == count:
                break
    if n < count:
        logging.warning(
            "interaction_seeds placed %d of %d seeds (hard_core=%s, interaction=%s, shape=%s) after %d "
            "proposals.", n, count, hard_core, interaction, shape, tries,
        )  # fmt: skip
    return accepted[:n] / spacing_arr


def arrange_seeds(
    kind: str,
    shape: Sequence[int],
    rng: np.random.Generator,
    config: SeedConfig | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Seeds of one named arrangement, parametrised by a `SeedConfig`.

    Args:
        kind: "random" (Poisson at config.density), "clustered" (Thomas process),
            "sparse" (hard core sparse_min_distance at density * sparse_density_factor) or
            "crowded" (hard core crowded_min_distance at density * crowded_density_factor).
        shape: canvas shape.
        rng: numpy Generator.
        config: arrangement parameters; default `SeedConfig()` (tuned for 2D pixels).
        spacing: physical size of a pixel per axis.

    Returns:
        (N, ndim) float64 seed coordinates in pixel units.
    """
    config = SeedConfig() if config is None else config
    if kind == "random":
        return random_seeds(shape, config.density, rng, spacing=spacing)
    if kind == "clustered":
        return clustered_seeds(
            shape, config.density, config.cluster_radius, config.cluster_size, rng, spacing=spacing
        )
    if kind == "sparse":
        return hard_core_seeds(
            shape, config.density * config.sparse_density_factor, config.sparse_min_distance, rng,
            spacing=spacing,
        )
    if kind == "crowded":
        return hard_core_seeds(
            shape, config.density * config.crowded_density_factor, config.crowded_min_distance, rng,
            spacing=spacing,
        )
    raise ValueError(f"`kind` must be one of {SEED_KINDS}. Received: kind={kind!r}")


def render_seed_map(seeds: np.ndarray, shape: Sequence[int], radius: float = 1.5) -> np.ndarray:
    """Render the stage-1 point domain: a small ball around every seed.

    Vectorised over seeds with one stencil of offsets, so thousands of seeds cost a few
    array operations.

    Args:
        seeds: (N, ndim) coordinates in pixel units; seeds off the canvas are ignored.
        shape: canvas shape.
        radius: ball radius in pixels; a pixel is inside when its centre is within `radius`.

    Returns:
        (*shape) float32, 1 inside any ball, 0 elsewhere. A seed always marks at least its
        nearest pixel.
    """
    _check_positive(radius=radius)
    shape, _ = _canvas(shape, None)
    ndim = len(shape)
    seeds = np.asarray(seeds, np.float64).reshape(-1, ndim) if np.size(seeds) else np.zeros((0, ndim))
    out = np.zeros(shape, np.float32)
    size = np.asarray(shape)
    seeds = seeds[np.all((seeds >= -0.5) & (seeds < size - 0.5), axis=1)]
    if not len(seeds):
        return out
    base = np.round(seeds).astype(np.int64)
    out[tuple(np.clip(base, 0, size - 1).T)] = 1.0
    reach = int(np.ceil(radius)) + 1
    grid = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    pixels = base[:, None, :] + grid[None, :, :]  # (N, K, ndim)
    inside = np.sum((pixels - seeds[:, None, :]) ** 2, axis=-1) <= radius**2
    inside &= np.all((pixels >= 0) & (pixels < size), axis=-1)
    out[tuple(pixels[inside].T)] = 1.0
    return out
