"""Seed layouts of the "mixed" and "fitted" arrangements against real nucleus centroids.

    /work/venv/bin/python bench/arrangements.py [--fields 100] [--shape 256,256]
        [--fit_data ../shared/data/bbbc039/train] [--real ../shared/data/bbbc039/test]

No networks: seeds only. "mixed" draws with the bundled stage-1 `SeedConfig` (as
`nucgen synthesize` does by default), "fitted" with the fit of `--fit_data` (the training
masks); both from the sample streams of synthesis (`sample_rngs(0, i)["seeds"]`). The real
rows are the centroids of the held-out `--real` masks and of the fitted ones (520 x 696
BBBC039 fields). Printed per row: per-field density quantiles (nuclei per 10,000 px), the
edge-corrected nearest-neighbour (NN) centroid distance median and 1 % quantile, the plain NN
median (as `nucgen realism` measures it, biased up near edges, more so on small canvases) and
the edge-corrected Clark-Evans ratio (see `nucgen_tf.synthesis.arrangement_fit`).

Seeds are not nuclei: stage 1 may drop, merge or add boxes, so this measures only what the
arrangement asks of it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nucgen_tf import io, pretrained  # noqa: E402
from nucgen_tf.config import SeedConfig, from_dict  # noqa: E402
from nucgen_tf.eval.evaluate import label_files  # noqa: E402
from nucgen_tf.synthesis import arrangement_fit, sampling  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "bbbc039"


def plain_nn(fields) -> np.ndarray:
    """NN centroid distances without edge correction, pooled over fields."""
    out = [cKDTree(p).query(p, k=2)[0][:, 1] for p, _ in fields if len(p) > 1]
    return np.concatenate(out) if out else np.zeros(0)


def row(name: str, fields) -> dict:
    stats = arrangement_fit.arrangement_statistics(fields)
    return {
        "name": name,
        "fields": stats.fields,
        "density_q10": stats.density_quantile(0.1),
        "density_q50": stats.density_quantile(0.5),
        "density_q90": stats.density_quantile(0.9),
        "nn_median": stats.nn_quantile(0.5),
        "nn_q01": stats.hard_core,
        "nn_median_plain": float(np.median(plain_nn(fields))),
        "clark_evans": stats.clark_evans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=100)
    parser.add_argument("--shape", default="256,256")
    parser.add_argument("--fit_data", default=str(DATA / "train"))
    parser.add_argument("--real", default=str(DATA / "test"))
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))

    manifest = json.loads((pretrained.bundled_models() / "stage1" / "nucgen_manifest.json").read_text())
    bundle_seeds = from_dict(SeedConfig, manifest["config"]["seeds"])
    start = time.perf_counter()
    fit = arrangement_fit.fit_arrangement(args.fit_data)
    fit_seconds = time.perf_counter() - start

    rows = []
    for arrangement in ("mixed", "fitted"):
        fields = []
        for i in range(args.fields):
            rng = sampling.sample_rngs(0, i)["seeds"]
            fields.append((sampling.draw_seeds(arrangement, shape, rng, bundle_seeds, fit=fit)[1], shape))
        rows.append(row(f"{arrangement} {shape[0]}x{shape[1]}", fields))
    for folder, what in ((args.real, "held out"), (args.fit_data, "fitted")):
        real = []
        for path in label_files(folder).values():
            labels = io.read_labels(path)
            real.append((arrangement_fit.centroids(labels), labels.shape))
        rows.append(row(f"real {pathlib.Path(folder).name} ({what})", real))

    print(f"fit of {args.fit_data}: {fit_seconds:.1f} s; {json.dumps(fit.to_dict())}")
    header = ["arrangement", "fields", "dens q10", "q50", "q90", "NN med", "NN q01", "NN med plain"]
    print(" | ".join([*header, "Clark-Evans"]))
    for r in rows:
        values = [r[k] for k in ("density_q10", "density_q50", "density_q90")]
        values += [r[k] for k in ("nn_median", "nn_q01", "nn_median_plain")]
        cells = [r["name"], str(r["fields"]), *(f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values)]
        print(" | ".join([*cells, f"{r['clark_evans']:.3f}"]))
    if args.json:
        io.write_json(args.json, {"fit": fit.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
