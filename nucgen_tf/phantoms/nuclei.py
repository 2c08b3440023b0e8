"""Deformed, clustered, non-overlapping nucleus masks (the BBBC024-like stand-in), any ndim.

BBBC024 (synthetic 3D HL60 nuclei made with CytoPacq; Svoboda, Kozubek & Stejskal, Cytometry A
2009) comes in four subsets with clustering probability 0, 25, 50 and 75% and about 20 nuclei
per volume. We imitate its structure, not its pixels:

- Shape: an ellipsoid (random semi-axes, random orientation) whose radius is modulated along
  each direction u by a smooth random field on the unit sphere (circle in 2D):
  s(u) = 1 + deformation * standardised(sum_j w_j exp(kappa (u . v_j - 1))), i.e. white noise
  on `n_bumps` random directions v_j smoothed by a von Mises-Fisher kernel (angular width
  ~ 1 / sqrt(kappa) rad). Each nucleus is star-shaped around its centre, so it is one piece.
- Placement: nuclei are added one at a time. With probability `clustering` a new nucleus is
  put against a random existing one, its centre along a random direction at a distance of
  (1 - squeeze) times the sum of the two radii along that direction; otherwise it is placed
  uniformly where it neither overlaps nor touches any nucleus. Overlapping voxels go to the
  nucleus with the smaller normalised radius q = |z| / s(u) (z = the voxel in the nucleus's
  unit-ball frame), so clumped nuclei flatten against each other along a shared face, as
  squeezed nuclei do. A placement is rejected (and undone) unless every nucleus keeps at
  least `min_kept` of its own volume and stays one face-connected piece, and the new nucleus
  lies wholly inside the canvas. Every voxel belongs to at most one nucleus by construction;
  labels are 1..N in placement order.

Sizes are physical (pixel units times `spacing`), so nuclei are round in physical space on an
anisotropic Z grid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging
from scipy import ndimage

from nucgen_tf.phantoms.parametric import random_rotations

DEFAULT_SHAPE_3D = (32, 128, 128)
DEFAULT_SPACING_3D = (2.0, 1.0, 1.0)
DEFAULT_SHAPE_2D = (256, 256)
CLUSTERING_LEVELS = (0.0, 0.25, 0.5, 0.75)  # BBBC024's four subsets (c00, c25, c50, c75)
_N_REFERENCE_DIRECTIONS = 512
_SCALE_CLIP = (0.5, 1.5)
_BOUND_MARGIN = 1.05
_SHAPE_DRAWS = 3


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
    """Geometry of one simulated volume (or 2D image).

    Lengths are physical: pixel units times `spacing` (pixel units along X).

    Attributes:
        shape: canvas (Z, Y, X) or (Y, X) in pixels.
        spacing: physical pixel size per axis; (2, 1, 1) = Z twice as coarse as X and Y.
        n_nuclei: nuclei to place (BBBC024: ~20 per volume). Fewer are placed, with a
            warning, only if `max_tries` placements in a row fail for one nucleus.
        radius: (min, max) of the base semi-axis, drawn uniformly per nucleus.
        axis_ratio: (min, max) of an independent factor per semi-axis (ellipsoidal shape).
        deformation: std of the relative radial perturbation s(u) - 1 (clipped to +-0.5).
        n_bumps: random directions of the radial field.
        bump_kappa: von Mises-Fisher concentration of the field's kernel (larger = finer).
        clustering: probability that a nucleus is placed against an existing one.
        squeeze: (min, max) overlap of a clustered pair as a fraction of the sum of their
            radii along the line of centres, drawn uniformly; the overlap becomes a flat
            contact face.
        min_kept: smallest fraction of its own volume a nucleus may keep after contacts.
        max_tries: placement attempts per nucleus and mode (clustered, then uniform).
    """

    shape: tuple[int, ...] = DEFAULT_SHAPE_3D
    spacing: tuple[float, ...] = DEFAULT_SPACING_3D
    n_nuclei: int = 20
    radius: tuple[float, float] = (10.0, 13.0)
    axis_ratio: tuple[float, float] = (0.85, 1.15)
    deformation: float = 0.06
    n_bumps: int = 12
    bump_kappa: float = 4.0
    clustering: float = 0.0
    squeeze: tuple[float, float] = (0.05, 0.3)
    min_kept: float = 0.7
    max_tries: int = 200

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"`shape` must be 2 or 3 positive ints. Received: shape={self.shape}")
        if len(spacing) != len(shape) or min(spacing) <= 0:
            raise ValueError(
                f"`spacing` must be {len(shape)} positive numbers (one per axis of shape={shape}). "
                f"Received: spacing={self.spacing}"
            )
        if self.n_nuclei < 0:
            raise ValueError(f"`n_nuclei` must be >= 0. Received: n_nuclei={self.n_nuclei}")
        for name in ("radius", "axis_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"`{name}` must satisfy 0 < min <= max. Received: {name}={(low, high)}")
        if not 0 <= self.deformation < 0.5:
            raise ValueError(f"`deformation` must be in [0, 0.5). Received: deformation={self.deformation}")
        if self.n_bumps < 1 or self.bump_kappa <= 0:
            raise ValueError(
                f"`n_bumps` must be >= 1 and `bump_kappa` > 0. Received: n_bumps={self.n_bumps}, "
                f"bump_kappa={self.bump_kappa}"
            )
        if not 0 <= self.clustering <= 1:
            raise ValueError(
                f"`clustering` must be a probability in [0, 1]. Received: clustering={self.clustering}"
            )
        if not 0 <= self.squeeze[0] <= self.squeeze[1] < 1:
            raise ValueError(f"`squeeze` must satisfy 0 <= min <= max < 1. Received: squeeze={self.squeeze}")
        if not 0 < self.min_kept <= 1:
            raise ValueError(f"`min_kept` must be in (0, 1]. Received: min_kept={self.min_kept}")
        if self.max_tries < 1:
            raise ValueError(f"`max_tries` must be >= 1. Received: max_tries={self.max_tries}")
        largest = 2 * self.radius[1] * self.axis_ratio[1]
        physical = [n * s for n, s in zip(shape, spacing)]
        if largest > min(physical):
            raise ValueError(
                f"The largest nucleus (diameter 2 * radius[1] * axis_ratio[1] = {largest:g}) does not fit "
                f"in the canvas (physical size {physical}). Received: shape={shape}, spacing={spacing}, "
                f"radius={self.radius}"
            )

    @property
    def ndim(self) -> int:
        return len(self.shape)


def default_config(ndim: int = 3, **overrides) -> PhantomConfig:
    """The stand-in's geometry for `ndim` 3 ((32, 128, 128), spacing (2, 1, 1)) or 2 ((256, 256)).

    The 2D canvas is larger than one 3D slice so that 20 nuclei cover a similar fraction of
    it (~15%) as of the 3D volume.
    """
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim}")
    base = {} if ndim == 3 else {"shape": DEFAULT_SHAPE_2D, "spacing": (1.0, 1.0)}
    return PhantomConfig(**{**base, **overrides})


def reference_directions(ndim: int, n: int = _N_REFERENCE_DIRECTIONS) -> np.ndarray:
    """(n, ndim) fixed, near-uniform unit vectors: equal angles (2D) or a Fibonacci sphere (3D)."""
    if ndim == 2:
        angles = 2 * np.pi * np.arange(n) / n
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if ndim == 3:
        k = np.arange(n) + 0.5
        polar = np.arccos(1 - 2 * k / n)
        azimuth = np.pi * (1 + 5**0.5) * k
        return np.stack(
            [np.cos(polar), np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth)], axis=1
        )
    raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim}")


def _random_unit_vectors(n: int, ndim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(n, ndim))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class DeformedEllipsoid:
    """One nucleus: centre-free shape with a smooth random radial modulation.

    A physical offset x from the centre maps to z = diag(1 / semi_axes) R^T x; the voxel is
    inside when q = |z| / s(z / |z|) <= 1.

    Attributes:
        semi_axes: (ndim,) physical semi-axes before rotation.
        rotation: (ndim, ndim) orthogonal; column k is the direction of semi-axis k.
        bumps: (K, ndim) unit directions of the radial field (in the unit-ball frame).
        weights: (K,) their weights.
        deformation: std of s(u) - 1.
        kappa: kernel concentration.
    """

    def __init__(self, semi_axes, rotation, bumps, weights, deformation: float, kappa: float):
        self.semi_axes = np.asarray(semi_axes, np.float64)
        self.rotation = np.asarray(rotation, np.float64)
        self.bumps = np.asarray(bumps, np.float64)
        self.weights = np.asarray(weights, np.float64)
        self.deformation = float(deformation)
        self.kappa = float(kappa)
        reference = reference_directions(len(self.semi_axes)).T
        field = self._field(reference)
        self._mean, self._std = float(field.mean()), float(field.std()) + 1e-12
        scale = self.radial_scale(reference)
        self.max_scale = float(scale.max())
        self.min_scale = float(scale.min())

    @classmethod
    def random(cls, config: PhantomConfig, rng: np.random.Generator) -> DeformedEllipsoid:
        """Draws radius, axis ratios, rotation and radial field, in that order."""
        ndim = config.ndim
        radius = rng.uniform(*config.radius)
        ratios = rng.uniform(*config.axis_ratio, size=ndim)
        rotation = random_rotations(1, ndim, rng)[0]
        bumps = _random_unit_vectors(config.n_bumps, ndim, rng)
        weights = rng.normal(size=config.n_bumps)
        return cls(radius * ratios, rotation, bumps, weights, config.deformation, config.bump_kappa)

    def _field(self, directions: np.ndarray) -> np.ndarray:
        """Unnormalised field at (ndim, M) unit vectors (columns) -> (M,)."""
        kernel = self.bumps @ directions  # (K, M) cosines
        kernel -= 1.0
        kernel *= self.kappa
        np.exp(kernel, out=kernel)
        return self.weights @ kernel

    def radial_scale(self, directions: np.ndarray) -> np.ndarray:
        """s(u) at (ndim, M) unit vectors (columns) of the unit-ball frame -> (M,)."""
        standard = (self._field(directions) - self._mean) / self._std
        return np.clip(1.0 + self.deformation * standard, *_SCALE_CLIP)

    def q(self, offsets: np.ndarray) -> np.ndarray:
        """Normalised radius at (ndim, ...) physical offsets from the centre; <= 1 inside.

        Only points with |z| <= max_scale can be inside; the field is evaluated there alone
        and every other point gets q = inf.
        """
        ndim = offsets.shape[0]
        flat = offsets.reshape(ndim, -1)
        z = (self.rotation.T @ flat) / self.semi_axes[:, None]
        rho = np.sqrt(np.einsum("dm,dm->m", z, z))
        q = np.full(rho.shape, np.inf)
        near = np.flatnonzero(rho <= self.max_scale * _BOUND_MARGIN)
        if near.size:
            r = rho[near]
            unit = z[:, near] / np.maximum(r, 1e-12)
            q[near] = r / self.radial_scale(unit)
        return q.reshape(offsets.shape[1:])

    def radius_along(self, direction: np.ndarray) -> float:
        """Physical distance from the centre to the outline along a physical unit vector."""
        z = self.rotation.T @ np.asarray(direction, np.float64) / self.semi_axes
        norm = float(np.linalg.norm(z))
        return float(self.radial_scale((z / norm)[:, None])[0]) / norm

    def half_extent(self) -> np.ndarray:
        """(ndim,) physical half-size of a box that holds the nucleus (with a small margin)."""
        reach = self.rotation * self.semi_axes[None, :]  # row d: axis-d components of the semi-axes
        return _BOUND_MARGIN * self.max_scale * np.sqrt(np.sum(reach**2, axis=1))

    def inner_radius(self) -> float:
        """Physical radius of a ball around the centre that lies inside the nucleus (about)."""
        return 0.95 * self.min_scale * float(self.semi_axes.min())


class _Canvas:
    """Labels, the winning q per voxel and per-nucleus bookkeeping during placement."""

    def __init__(self, config: PhantomConfig):
        self.config = config
        self.shape = np.asarray(config.shape)
        self.spacing = np.asarray(config.spacing)
        self.labels = np.zeros(config.shape, np.int32)
        self.qmap = np.full(config.shape, np.inf, np.float32)
        self.nuclei: list[DeformedEllipsoid] = []
        self.centres: list[np.ndarray] = []  # pixel units
        self.full: list[int] = []  # own volume in voxels, before contacts
        self.kept: list[int] = []  # voxels held now
        self.windows: list[tuple[slice, ...]] = []

    def render(self, nucleus: DeformedEllipsoid, centre: np.ndarray):
        """q of `nucleus` at `centre` over its box; None if any of it falls outside the canvas."""
        half = nucleus.half_extent() / self.spacing
        # One spare voxel on every side, so that the face-neighbours of the nucleus (the
        # no-contact test of uniform placement) lie inside the window too.
        lo = np.ceil(centre - half).astype(np.int64) - 1
        hi = np.floor(centre + half).astype(np.int64) + 1
        axes = [
            ((np.arange(lo[d], hi[d] + 1) - centre[d]) * self.spacing[d]).reshape(
                (1,) * d + (-1,) + (1,) * (len(lo) - d - 1)
            )
            for d in range(len(lo))
        ]
        offsets = np.stack(np.broadcast_arrays(*axes))
        q = nucleus.q(offsets).astype(np.float32)
        inside = q <= 1.0
        if not inside.any():
            return None
        if np.any(lo < 0) or np.any(hi >= self.shape):
            crop = tuple(
                slice(max(0, -lo[d]), hi[d] - lo[d] + 1 - max(0, hi[d] - self.shape[d] + 1))
                for d in range(len(lo))
            )
            if np.count_nonzero(inside[crop]) != np.count_nonzero(inside):
                return None
            q, inside = q[crop], inside[crop]
            lo, hi = np.maximum(lo, 0), np.minimum(hi, self.shape - 1)
        window = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
        return window, q, inside

    def _one_piece(self, label: int, window: tuple[slice, ...]) -> bool:
        _, n = ndimage.label(self.labels[window] == label)
        return n == 1

    def try_add(self, nucleus: DeformedEllipsoid, centre: np.ndarray, clustered: bool) -> bool:
        """Adds the nucleus if the placement rules allow it; leaves the canvas unchanged if not."""
        rendered = self.render(nucleus, centre)
        if rendered is None:
            return False
        window, q, inside = rendered
        labels, qmap = self.labels[window], self.qmap[window]
        own = int(np.count_nonzero(inside))
        if not clustered:
            occupied = labels > 0
            if occupied.any() and np.any(ndimage.binary_dilation(inside) & occupied):
                return False
            take = inside
            losers, lost = np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            if not np.any(inside & (labels > 0)):
                return False  # must touch: a clustered nucleus that floats free is not clustered
            take = inside & (q < qmap)
            if np.count_nonzero(take) < self.config.min_kept * own:
                return False
            losers, lost = np.unique(labels[take & (labels > 0)], return_counts=True)
            for label, n_lost in zip(losers, lost):
                if self.kept[label - 1] - n_lost < self.config.min_kept * self.full[label - 1]:
                    return False
        saved = labels.copy(), qmap.copy()
        new = len(self.nuclei) + 1
        labels[take] = new
        qmap[take] = q[take]
        pieces_ok = self._one_piece(new, window) and all(
            self._one_piece(int(label), self.windows[label - 1]) for label in losers
        )
        if not pieces_ok:
            labels[...], qmap[...] = saved
            return False
        for label, n_lost in zip(losers, lost):
            self.kept[label - 1] -= int(n_lost)
        self.nuclei.append(nucleus)
        self.centres.append(np.asarray(centre, np.float64))
        self.full.append(own)
        self.kept.append(int(np.count_nonzero(take)))
        self.windows.append(window)
        return True


def _place_clustered(canvas: _Canvas, nucleus: DeformedEllipsoid, rng: np.random.Generator) -> bool:
    """Against a random placed nucleus, along a random direction, overlapping by `squeeze`."""
    config = canvas.config
    for _ in range(config.max_tries):
        partner = int(rng.integers(len(canvas.nuclei)))
        direction = _random_unit_vectors(1, config.ndim, rng)[0]
        squeeze = rng.uniform(*config.squeeze)
        distance = (1.0 - squeeze) * (
            canvas.nuclei[partner].radius_along(direction) + nucleus.radius_along(-direction)
        )
        centre = canvas.centres[partner] + distance * direction / canvas.spacing
        if canvas.try_add(nucleus, centre, clustered=True):
            return True
    return False


def _place_uniform(canvas: _Canvas, nucleus: DeformedEllipsoid, rng: np.random.Generator) -> bool:
    """Uniformly where the nucleus's box fits; positions whose inner balls overlap a placed
    nucleus's inner ball are rejected before the (costly) rendering."""
    config = canvas.config
    half = nucleus.half_extent() / canvas.spacing
    low, high = half, canvas.shape - 1.0 - half
    high = np.maximum(high, low)
    centres = np.asarray(canvas.centres).reshape(-1, config.ndim)
    inner = np.asarray([n.inner_radius() for n in canvas.nuclei]) + nucleus.inner_radius()
    for _ in range(config.max_tries):
        centre = rng.uniform(low, high)
        if len(centres):
            gaps = np.linalg.norm((centres - centre) * canvas.spacing, axis=1)
            if np.any(gaps < inner):
                continue
        if canvas.try_add(nucleus, centre, clustered=False):
            return True
    return False


def place_nuclei(config: PhantomConfig, rng: np.random.Generator) -> np.ndarray:
    """Deformed nuclei placed with clustering probability `config.clustering`, no overlap.

    See the module docstring for the shape and placement model. For each nucleus: decide
    whether it is clustered (never the first), draw its shape, and try up to `max_tries`
    positions in that mode; a clustered nucleus that cannot be placed falls back to uniform
    placement, and a nucleus that fits nowhere is redrawn (up to 3 shapes) before giving up.

    Args:
        config: geometry.
        rng: numpy Generator; the only source of randomness.

    Returns:
        (*config.shape) int32 labels 1..N (N = config.n_nuclei unless placement failed,
        which is logged), 0 = background. Each label is one face-connected piece.
    """
    canvas = _Canvas(config)
    for index in range(config.n_nuclei):
        clustered = index > 0 and rng.uniform() < config.clustering
        placed = False
        for _ in range(_SHAPE_DRAWS):
            nucleus = DeformedEllipsoid.random(config, rng)
            placed = (clustered and _place_clustered(canvas, nucleus, rng)) or _place_uniform(
                canvas, nucleus, rng
            )
            if placed:
                break
        if not placed:
            logging.warning(
                "place_nuclei: nucleus %d of %d fits nowhere on a %s canvas (%d shapes x %d tries); "
                "returning %d nuclei.",
                index + 1,
                config.n_nuclei,
                config.shape,
                _SHAPE_DRAWS,
                config.max_tries,
                len(canvas.nuclei),
            )
            break
    return canvas.labels


def touching_fraction(labels: np.ndarray) -> float:
    """Fraction of the nuclei that share a face with another nucleus (0.0 if there are none)."""
    labels = np.asarray(labels)
    n = int(labels.max(initial=0))
    if n == 0:
        return 0.0
    touching = np.zeros(n + 1, bool)
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        first, second = a[1:], a[:-1]
        contact = (first != second) & (first > 0) & (second > 0)
        touching[first[contact]] = True
        touching[second[contact]] = True
    return float(np.count_nonzero(touching[1:])) / n
