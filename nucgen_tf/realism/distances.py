"""Distances between real and synthetic statistics, against the real-vs-real floor.

distance = 1-D Wasserstein distance / the real values' interquartile range (IQR): how far,
in units of the real spread, the synthetic distribution must be moved to match. Two halves
of the same real set are not at distance 0 (finite samples, different fields), so the same
distance between them is the floor, and distance / floor says how many times further from
real the synthetic data is than real data is from itself. Both use the whole real set's
IQR as the unit, so they are comparable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from scipy.stats import wasserstein_distance

from nucgen_tf import io
from nucgen_tf.realism import fields as fields_lib
from nucgen_tf.realism.measurements import STATISTICS, Measurements, measure_fields

# 0/1 statistics, whose mean (the share of 1s) says more than their median.
BINARY = ("small", "touching")


@dataclasses.dataclass(frozen=True)
class StatisticComparison:
    """One statistic, real vs synthetic.

    Attributes:
        real_median, synthetic_median: medians (for 0/1 statistics read the means instead).
        real_mean, synthetic_mean: means (the share of 1s for "small" and "touching").
        distance: Wasserstein distance / real IQR (see `scale`).
        floor: the same distance between the two real halves; None without halves.
        ratio: distance / floor; None without a floor or when it is 0.
        n_real, n_synthetic: number of values.
    """

    real_median: float
    synthetic_median: float
    real_mean: float
    synthetic_mean: float
    distance: float
    floor: float | None
    ratio: float | None
    n_real: int
    n_synthetic: int


@dataclasses.dataclass(frozen=True)
class RealismReport:
    """Per-statistic comparisons (in `STATISTICS` order) and what could not be compared.

    Attributes:
        statistics: name -> comparison.
        missing: names left out (no values on one side, e.g. a masks-only folder).
        n_real_fields, n_synthetic_fields: fields measured.
    """

    statistics: Mapping[str, StatisticComparison]
    missing: tuple[str, ...] = ()
    n_real_fields: int = 0
    n_synthetic_fields: int = 0

    def to_json(self) -> dict[str, Any]:
        """A plain dict for `json` (None for undefined figures)."""
        return {
            "statistics": {name: dataclasses.asdict(c) for name, c in self.statistics.items()},
            "missing": list(self.missing),
            "n_real_fields": self.n_real_fields,
            "n_synthetic_fields": self.n_synthetic_fields,
            "definitions": {name: STATISTICS[name] for name in self.statistics},
        }


def scale(real: np.ndarray) -> float:
    """The unit of distance: the real IQR; else the real std (a 0/1 statistic with a rare 1
    has IQR 0); else 1 (all real values equal)."""
    q1, q3 = np.percentile(real, [25, 75])
    for candidate in (q3 - q1, np.std(real)):
        if candidate > 0:
            return float(candidate)
    return 1.0


def distance(a: np.ndarray, b: np.ndarray, unit: float) -> float:
    """1-D Wasserstein distance between two samples, in `unit`s."""
    return float(wasserstein_distance(a, b) / unit)


def compare(
    real: Measurements,
    synthetic: Measurements,
    real_halves: tuple[Measurements, Measurements] | None = None,
) -> RealismReport:
    """Compares every statistic both sides have values for.

    Args:
        real: the real set (normally `Measurements.concat(real_halves)`).
        synthetic: the set to judge.
        real_halves: two disjoint halves of the real set, for the floor; None leaves the
            floor and ratio out.

    Raises:
        ValueError: the two sides have different ranks (2D vs 3D).
    """
    if real.ndim != synthetic.ndim:
        raise ValueError(
            f"Real and synthetic fields differ in rank. Received: {real.ndim}D and {synthetic.ndim}D"
        )
    statistics, missing = {}, []
    for name in STATISTICS:
        a, b = real.values.get(name, np.zeros(0)), synthetic.values.get(name, np.zeros(0))
        if not (a.size and b.size):
            missing.append(name)
            continue
        unit = scale(a)
        floor = None
        if real_halves is not None:
            h1, h2 = (h.values.get(name, np.zeros(0)) for h in real_halves)
            floor = distance(h1, h2, unit) if h1.size and h2.size else None
        d = distance(a, b, unit)
        statistics[name] = StatisticComparison(
            real_median=float(np.median(a)),
            synthetic_median=float(np.median(b)),
            real_mean=float(np.mean(a)),
            synthetic_mean=float(np.mean(b)),
            distance=d,
            floor=floor,
            ratio=d / floor if floor else None,
            n_real=int(a.size),
            n_synthetic=int(b.size),
        )
    return RealismReport(statistics, tuple(missing), real.n_fields, synthetic.n_fields)


def measure_real(
    real_dir: io.PathLike, **kwargs
) -> tuple[Measurements, tuple[Measurements, Measurements] | None]:
    """(whole, halves) of a real folder; halves None for a single field (with a warning)."""
    listed = fields_lib.list_fields(real_dir)
    if len(listed) < 2:
        logging.warning("%s: one field only, so no real-vs-real floor", real_dir)
        return measure_fields(listed, **kwargs), None
    halves = tuple(measure_fields(h, **kwargs) for h in fields_lib.halves(listed))
    return Measurements.concat(halves), halves


def compare_folders(
    real_dir: io.PathLike,
    synthetic_dir: io.PathLike,
    small_area: float = 150.0,
    background_margin: float = 3.0,
) -> RealismReport:
    """`compare` of two folders (any layout of `fields.list_fields`), with the real halves' floor.

    Raises:
        io.DataError: a missing or empty folder, a bad file, or ranks that differ.
    """
    return measure_and_compare(real_dir, synthetic_dir, small_area, background_margin)[0]


def measure_and_compare(
    real_dir: io.PathLike,
    synthetic_dir: io.PathLike,
    small_area: float = 150.0,
    background_margin: float = 3.0,
) -> tuple[RealismReport, Measurements, Measurements]:
    """`compare_folders` that also returns the real and synthetic measurements (for the figure)."""
    kwargs = {"small_area": small_area, "background_margin": background_margin}
    real, halves = measure_real(real_dir, **kwargs)
    synthetic = measure_fields(fields_lib.list_fields(synthetic_dir), **kwargs)
    try:
        return compare(real, synthetic, halves), real, synthetic
    except ValueError as error:
        raise io.DataError(synthetic_dir, str(error)) from error


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def format_table(report: RealismReport) -> str:
    """A fixed-width table: statistic, real / synthetic median, distance, floor, ratio."""
    header = ("statistic", "real median", "synth median", "distance", "floor", "ratio")
    rows = []
    for name, c in report.statistics.items():
        binary = name in BINARY
        real, synth = (c.real_mean, c.synthetic_mean) if binary else (c.real_median, c.synthetic_median)
        label = f"{name} (share)" if binary else name
        rows.append((label, _cell(real), _cell(synth), _cell(c.distance), _cell(c.floor), _cell(c.ratio, 2)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(
        f"{v:<{w}}" if i == 0 else f"{v:>{w}}" for i, (v, w) in enumerate(zip(r, widths))
    )
    lines = [line(header), "-" * len(line(header)), *map(line, rows)]
    if report.missing:
        lines.append(f"not compared (no values on one side): {', '.join(report.missing)}")
    lines.append(f"fields: {report.n_real_fields} real, {report.n_synthetic_fields} synthetic")
    return "\n".join(lines)
