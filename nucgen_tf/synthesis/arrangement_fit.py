"""The "fitted" seed arrangement: layout statistics of real instance masks and seeds drawn from them.

A field's layout is decided by three things, each fitted here from nucleus centroids:

- how many nuclei it holds: the per-field density (nuclei per 10,000 px), kept as quantiles
  because real fields range from nearly empty to crowded;
- how close two nuclei get: the nearest-neighbour (NN) centroid distance distribution, whose
  low quantile is the hard core no two seeds come closer than;
- whether nuclei clump or spread: the Clark-Evans ratio R, the mean NN distance over that of
  a Poisson process of the same density (R < 1 clustered, R > 1 regular).

NN statistics are edge-corrected (Hanisch's estimator: a centroid counts only when its
neighbour is nearer than the field's edge, weighted by 1 / volume of the field eroded by that
distance), so fits on 520x696 real fields and measurements on 256x256 canvases agree.

Seeds are drawn by `geometry.interaction_seeds`: per field a density from the fitted quantiles,
that many seeds, the fitted hard core, and the one interaction knob (attraction to inhibition)
calibrated at fit time by simulation so that drawn fields reproduce the fitted R.

    fit = fit_arrangement("data/bbbc039/train")          # or load_fit("fit.json")
    kind, seeds = sampling.draw_seeds("fitted", (256, 256), rng, SeedConfig(), fit=fit)
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from nucgen_tf import geometry, io

LEVELS = tuple(round(float(p), 4) for p in np.linspace(0.0, 1.0, 21))
_PER_AREA = 1e4
_DIGITS = 4  # fitted values are rounded so that a fit survives JSON unchanged and reads well


@dataclasses.dataclass(frozen=True)
class ArrangementStatistics:
    """Layout statistics of a set of fields (measured on real centroids or drawn seeds).

    Attributes:
        fields: number of fields.
        points: centroids (seeds) over all fields.
        levels: probability levels of the quantiles, 0 to 1.
        density_quantiles: quantiles of the per-field density, points per 10,000 px
            (physical units^ndim when a spacing is given), at `levels`.
        nn_quantiles: quantiles of the edge-corrected NN centroid distance (physical), at `levels`.
        hard_core: the `hard_core_quantile` quantile of the NN distance (physical).
        clark_evans: pooled Clark-Evans ratio: edge-corrected mean of NN distance / the
            Poisson expectation at its own field's density.
    """

    fields: int
    points: int
    levels: tuple[float, ...]
    density_quantiles: tuple[float, ...]
    nn_quantiles: tuple[float, ...]
    hard_core: float
    clark_evans: float

    def density_quantile(self, p: float) -> float:
        return float(np.interp(p, self.levels, self.density_quantiles))

    def nn_quantile(self, p: float) -> float:
        return float(np.interp(p, self.levels, self.nn_quantiles))


@dataclasses.dataclass(frozen=True)
class FittedArrangement:
    """Seed-layout statistics fitted to real masks, and the process parameter that reproduces them.

    All lengths are physical (pixels times `spacing`); densities are nuclei per 10,000 px
    (physical units^ndim).

    Attributes:
        ndim: 2 or 3, the rank of the masks.
        spacing: pixel size per axis of the fitted masks (ones: pixel units).
        fields: masks fitted.
        nuclei: nuclei (centroids) over all of them.
        levels: probability levels of the quantiles (0 ... 1, increasing).
        density_quantiles: per-field density quantiles; a drawn field takes
            `density_quantiles` at a uniform level (linear interpolation).
        nn_quantiles: edge-corrected NN centroid distance quantiles (for reports and checks).
        hard_core_quantile: level of the NN distribution taken as hard core.
        hard_core: no two seeds closer than this.
        clark_evans: fitted Clark-Evans ratio R (< 1 clustered, > 1 regular).
        interaction: knob of `geometry.interaction_seeds` in [-1, 1] (attraction < 0 <
            inhibition), calibrated by simulation so that drawn fields have ratio
            `clark_evans`.
    """

    ndim: int
    spacing: tuple[float, ...]
    fields: int
    nuclei: int
    levels: tuple[float, ...]
    density_quantiles: tuple[float, ...]
    nn_quantiles: tuple[float, ...]
    hard_core_quantile: float
    hard_core: float
    clark_evans: float
    interaction: float

    def __post_init__(self):
        for name in ("spacing", "levels", "density_quantiles", "nn_quantiles"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"`{name}` must be a list of numbers. Received: {name}={value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.ndim not in (2, 3):
            raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={self.ndim}")
        if len(self.spacing) != self.ndim or min(self.spacing) <= 0:
            raise ValueError(
                f"`spacing` must be {self.ndim} positive numbers. Received: spacing={self.spacing}"
            )
        levels = np.asarray(self.levels)
        if len(levels) < 2 or levels[0] != 0 or levels[-1] != 1 or np.any(np.diff(levels) <= 0):
            raise ValueError(f"`levels` must increase from 0 to 1. Received: levels={self.levels}")
        for name in ("density_quantiles", "nn_quantiles"):
            values = np.asarray(getattr(self, name))
            if len(values) != len(levels) or not np.all(np.isfinite(values)) or values.min() < 0:
                raise ValueError(
                    f"`{name}` must be {len(levels)} finite numbers >= 0 (one per level). "
                    f"Received: {name}={getattr(self, name)}"
                )
            if np.any(np.diff(values) < 0):
                raise ValueError(f"`{name}` must not decrease. Received: {name}={getattr(self, name)}")
        if self.density_quantiles[-1] <= 0:
            raise ValueError(f"`density_quantiles` are all 0. Received: {self.density_quantiles}")
        if not 0 <= self.hard_core_quantile < 1 or not self.hard_core >= 0:
            raise ValueError(
                "Need 0 <= hard_core_quantile < 1 and hard_core >= 0. Received: "
                f"hard_core_quantile={self.hard_core_quantile}, hard_core={self.hard_core}"
            )
        if not self.clark_evans > 0 or not -1 <= self.interaction <= 1:
            raise ValueError(
                "Need clark_evans > 0 and -1 <= interaction <= 1. Received: "
                f"clark_evans={self.clark_evans}, interaction={self.interaction}"
            )

    @property
    def nn_median(self) -> float:
        return float(np.interp(0.5, self.levels, self.nn_quantiles))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `from_dict(to_dict())` gives an equal fit."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FittedArrangement:
        """Rebuild a fit written by `to_dict`.

        Raises:
            ValueError: a missing or unknown key, or a value out of range.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"A fit must be a JSON object. Received: {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in values]
        unknown = sorted(set(values) - set(names))
        if missing or unknown:
            raise ValueError(f"Keys must be {names}. Missing: {missing}, unknown: {unknown}")
        try:
            return cls(**{n: values[n] for n in names})
        except TypeError as err:  # e.g. a string where a number belongs
            raise ValueError(f"Wrong value type ({err})") from err

    def draw(
        self,
        shape: Sequence[int],
        rng: np.random.Generator,
        spacing: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Seeds of one field: a density from `density_quantiles`, then `interaction_seeds`.

        The count is density * volume / 1e4 rounded at random (no Poisson spread on top), so
        drawn fields have the fitted per-field density distribution.

        Args:
            shape: canvas shape, `ndim` sizes.
            rng: numpy Generator; the only source of randomness.
            spacing: physical pixel size per axis of the canvas (default ones).

        Returns:
            (N, ndim) float64 seed coordinates in pixel units.
        """
        if len(shape) != self.ndim:
            raise ValueError(
                f"This fit is {self.ndim}D: `shape` needs {self.ndim} sizes. Received: shape={tuple(shape)}"
            )
        density = float(np.interp(rng.uniform(), self.levels, self.density_quantiles))
        volume = float(np.prod(np.asarray(shape, np.float64) * _spacing(spacing, len(shape))))
        count = int(math.floor(density * volume / _PER_AREA + rng.uniform()))
        return geometry.interaction_seeds(
            shape, count, self.hard_core, self.interaction, rng, spacing=spacing
        )


def _spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    return np.ones(ndim) if spacing is None else np.asarray(spacing, np.float64).reshape(ndim)


def centroids(labels: np.ndarray) -> np.ndarray:
    """(N, ndim) centroids in pixel units of the nuclei (labels > 0) of an instance mask."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros((0, labels.ndim))
    return np.asarray(ndi.center_of_mass(labels > 0, labels, ids), np.float64).reshape(-1, labels.ndim)


def _field_nn(
    points: np.ndarray, shape: Sequence[int], spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """(edge-corrected NN distances, their Hanisch weights, field density) of one field."""
    size = np.asarray(shape, np.float64) * spacing  # the canvas covers [-0.5, size - 0.5) px
    volume = float(np.prod(size))
    density = len(points) * _PER_AREA / volume
    if len(points) < 2:
        return np.zeros(0), np.zeros(0), density
    physical = (points + 0.5) * spacing
    to_edge = np.minimum(physical, size - physical).min(axis=1)
    nn = cKDTree(physical).query(physical, k=2)[0][:, 1]
    seen = nn <= to_edge
    nn = nn[seen]
    eroded = np.prod(np.clip(size[None] - 2 * nn[:, None], 0, None), axis=1)
    return nn, 1.0 / np.maximum(eroded, 1e-12), density


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cumulative = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return np.interp(levels, cumulative, values)


def arrangement_statistics(
    fields: Iterable[tuple[np.ndarray, Sequence[int]]],
    spacing: Sequence[float] | None = None,
    hard_core_quantile: float = 0.01,
    levels: Sequence[float] = LEVELS,
) -> ArrangementStatistics:
    """Pooled layout statistics of fields given as (points in pixel units, canvas shape).

    Args:
        fields: per field, (N, ndim) centroids or seeds and the field's shape.
        spacing: physical pixel size per axis (default ones).
        hard_core_quantile: level of the NN distribution reported as `hard_core`.
        levels: probability levels of the quantiles.

    Raises:
        ValueError: no field, or no nucleus with a neighbour nearer than the field edge.
    """
    densities, nns, weights, ratios = [], [], [], []
    n_points, ndim = 0, None
    for points, shape in fields:
        ndim = len(shape)
        points = np.asarray(points, np.float64).reshape(-1, ndim)
        nn, weight, density = _field_nn(points, shape, _spacing(spacing, ndim))
        densities.append(density)
        n_points += len(points)
        if len(nn):
            nns.append(nn)
            weights.append(weight)
            ratios.append(nn / geometry.poisson_nn_distance(density, ndim))
    if not densities:
        raise ValueError("`fields` must hold at least one field.")
    if not nns:
        raise ValueError(
            f"No nucleus of {len(densities)} fields has a neighbour nearer than the field edge; "
            "NN statistics need fields with at least 2 nuclei."
        )
    nn, weight, ratio = np.concatenate(nns), np.concatenate(weights), np.concatenate(ratios)
    return ArrangementStatistics(
        fields=len(densities),
        points=n_points,
        levels=tuple(levels),
        density_quantiles=tuple(np.quantile(densities, levels).tolist()),
        nn_quantiles=tuple(_weighted_quantiles(nn, weight, levels).tolist()),
        hard_core=float(_weighted_quantiles(nn, weight, [hard_core_quantile])[0]),
        clark_evans=float(np.sum(ratio * weight) / np.sum(weight)),
    )


def calibrate_interaction(
    target: float,
    density_quantiles: Sequence[float],
    levels: Sequence[float],
    hard_core: float,
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    fields: int = 16,
    steps: int = 12,
    seed: int = 0,
) -> float:
    """The `interaction_seeds` knob whose fields have Clark-Evans ratio `target`, by bisection.

    Every trial draws the same `fields` canvases of `shape` (common random numbers from
    `seed`; densities at evenly spaced levels), so the ratio is a deterministic, increasing
    function of the knob. A target outside what k in [-1, 1] reaches gets the end (logged).
    """
    ndim = len(shape)
    volume = float(np.prod(np.asarray(shape, np.float64) * _spacing(spacing, ndim)))
    stratified = (np.arange(fields) + 0.5) / fields
    counts = [round(float(np.interp(p, levels, density_quantiles)) * volume / _PER_AREA) for p in stratified]

    def ratio(k: float) -> float:
        rng = np.random.default_rng(seed)
        drawn = [
            (geometry.interaction_seeds(shape, n, hard_core, k, rng, spacing=spacing), shape) for n in counts
        ]
        return arrangement_statistics(drawn, spacing).clark_evans

    low, high = -1.0, 1.0
    r_low, r_high = ratio(low), ratio(high)
    if not r_low < target < r_high:
        end = low if target <= r_low else high
        logging.warning(
            "Clark-Evans ratio %.3f is outside what the fitted process reaches (%.3f .. %.3f); using "
            "interaction %s.", target, r_low, r_high, end,
        )  # fmt: skip
        return end
    for _ in range(steps):
        middle = 0.5 * (low + high)
        if ratio(middle) < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def fit_labels(
    masks: Iterable[np.ndarray],
    spacing: Sequence[float] | None = None,
    hard_core_quantile: float = 0.01,
    seed: int = 0,
) -> FittedArrangement:
    """Fit the arrangement to in-memory instance masks of one rank.

    The interaction knob is calibrated on canvases of the masks' median shape.

    Args:
        masks: integer instance masks (0 = background), (Y, X) or (Z, Y, X).
        spacing: physical pixel size per axis (default ones).
        hard_core_quantile: NN distance level taken as the hard core.
        seed: seed of the calibration's simulated fields (the fit is deterministic).

    Raises:
        ValueError: no mask, mixed ranks, or too few nuclei for NN statistics.
    """
    fields = [(centroids(labels), np.shape(labels)) for labels in masks]
    ndims = {len(shape) for _, shape in fields}
    if len(ndims) > 1 or not ndims <= {2, 3}:
        raise ValueError(f"Masks must all be 2D or all 3D. Received: ranks {sorted(ndims)}")
    stats = arrangement_statistics(fields, spacing, hard_core_quantile)
    ndim = ndims.pop()
    shape = tuple(int(s) for s in np.median([s for _, s in fields], axis=0))
    hard_core = round(stats.hard_core, _DIGITS)
    clark_evans = round(stats.clark_evans, _DIGITS)
    densities = tuple(round(v, _DIGITS) for v in stats.density_quantiles)
    interaction = calibrate_interaction(
        clark_evans, densities, stats.levels, hard_core, shape, spacing, seed=seed
    )
    return FittedArrangement(
        ndim=ndim,
        spacing=tuple(_spacing(spacing, ndim).tolist()),
        fields=stats.fields,
        nuclei=stats.points,
        levels=stats.levels,
        density_quantiles=densities,
        nn_quantiles=tuple(round(v, _DIGITS) for v in stats.nn_quantiles),
        hard_core_quantile=hard_core_quantile,
        hard_core=hard_core,
        clark_evans=clark_evans,
        interaction=round(interaction, _DIGITS),
    )


def fit_arrangement(
    folder: io.PathLike,
    spacing: Sequence[float] | None = None,
    hard_core_quantile: float = 0.01,
    seed: int = 0,
) -> FittedArrangement:
    """Fit the arrangement to a folder of real instance masks (2D or 3D).

    Args:
        folder: label TIFFs, or a data folder with masks/ (or cellpose `*_masks.tif`).
        spacing, hard_core_quantile, seed: see `fit_labels`.

    Raises:
        io.DataError: a missing folder, no masks, an unreadable mask, or masks that cannot be
            fitted (the message names the folder or file).
    """
    from nucgen_tf.eval.evaluate import label_files

    paths = list(label_files(folder).values())
    try:
        return fit_labels((io.read_labels(p) for p in paths), spacing, hard_core_quantile, seed)
    except io.DataError:
        raise
    except ValueError as err:
        raise io.DataError(folder, f"cannot fit a seed arrangement to its {len(paths)} masks: {err}") from err


def load_fit(path: io.PathLike) -> FittedArrangement:
    """A fit saved by `save_fit` (or written by hand in its format).

    Raises:
        io.DataError: missing or unreadable file, not JSON, or not a valid fit.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise io.DataError(path, "arrangement fit not found" if not path.exists() else "not a file")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise io.DataError(path, f"not a JSON arrangement fit ({err})") from err
    try:
        return FittedArrangement.from_dict(values)
    except ValueError as err:
        raise io.DataError(path, f"not a valid arrangement fit: {err}") from err


def save_fit(path: io.PathLike, fit: FittedArrangement) -> None:
    """Write a fit as JSON (atomically); `load_fit` reads it back equal."""
    io.write_json(path, fit.to_dict())


def check_source(data: io.PathLike | None = None, fit_file: io.PathLike | None = None) -> None:
    """Cheap checks of where a fit comes from (exactly one; the folder holds masks), before heavy work.

    Raises:
        ValueError: neither or both given.
        io.DataError: the folder holds no masks.
    """
    if (data is None) == (fit_file is None):
        raise ValueError(
            "The fitted arrangement needs exactly one of a real masks folder or a fit JSON file. "
            f"Received: data={data!r}, fit_file={fit_file!r}"
        )
    if data is not None:
        from nucgen_tf.eval.evaluate import label_files

        label_files(data)


def load_or_fit(
    data: io.PathLike | None = None,
    fit_file: io.PathLike | None = None,
    spacing: Sequence[float] | None = None,
) -> FittedArrangement:
    """The fit of a real masks folder (`data`), or one saved in `fit_file`: exactly one of them.

    For scripts and experiment runners; `nucgen synthesize --arrangement_data/--arrangement_fit`
    calls it.

    Args:
        data: real instance masks (see `fit_arrangement`), fitted now.
        fit_file: a JSON fit written by `save_fit`.
        spacing: physical pixel size of the masks in `data` (a saved fit carries its own).

    Raises:
        ValueError: neither or both given.
        io.DataError: as `fit_arrangement` or `load_fit`, naming the folder or file.
    """
    check_source(data, fit_file)
    if fit_file is not None:
        return load_fit(fit_file)
    fit = fit_arrangement(data, spacing)
    logging.info(
        "fitted arrangement of %s: %d fields, %d nuclei, density median %.2f / 1e4 px, NN median %.1f, "
        "hard core %.1f, Clark-Evans %.3f, interaction %.3f",
        data, fit.fields, fit.nuclei, fit.density_quantiles[len(fit.levels) // 2], fit.nn_median,
        fit.hard_core, fit.clark_evans, fit.interaction,
    )  # fmt: skip
    return fit
