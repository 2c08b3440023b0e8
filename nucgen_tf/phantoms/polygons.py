"""Random star-convex polygon (2D) / polyhedron (3D) nucleus masks: the "p" of "p + CycleGAN".

Mahmood et al. (IEEE TMI 2019), the paper's baseline [4], draw nucleus masks from a parametric
model (random polygons, in the spirit of SIMCEP) and let an unpaired CycleGAN paint images on
them. These are such masks, with one code path for any ndim:

- Shape: K ray directions spread over the unit circle / sphere (evenly spaced, rotated and
  jittered at random), each with a vertex at distance r_k = R e(v_k) (1 + roughness * n_k),
  where e is the radial function of a random, randomly oriented ellipse / ellipsoid
  (elongation) and n_k standard normal noise. The convex hull of the directions triangulates
  the sphere (edges in 2D, triangles in 3D); the nucleus is the fan of simplices
  (centre, vertices of a facet), i.e. the star-convex polygon / polyhedron through the
  vertices. A point x lies in the cone of the facet whose barycentric direction
  coordinates lambda = D_f^-1 x are all >= 0, and inside the nucleus when
  sum_i lambda_i / r_i <= 1. The vertex radii are then scaled so that the exact volume
  (sum of |det| / ndim! of the simplices) equals that of a ball of the drawn equivalent
  radius R, so sizes follow the requested distribution exactly up to digitization.
- Size: R is log-normal (fitted to real masks by `fit_polygon_config`) and truncated to
  `radius` by redrawing, or uniform over `radius` when no log-normal is given.
- Placement: one at a time, at uniform positions; a nucleus is rejected where it overlaps
  another or comes within `min_gap` pixels (chessboard distance) of one, so nuclei never
  overlap. With `allow_cut` the centre may lie anywhere on the canvas and the border cuts
  the nucleus (as in real fields of view) if at least `min_visible` of it stays visible.
  Each nucleus keeps only the face-connected piece holding most of it, and labels are
  1..N in placement order.
- Anisotropy: with `spacing` (the physical size of a pixel per axis, e.g. (2, 1, 1) for a
  Z step twice the XY pixel) shapes and radii are physical and each is digitized on the
  anisotropic grid, so nuclei come out flattened along Z in pixels as real ones do.
  `fit_spacing` estimates it from real masks.

Every random choice comes from the one numpy Generator passed in, so a seed fixes the mask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np
from absl import logging
from scipy import ndimage
from scipy.spatial import ConvexHull

from nucgen_tf.phantoms.parametric import random_rotations

# Ray directions per nucleus when `PolygonConfig.n_rays` is 0.
DEFAULT_RAYS = {2: 12, 3: 42}
_DIRECTION_DRAWS = 20
_TOL = 1e-9


def unit_ball_volume(ndim: int) -> float:
    """Volume of the unit ball in `ndim` dimensions (pi in 2D, 4 pi / 3 in 3D)."""
    return math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1)


def _check_range(name: str, value: Sequence[float], low: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not low <= lo <= hi:
        raise ValueError(f"`{name}` must satisfy {low} <= min <= max. Received: {name}={tuple(value)}")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class PolygonConfig:
    """Parametric nucleus masks on one canvas.

    Lengths (radius) are physical: pixel units times `spacing`, pixel units along X.

    Attributes:
        shape: canvas, (Y, X) or (Z, Y, X) in pixels; fixes ndim.
        n_nuclei: (min, max) nuclei per canvas, drawn uniformly (inclusive). Fewer are placed,
            with a log line, when `max_tries` positions in a row fail for one nucleus.
        radius: (min, max) equivalent radius (radius of the ball of equal physical volume).
        log_radius_mean: mean of log R of a log-normal size distribution truncated to
            `radius`; None draws R uniformly over `radius`.
        log_radius_std: standard deviation of log R.
        n_rays: vertices per nucleus (0 = 12 in 2D, 42 in 3D).
        elongation: (min, max) ratio of the longest to the shortest axis of the underlying
            ellipse / ellipsoid, drawn uniformly.
        roughness: relative standard deviation of the vertex radii around the ellipse (the
            noise is clipped to +-2.5 std and every radius kept >= 30% of its ellipse value).
        direction_jitter: random displacement of each ray direction, as a fraction of the
            mean spacing between directions (irregular polygons).
        min_gap: background pixels kept between nuclei (chessboard distance); 0 lets
            nuclei touch but never overlap.
        allow_cut: centres anywhere on the canvas, nuclei cut by its border; False keeps
            every nucleus whole inside it.
        min_visible: with `allow_cut`, the smallest visible fraction of a nucleus.
        max_tries: positions tried per nucleus before giving up on it.
        spacing: physical size of a pixel per axis; () = isotropic (1 per axis).
    """

    shape: tuple[int, ...] = (256, 256)
    n_nuclei: tuple[int, int] = (10, 30)
    radius: tuple[float, float] = (6.0, 14.0)
    log_radius_mean: float | None = None
    log_radius_std: float = 0.25
    n_rays: int = 0
    elongation: tuple[float, float] = (1.0, 1.6)
    roughness: float = 0.12
    direction_jitter: float = 0.3
    min_gap: int = 1
    allow_cut: bool = True
    min_visible: float = 0.5
    max_tries: int = 100
    spacing: tuple[float, ...] = ()

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"`shape` must be 2 or 3 positive ints. Received: shape={self.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if spacing and (len(spacing) != len(shape) or not min(spacing) > 0):
            raise ValueError(
                f"`spacing` must be empty or {len(shape)} positive numbers (one per axis of shape={shape}). "
                f"Received: spacing={self.spacing}"
            )
        object.__setattr__(self, "spacing", spacing)
        low, high = (int(v) for v in self.n_nuclei)
        if not 0 <= low <= high:
            raise ValueError(f"`n_nuclei` must satisfy 0 <= min <= max. Received: n_nuclei={self.n_nuclei}")
        object.__setattr__(self, "n_nuclei", (low, high))
        object.__setattr__(self, "radius", _check_range("radius", self.radius, 0.5))
        object.__setattr__(self, "elongation", _check_range("elongation", self.elongation, 1.0))
        if self.log_radius_mean is not None:
            mean = float(self.log_radius_mean)
            if not math.isfinite(mean):
                raise ValueError(f"`log_radius_mean` must be finite. Received: log_radius_mean={mean}")
            object.__setattr__(self, "log_radius_mean", mean)
        if not self.log_radius_std >= 0:
            raise ValueError(f"`log_radius_std` must be >= 0. Received: log_radius_std={self.log_radius_std}")
        if self.n_rays and self.n_rays < len(shape) + 1:
            raise ValueError(
                f"`n_rays` must be 0 (default) or >= ndim + 1 = {len(shape) + 1}. "
                f"Received: n_rays={self.n_rays}"
            )
        if not 0 <= self.roughness <= 0.5:
            raise ValueError(f"`roughness` must be in [0, 0.5]. Received: roughness={self.roughness}")
        if not 0 <= self.direction_jitter <= 0.5:
            raise ValueError(
                f"`direction_jitter` must be in [0, 0.5]. Received: direction_jitter={self.direction_jitter}"
            )
        if self.min_gap < 0:
            raise ValueError(f"`min_gap` must be >= 0. Received: min_gap={self.min_gap}")
        if not 0 < self.min_visible <= 1:
            raise ValueError(f"`min_visible` must be in (0, 1]. Received: min_visible={self.min_visible}")
        if self.max_tries < 1:
            raise ValueError(f"`max_tries` must be >= 1. Received: max_tries={self.max_tries}")
        if not self.allow_cut and np.any(2 * self.radius[0] / self.voxel_size + 1 > np.asarray(shape)):
            raise ValueError(
                "With allow_cut=False the smallest nucleus (diameter 2 * radius[0]) must fit in the canvas. "
                f"Received: radius={self.radius}, shape={shape}, spacing={self.spacing}"
            )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def voxel_size(self) -> np.ndarray:
        """(ndim,) physical size of a pixel per axis (ones when `spacing` is empty)."""
        return np.asarray(self.spacing or (1.0,) * self.ndim, np.float64)

    @property
    def rays(self) -> int:
        """The number of ray directions actually used."""
        return self.n_rays or DEFAULT_RAYS[self.ndim]


def _even_directions(ndim: int, n: int) -> np.ndarray:
    """(n, ndim) near-uniform unit vectors: equal angles (2D) or a Fibonacci sphere (3D)."""
    if ndim == 2:
        angles = 2 * np.pi * np.arange(n) / n
        return np.stack([np.sin(angles), np.cos(angles)], axis=1)
    k = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * k / n)
    azimuth = np.pi * (1 + 5**0.5) * k
    return np.stack([np.cos(polar), np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth)], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class StarShape:
    """One star-convex polygon / polyhedron around the origin (pixel units).

    Attributes:
        directions: (K, ndim) unit ray directions.
        radii: (K,) vertex distances along them.
        facets: (F, ndim) indices of the directions spanning each facet of their hull.
        inverses: (F, ndim, ndim) inverse of each facet's direction matrix (columns =
            directions), giving the cone coordinates lambda = inverse @ x.
    """

    directions: np.ndarray
    radii: np.ndarray
    facets: np.ndarray
    inverses: np.ndarray

    @property
    def ndim(self) -> int:
        return self.directions.shape[1]

    @property
    def volume(self) -> float:
        """Exact area / volume: the sum of the simplices (origin, facet vertices)."""
        vertices = self.directions[self.facets] * self.radii[self.facets][..., None]  # (F, ndim, ndim)
        return float(np.abs(np.linalg.det(vertices)).sum() / math.factorial(self.ndim))

    @property
    def reach(self) -> float:
        """Largest distance of a point of the shape from its centre."""
        return float(self.radii.max())

    def scaled(self, factor: float) -> StarShape:
        return dataclasses.replace(self, radii=self.radii * factor)

    def gauge(self, offsets: np.ndarray) -> np.ndarray:
        """sum_i lambda_i / r_i of (ndim, M) offsets from the centre -> (M,); <= 1 inside."""
        flat = np.asarray(offsets, np.float64).reshape(self.ndim, -1)
        out = np.full(flat.shape[1], np.inf)
        todo = np.ones(flat.shape[1], bool)
        for facet, inverse in zip(self.facets, self.inverses):
            lam = inverse @ flat[:, todo]
            hit = np.all(lam >= -_TOL, axis=0)
            if not hit.any():
                continue
            index = np.flatnonzero(todo)[hit]
            out[index] = np.sum(lam[:, hit] / self.radii[facet][:, None], axis=0)
            todo[index] = False
            if not todo.any():
                break
        return out.reshape(np.shape(offsets)[1:])


def random_star_shape(ndim: int, radius: float, config: PolygonConfig, rng: np.random.Generator) -> StarShape:
    """A random star-convex polygon / polyhedron whose area / volume is that of a ball of `radius`.

    Draws, in this order: the direction set's rotation and jitter, the ellipse's axis ratios
    and rotation, and the per-vertex noise (see the module docstring).
    """
    n = config.n_rays or DEFAULT_RAYS[ndim]
    surface = ndim * unit_ball_volume(ndim)
    spacing = (surface / n) ** (1.0 / (ndim - 1))
    base = _even_directions(ndim, n)
    for _ in range(_DIRECTION_DRAWS):
        rotation = random_rotations(1, ndim, rng)[0]
        directions = base @ rotation.T + config.direction_jitter * spacing * rng.normal(size=(n, ndim)) / 2
        directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
        hull = ConvexHull(directions)
        # The origin must lie strictly inside the hull, or the facet cones do not cover space.
        if np.all(hull.equations[:, -1] < -1e-3) and len(hull.vertices) == n:
            break
    else:
        directions, hull = base, ConvexHull(base)
    facets = np.asarray(hull.simplices, np.int64)
    matrices = np.transpose(directions[facets], (0, 2, 1))  # columns = the facet's directions
    inverses = np.linalg.inv(matrices)

    ratio = rng.uniform(*config.elongation)
    semi = np.ones(ndim)
    semi[0] = ratio
    semi[1:] = rng.uniform(1.0, ratio, size=ndim - 1) if ndim > 2 else 1.0
    axes = random_rotations(1, ndim, rng)[0]
    local = directions @ axes / semi  # direction in the ellipse's frame, scaled by its semi-axes
    ellipse = 1.0 / np.linalg.norm(local, axis=1)
    noise = np.clip(rng.normal(size=n), -2.5, 2.5)
    radii = ellipse * np.maximum(1.0 + config.roughness * noise, 0.3)
    shape = StarShape(directions, radii, facets, inverses)
    target = unit_ball_volume(ndim) * radius**ndim
    return shape.scaled((target / shape.volume) ** (1.0 / ndim))


def draw_radius(config: PolygonConfig, rng: np.random.Generator) -> float:
    """One equivalent radius: log-normal truncated to `config.radius`, or uniform over it."""
    low, high = config.radius
    if config.log_radius_mean is None or config.log_radius_std == 0 or low == high:
        if config.log_radius_mean is not None and config.log_radius_std == 0:
            return float(np.clip(math.exp(config.log_radius_mean), low, high))
        return float(rng.uniform(low, high))
    for _ in range(1000):
        value = math.exp(rng.normal(config.log_radius_mean, config.log_radius_std))
        if low <= value <= high:
            return value
    # The log-normal puts (almost) no mass on the range: fall back to uniform rather than loop.
    return float(rng.uniform(low, high))


def _render(
    shape: StarShape, centre: np.ndarray, voxel_size: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(lo corner (ndim,) int, boolean mask on its tight window) of the shape centred at `centre`.

    `centre` is in pixels, the shape in physical units (`voxel_size` per pixel and axis, default
    1). Digitizing can cut a thin spike off a star-convex shape; only the largest piece is kept.
    """
    size = np.ones(len(centre)) if voxel_size is None else np.asarray(voxel_size, np.float64)
    reach = shape.reach / size
    lo = np.floor(centre - reach).astype(np.int64) - 1
    hi = np.ceil(centre + reach).astype(np.int64) + 1
    axes = [
        ((np.arange(lo[d], hi[d] + 1) - centre[d]) * size[d]).reshape(
            (1,) * d + (-1,) + (1,) * (len(lo) - d - 1)
        )
        for d in range(len(lo))
    ]
    mask = _largest_piece(shape.gauge(np.stack(np.broadcast_arrays(*axes))) <= 1.0)
    if not mask.any():
        return lo, mask
    window = ndimage.find_objects(mask.astype(np.int8))[0]
    return lo + np.asarray([w.start for w in window]), mask[window]


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    pieces, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))
    if n <= 1:
        return mask
    return pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1


def polygon_labels(config: PolygonConfig, rng: np.random.Generator) -> np.ndarray:
    """One canvas of non-overlapping random star-convex nuclei.

    Args:
        config: canvas, counts, sizes, shapes and placement rules.
        rng: numpy Generator; the only source of randomness.

    Returns:
        (*config.shape) int32 labels 1..N (consecutive, placement order), 0 = background;
        every label is one face-connected piece.
    """
    canvas = np.asarray(config.shape)
    ndim = config.ndim
    labels = np.zeros(config.shape, np.int32)
    occupied = np.zeros(config.shape, bool)  # nuclei dilated by min_gap
    grow = ndimage.generate_binary_structure(ndim, ndim)
    target = int(rng.integers(config.n_nuclei[0], config.n_nuclei[1] + 1))
    placed = 0
    for index in range(target):
        shape = random_star_shape(ndim, draw_radius(config, rng), config, rng)
        # Rendered once at a random sub-pixel offset, then moved by whole pixels per try.
        offset, mask = _render(shape, rng.uniform(0.0, 1.0, size=ndim), config.voxel_size)
        full = int(np.count_nonzero(mask))
        if config.allow_cut:
            low, high = np.zeros(ndim, np.int64), canvas - 1
        else:
            low, high = -offset, canvas - offset - np.asarray(mask.shape)
        if full == 0 or np.any(high < low):
            continue
        for _ in range(config.max_tries):
            lo = rng.integers(low, high + 1) + offset
            start = np.maximum(lo, 0)
            stop = np.minimum(lo + mask.shape, canvas)
            if np.any(stop <= start):
                continue
            crop = tuple(slice(a - o, b - o) for a, b, o in zip(start, stop, lo))
            window = tuple(slice(a, b) for a, b in zip(start, stop))
            visible = mask[crop]
            if np.any(occupied[window] & visible):
                continue
            if visible.shape != mask.shape:
                visible = _largest_piece(visible)
                if np.count_nonzero(visible) < config.min_visible * full:
                    continue
            placed += 1
            labels[window][visible] = placed
            if config.min_gap:
                # Dilate inside a padded window so that the gap also reaches past the window.
                pad = config.min_gap
                big = tuple(slice(max(a - pad, 0), min(b + pad, s)) for a, b, s in zip(start, stop, canvas))
                member = labels[big] == placed
                occupied[big] |= ndimage.binary_dilation(member, grow, iterations=config.min_gap)
            else:
                occupied[window] |= visible
            break
        else:
            logging.log_every_n(
                logging.INFO,
                "polygon_labels: nucleus %d of %d fits nowhere after %d tries; skipped",
                20,
                index + 1,
                target,
                config.max_tries,
            )
    return labels


def equivalent_radii(
    labels: np.ndarray,
    exclude_border: bool = True,
    min_size: int = 1,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Equivalent radius (ball of equal area / volume) of every instance of a label mask.

    Args:
        labels: (*spatial) int labels, 0 = background.
        exclude_border: leave out instances touching the border (their size is cut).
        min_size: leave out instances with fewer pixels.
        spacing: physical size of a pixel per axis (None or empty = 1).

    Returns:
        (N,) float64 radii in physical units (pixels without `spacing`), in label order.
    """
    labels = np.asarray(labels)
    ndim = labels.ndim
    sizes = np.bincount(labels.ravel())
    keep = np.zeros(len(sizes), bool)
    keep[1:] = sizes[1:] >= max(min_size, 1)
    if exclude_border:
        for axis in range(ndim):
            for side in (0, -1):
                keep[np.take(labels, side, axis=axis)] = False
    volume = float(np.prod(spacing)) if spacing else 1.0
    return (sizes[keep] * volume / unit_ball_volume(ndim)) ** (1.0 / ndim)


def fit_spacing(
    label_images: Iterable[np.ndarray], min_size: int = 25, tolerance: float = 0.1
) -> tuple[float, ...]:
    """The relative pixel size per axis that makes the real nuclei round on average.

    Nuclei lie in every orientation, so in physical space their spread is on average the
    same along every axis; a coarse Z step shows up as nuclei narrower along Z in pixels.
    Pooled over the instances not touching the border, the spread along axis d is
    v_d = mean over nuclei of the variance of their pixel coordinates along d (+ 1/12 for
    the pixel's own extent), and the fitted size of a pixel along d is sqrt(v_X / v_d), X
    being the last axis (so X = 1, as in `PhantomConfig.spacing`).

    Args:
        label_images: real (*spatial) label masks, all of one ndim.
        min_size: instances with fewer pixels are ignored.
        tolerance: if every axis is within this relative distance of 1, the grid is taken
            as isotropic and () is returned (2D microscopy pixels are square).

    Returns:
        () for an isotropic grid, else (ndim,) sizes (e.g. about (2, 1, 1) on the phantom3d
        set, whose Z step is twice its XY pixel). Also () when no instance qualifies.
    """
    sums, count, ndim = None, 0, None
    for labels in label_images:
        labels = np.asarray(labels)
        if ndim is None:
            ndim = labels.ndim
        elif labels.ndim != ndim:
            raise ValueError(f"Label images must share one ndim ({ndim}). Received: shape={labels.shape}")
        for index, window in enumerate(ndimage.find_objects(labels)):
            if window is None or any(w.start == 0 or w.stop == n for w, n in zip(window, labels.shape)):
                continue
            coords = np.nonzero(labels[window] == index + 1)
            if len(coords[0]) < max(min_size, 2):
                continue
            spread = np.asarray([np.var(c) + 1.0 / 12.0 for c in coords])
            sums = spread if sums is None else sums + spread
            count += 1
    if not count:
        return ()
    sizes = np.sqrt(sums[-1] / sums)
    if np.all(np.abs(sizes - 1.0) <= tolerance):
        return ()
    return tuple(float(s) for s in sizes)


def fit_polygon_config(
    label_images: Iterable[np.ndarray],
    shape: Sequence[int],
    min_size: int = 25,
    percentiles: tuple[float, float] = (2.0, 98.0),
    spacing: Sequence[float] | None = None,
    **overrides,
) -> PolygonConfig:
    """A `PolygonConfig` whose sizes and counts follow real label masks.

    Sizes: log-normal fit (mean and std of log R) of the equivalent radii of the real
    instances not touching the border, truncated to the `percentiles` of those radii;
    physical radii when `spacing` is given (e.g. from `fit_spacing`), which the config keeps.
    Counts: the 10th and 90th percentiles of the real images' nuclei per pixel, times the
    canvas size (at least 0 and 1).

    Args:
        label_images: real (*spatial) label masks, all of the canvas' ndim.
        shape: canvas shape of the parametric masks.
        min_size: instances smaller than this many pixels are ignored (BBBC039's own
            pipeline drops objects < 25 px).
        percentiles: the truncation range of the size distribution.
        spacing: physical size of a pixel per axis (None or empty = isotropic).
        **overrides: any other `PolygonConfig` field.

    Raises:
        ValueError: no label image, or no instance to fit.
    """
    shape = tuple(int(s) for s in shape)
    radii, densities = [], []
    for labels in label_images:
        labels = np.asarray(labels)
        if labels.ndim != len(shape):
            raise ValueError(
                f"Label images must have {len(shape)} axes like `shape`. "
                f"Received: labels shape={labels.shape}"
            )
        radii.append(equivalent_radii(labels, exclude_border=True, min_size=min_size, spacing=spacing))
        sizes = np.bincount(labels.ravel())[1:]
        densities.append(np.count_nonzero(sizes >= min_size) / labels.size)
    if not densities:
        raise ValueError("`label_images` is empty: nothing to fit. Received: 0 images")
    radii = np.concatenate(radii)
    if radii.size == 0:
        raise ValueError(
            f"No instance of >= {min_size} px away from the border to fit sizes to. Received: "
            f"{len(densities)} images"
        )
    logs = np.log(radii)
    low, high = np.percentile(radii, percentiles)
    area = float(np.prod(shape))
    counts = np.percentile(np.asarray(densities) * area, (10.0, 90.0))
    values = {
        "shape": shape,
        "n_nuclei": (int(np.floor(counts[0])), max(int(np.ceil(counts[1])), 1)),
        "radius": (float(low), float(high)),
        "log_radius_mean": float(logs.mean()),
        "log_radius_std": float(logs.std()),
        "spacing": tuple(float(s) for s in spacing) if spacing else (),
    }
    values.update(overrides)
    return PolygonConfig(**values)
