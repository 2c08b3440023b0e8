"""Speed and memory of the BBBC024-like phantom generator against baselines, in one run.

    /work/venv/bin/python bench/phantoms.py [--quick] [--volumes N] [--shape Z,Y,X]

At the recipe's default volume shape (32 x 128 x 128 voxels, spacing (2, 1, 1), 20 nuclei),
with the clustering level cycling over 0 / 0.25 / 0.5 / 0.75 as in the recipe, it prints
volumes/s, ms/volume and the tracemalloc peak (MiB, numpy buffers included) of:

  place_nuclei            the windowed placement (each candidate rendered in its own box)
  place_nuclei, naive     the same placement evaluating every candidate's q on the whole
                          canvas (what a non-windowed version costs); its labels must be
                          identical, which is checked
  phantom_volume          everything the recipe makes per volume: masks, texture and both
                          SNR images
  baseline: example       the existing parametric pipeline at the same shape and a similar
                          count: clustered seeds -> `ellipsoid_labels` -> `fluorescence_image`

and the projected time of the default data set (12 + 108 volumes, both SNRs; file writing and
the manifest's SNR measurement add ~10%). The machine's cores may be shared: compare rows of
one run, not runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import tracemalloc

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nucgen_tf import phantoms  # noqa: E402
from nucgen_tf.config import SeedConfig  # noqa: E402
from nucgen_tf.geometry import arrange_seeds  # noqa: E402
from nucgen_tf.phantoms import nuclei  # noqa: E402


class _NaiveCanvas(nuclei._Canvas):
    """Renders every candidate over the whole canvas, then keeps its box: same result, no windowing."""

    def render(self, nucleus, centre):
        axes = [
            ((np.arange(n) - centre[d]) * self.spacing[d]).reshape(
                (1,) * d + (-1,) + (1,) * (len(self.shape) - d - 1)
            )
            for d, n in enumerate(self.shape)
        ]
        full_q = nucleus.q(np.stack(np.broadcast_arrays(*axes)))  # the wasted whole-canvas work
        rendered = super().render(nucleus, centre)
        if rendered is None:
            return None
        window, q, inside = rendered
        return window, full_q[window].astype(np.float32), inside


def _configs(shape, n):
    return [
        phantoms.PhantomConfig(shape=shape, clustering=phantoms.CLUSTERING_LEVELS[i % 4]) for i in range(n)
    ]


def windowed(configs):
    return [phantoms.place_nuclei(c, np.random.default_rng(i)) for i, c in enumerate(configs)]


def naive(configs):
    original = nuclei._Canvas
    nuclei._Canvas = _NaiveCanvas
    try:
        return [phantoms.place_nuclei(c, np.random.default_rng(i)) for i, c in enumerate(configs)]
    finally:
        nuclei._Canvas = original


def full_volume(configs):
    return [phantoms.phantom_volume(i, c) for i, c in enumerate(configs)]


def baseline(configs):
    """Clustered seeds (redrawn until >= 15, as `example` does) -> ellipsoids -> image."""
    out = []
    for i, c in enumerate(configs):
        rng = np.random.default_rng(i)
        volume = float(np.prod(np.asarray(c.shape) * np.asarray(c.spacing)))
        seed_config = SeedConfig(density=20 * 1e4 / volume)
        for _ in range(10):
            seeds = arrange_seeds("clustered", c.shape, rng, seed_config, spacing=c.spacing)
            if len(seeds) >= 15:
                break
        labels = phantoms.ellipsoid_labels(seeds, c.shape, rng, radius_range=c.radius, spacing=c.spacing)
        image = phantoms.fluorescence_image(labels, rng, spacing=c.spacing, blur_sigma=(2.5, 1.0, 1.0))
        out.append((labels, image))
    return out


def measure(fn, configs):
    """(seconds per volume, peak MiB of one volume, result); timed without tracemalloc."""
    fn(configs[:1])  # warm-up (imports, caches)
    start = time.perf_counter()
    result = fn(configs)
    seconds = (time.perf_counter() - start) / len(configs)
    tracemalloc.start()
    fn(configs[:1])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 volumes per row, naive placement on 2")
    parser.add_argument("--volumes", type=int, default=8, help="volumes per row (levels cycle)")
    parser.add_argument("--shape", default="32,128,128", help="volume shape Z,Y,X")
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    n = 4 if args.quick else args.volumes
    configs = _configs(shape, n)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    print(
        f"shape {shape}, spacing {configs[0].spacing}, {configs[0].n_nuclei} nuclei, {n} volumes per row "
        "(clustering 0/0.25/0.5/0.75 cycled)"
    )
    rows = []
    t_win, m_win, labels_win = measure(windowed, configs)
    rows.append(("place_nuclei", t_win, m_win))
    n_naive = 2 if args.quick else n
    t_naive, m_naive, labels_naive = measure(naive, configs[:n_naive])
    rows.append(("place_nuclei, naive (whole-canvas q)", t_naive, m_naive))
    t_full, m_full, volumes = measure(full_volume, configs)
    rows.append(("phantom_volume (masks+texture+2 SNRs)", t_full, m_full))
    t_base, m_base, base = measure(baseline, configs)
    rows.append(("baseline: example pipeline, 1 image", t_base, m_base))

    print(f"\n{'':40s} {'volumes/s':>10s} {'ms/volume':>10s} {'peak MiB':>9s}")
    for name, seconds, peak in rows:
        print(f"{name:40s} {1 / seconds:10.2f} {1000 * seconds:10.0f} {peak:9.1f}")
    same = all(np.array_equal(a, b) for a, b in zip(labels_win, labels_naive))
    print(f"\nwindowed vs naive placement: {t_naive / t_win:.1f}x faster, identical labels: {same}")
    print(f"phantom_volume vs baseline pipeline: {t_full / t_base:.2f}x the time per volume")
    counts = [int(lab.max()) for lab, _ in volumes]
    base_counts = [int(lab.max()) for lab, _ in base]
    print(
        f"nuclei per volume: phantom_volume {min(counts)}-{max(counts)}, "
        f"baseline {min(base_counts)}-{max(base_counts)}"
    )
    touching = [phantoms.touching_fraction(lab) for lab, _ in volumes]
    print(
        "touching fraction by level:",
        ", ".join(f"{c.clustering:.2f}: {t:.2f}" for c, t in zip(configs, touching)),
    )
    print(f"projected default data set (120 volumes, both SNRs): {120 * t_full / 60:.1f} min + writing")


if __name__ == "__main__":
    main()
