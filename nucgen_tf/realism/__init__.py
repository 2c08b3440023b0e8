"""How realistic is a synthetic set? Distribution distances to real data, with a real-vs-real floor.

    >>> from nucgen_tf import realism
    >>> report = realism.compare_folders("bbbc039/test", "synthetic/")           # doctest: +SKIP
    >>> real = realism.measure_folder("bbbc039/test")                            # doctest: +SKIP
    >>> report = realism.compare(real, realism.measure(pairs), None)            # doctest: +SKIP
    >>> report.statistics["solidity"].ratio, report.to_json()                   # doctest: +SKIP

Pieces: `shapes` and `intensity` (per-field statistics, any ndim), `measurements` (pooling
over fields), `fields` (folder layouts, real halves), `distances` (distances, floor, report),
`figure` (histograms + crops PNG), `tstr` (train on synthetic, test on real; imports
TensorFlow) and `command` (`nucgen realism`). See docs/realism.md.
"""

from nucgen_tf.realism.distances import (
    RealismReport,
    StatisticComparison,
    compare,
    compare_folders,
    format_table,
)
from nucgen_tf.realism.measurements import STATISTICS, Measurements, measure, measure_folder

__all__ = [
    "STATISTICS",
    "Measurements",
    "RealismReport",
    "StatisticComparison",
    "compare",
    "compare_folders",
    "format_table",
    "measure",
    "measure_folder",
]
