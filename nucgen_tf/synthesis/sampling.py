"""Per-sample randomness and seed points: drawn arrangements or a user's CSV.

Sample i of a job with base seed s draws everything from
`np.random.SeedSequence([s, i])`, split into independent streams for the seed arrangement,
the two colorings, the camera noise and the stage-3 generator's texture noise. A sample
therefore depends only on (s, i) and the settings, never on which shard, chunk or rerun
computes it, and changing the arrangement flags does not change how an unchanged sample is
colored.
"""

from __future__ import annotations

import csv
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from nucgen_tf import geometry
from nucgen_tf.config import SeedConfig
from nucgen_tf.io import DataError

if TYPE_CHECKING:
    from nucgen_tf.synthesis.arrangement_fit import FittedArrangement

ARRANGEMENTS = (*geometry.SEED_KINDS, "mixed", "fitted")
AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


def sample_rngs(base_seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators of sample `index`: "seeds", "colors_stage2", "colors_stage3",
    "sensor" and "texture" (the noise channels of a stage-3 generator that takes them).

    Child k of a SeedSequence does not depend on how many are spawned, so the first three
    streams are those of the time before the sensor stream existed, and the first four those
    of the time before the texture stream: new streams go at the end.
    """
    if base_seed < 0 or index < 0:
        raise ValueError(f"Seeds must be >= 0. Received: base_seed={base_seed}, index={index}")
    children = np.random.SeedSequence([int(base_seed), int(index)]).spawn(5)
    names = ("seeds", "colors_stage2", "colors_stage3", "sensor", "texture")
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def draw_seeds(
    arrangement: str,
    shape: Sequence[int],
    rng: np.random.Generator,
    config: SeedConfig,
    spacing: Sequence[float] | None = None,
    fit: FittedArrangement | None = None,
) -> tuple[str, np.ndarray]:
    """Seeds of one arrangement; "mixed" picks one of `config.kinds` uniformly with `rng`,
    "fitted" draws from `fit` (statistics of real masks, see `arrangement_fit`).

    Returns:
        (the arrangement used, (N, ndim) float64 seed coordinates in pixel units).
    """
    if arrangement not in ARRANGEMENTS:
        raise ValueError(
            f"`arrangement` must be one of {ARRANGEMENTS}. Received: arrangement={arrangement!r}"
        )
    if arrangement == "fitted":
        if fit is None:
            raise ValueError("The 'fitted' arrangement needs `fit` (see arrangement_fit.load_or_fit).")
        return "fitted", fit.draw(shape, rng, spacing=spacing)
    kind = arrangement
    if kind == "mixed":
        kind = str(config.kinds[int(rng.integers(len(config.kinds)))])
    return kind, geometry.arrange_seeds(kind, shape, rng, config, spacing=spacing)


def read_seeds_csv(path: str | pathlib.Path, ndim: int) -> dict[int, np.ndarray]:
    """Read seed points for one or more canvases from a CSV file.

    Columns (header required, any order, extra columns ignored): `y,x` (2D) or `z,y,x`
    (3D) in pixel units, and optionally `sample`, a non-negative integer saying which
    sample the row belongs to. Without a `sample` column every row belongs to sample 0.
    This is the format synthesis writes to `seeds/<name>.csv`, so a sample's seeds can be
    fed back in.

    Returns:
        {sample index: (N, ndim) float64 seeds}.

    Raises:
        DataError: missing columns or values that are not finite numbers.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "seeds CSV not found")
    axes = AXES[ndim]
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [a for a in axes if a not in header]
        if missing:
            raise DataError(
                path, f"{ndim}D seeds need columns {','.join(axes)}; missing {missing}, header {header}"
            )
        rows: dict[int, list[list[float]]] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            try:
                sample = int(row["sample"]) if "sample" in header else 0
                point = [float(row[a]) for a in axes]
            except (TypeError, ValueError) as err:
                raise DataError(path, f"line {line}: not a number ({err})") from err
            if sample < 0 or not np.all(np.isfinite(point)):
                raise DataError(path, f"line {line}: sample must be >= 0 and coordinates finite, got {row}")
            rows.setdefault(sample, []).append(point)
    return {k: np.asarray(v, np.float64).reshape(-1, ndim) for k, v in sorted(rows.items())}
