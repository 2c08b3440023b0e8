"""Throughput of the tf.data patch pipelines against a plain Python loop, in one run.

    /work/venv/bin/python bench/pipeline.py [--quick] [--data DIR] [--batch N] [--batches N]

For 2D (256 x 256 patches from BBBC039 train) and 3D (32 x 128 x 128 patches) it prints
patches/s of `pipelines.patch_dataset` (all four representations rendered) and of a
sequential loop doing the same per-patch work with the same functions in numpy (crop,
flip/rot90, `pipelines.render_patch`, mapping to [-1, 1]), and their ratio. Both read the
same in-memory samples; reading, normalizing and coloring (once per file) are reported
separately. Both are warmed up before timing. A per-representation breakdown of the
rendering cost is printed too, since that numpy work dominates.

3D sources: the only real 3D volume staged is the StarDist example (31 x 61 x 57), too
small for a 32 x 128 x 128 patch. The benchmark mirror-tiles it 2 x 3 x 3 (62 x 183 x 171;
each copy's nuclei relabelled to new ids), which keeps the real nucleus size and density,
so the per-patch rendering cost is representative. When `nucgen_tf.phantoms` is
importable, a parametric phantom volume (`phantoms.example(ndim=3, shape=(48, 160, 160))`)
is benchmarked as well.

Data: --data, else $NUCGEN_DATA_DIR, else ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tensorflow as tf  # noqa: E402

from nucgen_tf import geometry, io  # noqa: E402
from nucgen_tf.config import NormConfig, PatchConfig, RenderConfig  # noqa: E402
from nucgen_tf.data import normalize as nz  # noqa: E402
from nucgen_tf.data import pipelines, sources  # noqa: E402

try:
    from nucgen_tf import phantoms  # noqa: E402
except ImportError:  # Optional here: the real-volume benchmark does not need it.
    phantoms = None


def data_dir(flag: str | None) -> pathlib.Path:
    if flag:
        return pathlib.Path(flag)
    env = os.environ.get("NUCGEN_DATA_DIR")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "data"


def tiled_volume(pair: io.ImagePair, reps=(2, 3, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-tiles a volume and its labels; every copy's nuclei get fresh ids."""
    image, labels = io.read_pair(pair, ndim=3)
    n = int(labels.max())
    for axis, count in enumerate(reps):
        images, label_copies = [], []
        for k in range(count):
            flipped_image = np.flip(image, axis) if k % 2 else image
            flipped_labels = np.flip(labels, axis) if k % 2 else labels
            images.append(flipped_image)
            # Copy k of the current block gets ids shifted past every earlier copy.
            label_copies.append(np.where(flipped_labels > 0, flipped_labels + k * n, 0))
        image, labels = np.concatenate(images, axis), np.concatenate(label_copies, axis)
        n *= count
    return image, labels.astype(np.int32)


def make_sample(name: str, image: np.ndarray, labels: np.ndarray, norm, render) -> sources.Sample:
    """A one-volume data set, normalized and colored as `sources.load_arrays` does it."""
    stats = nz.dataset_intensity_stats([image], norm)
    lo, hi = nz.image_range(image, stats, norm)
    return sources.Sample(
        name=name,
        image=nz.normalize(image, lo, hi),
        labels=labels.astype(np.int32),
        lut=geometry.color_labels(labels, render.color_margin),
        norm_range=(lo, hi),
    )


def loop_patches(samples, patch: PatchConfig, rng: np.random.Generator):
    """Crop + flip/rot90 in numpy, as the pipeline does in TF: yields (image, labels, sample)."""
    shape = np.asarray(patch.patch_shape)
    ndim = patch.ndim
    order = []
    while True:
        if not order:
            order = list(rng.permutation(len(samples)))
        s = samples[order.pop()]
        deficit = np.maximum(shape - s.labels.shape, 0)
        pads = [(d // 2, d - d // 2) for d in deficit]
        image = np.pad(s.image, pads, constant_values=s.image.min()) if deficit.any() else s.image
        labels = np.pad(s.labels, pads) if deficit.any() else s.labels
        start = [rng.integers(0, size - p + 1) for size, p in zip(labels.shape, shape)]
        window = tuple(slice(a, a + p) for a, p in zip(start, shape))
        image, labels = image[window], labels[window]
        for axis in range(ndim):
            if patch.flips and rng.random() < 0.5:
                image, labels = np.flip(image, axis), np.flip(labels, axis)
        if patch.rot90:
            k = int(rng.integers(4))
            yx = (ndim - 2, ndim - 1)
            image, labels = np.rot90(image, k, yx), np.rot90(labels, k, yx)
        yield np.ascontiguousarray(image), np.ascontiguousarray(labels), s


def loop_batches(samples, patch: PatchConfig, render: RenderConfig, seed: int):
    """The pipeline's per-patch work as a sequential numpy loop (a generator of batches)."""
    patches = loop_patches(samples, patch, np.random.default_rng(seed))
    while True:
        batch = []
        for _ in range(patch.batch_size):
            image, labels, s = next(patches)
            out = {"image": image[..., None], "labels": labels}
            out["norm_range"] = np.asarray(s.norm_range, np.float32)
            for name, stored in pipelines.render_patch(labels, s.lut, render).items():
                out[name] = 2.0 * stored - 1.0
            batch.append(out)
        yield {k: np.stack([b[k] for b in batch]) for k in batch[0]}


def timed(iterator, warmup: int, batches: int) -> float:
    """Seconds per batch after `warmup` batches."""
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


def render_breakdown(samples, patch: PatchConfig, render: RenderConfig, count: int) -> dict[str, float]:
    """Milliseconds per patch of each representation alone, on loop-sampled patches."""
    patches = loop_patches(samples, patch, np.random.default_rng(1))
    drawn = [next(patches) for _ in range(count)]
    out = {}
    for name in pipelines.REPRESENTATIONS:
        start = time.perf_counter()
        for _, labels, s in drawn:
            pipelines.render_patch(labels, s.lut, render, (name,))
        out[name] = 1e3 * (time.perf_counter() - start) / count
    return out


def bench(name, samples, patch: PatchConfig, render, norm, warmup: int, batches: int) -> None:
    ds = pipelines.patch_dataset(samples, patch, render, norm)
    pipe = timed(iter(ds), warmup, batches)
    loop = timed(loop_batches(samples, patch, render, patch.seed), warmup, batches)
    b = patch.batch_size
    parts = render_breakdown(samples, patch, render, max(8, batches))
    print(
        f"{name:<11} patch {'x'.join(map(str, patch.patch_shape)):>10}  batch {b}  "
        f"pipeline {b / pipe:6.1f} patches/s  loop {b / loop:6.1f} patches/s  "
        f"pipeline/loop {loop / pipe:4.2f}x"
    )
    print(
        f"{'':<11} loop {1e3 * loop / b:.1f} ms/patch; rendering alone (ms/patch): "
        + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="staged data folder (holds bbbc039/ and stardist_examples/)")
    parser.add_argument("--quick", action="store_true", help="5 files, few batches (about a minute)")
    parser.add_argument("--batch", type=int, default=8, help="patches per batch")
    parser.add_argument("--batches", type=int, default=None, help="timed batches per measurement")
    args = parser.parse_args(argv)

    root = data_dir(args.data)
    train, volume = root / "bbbc039" / "train", root / "stardist_examples" / "nuclei3d_synthetic"
    for path in (train, volume):
        if not path.is_dir():
            raise SystemExit(f"{path}: data folder not found; pass --data or set NUCGEN_DATA_DIR")
    batches = args.batches or (3 if args.quick else 20)
    warmup = 1 if args.quick else 4
    render, norm = RenderConfig(), NormConfig()

    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores, data {root}")
    start = time.perf_counter()
    two_d, _ = sources.load_arrays(train, 2, norm, render, max_files=5 if args.quick else None)
    print(
        f"  2D BBBC039: {len(two_d)} train images {two_d[0].image.shape}, "
        f"{sum(int(s.labels.max()) for s in two_d)} nuclei; read+normalize+color "
        f"{time.perf_counter() - start:.1f} s (once per file)"
    )
    (pair,) = io.list_pairs(volume)
    tiled = make_sample(f"{pair.name}_tiled", *tiled_volume(pair), norm, render)
    print(
        f"  3D real: StarDist example 31x61x57 mirror-tiled 2x3x3 -> {tiled.image.shape}, "
        f"{int(tiled.labels.max())} nuclei"
    )
    sources_3d = [("3D real", [tiled])]
    if phantoms is not None:
        image, labels = phantoms.example(ndim=3, shape=(48, 160, 160))
        sources_3d.append(("3D phantom", [make_sample("phantom", image, labels, norm, render)]))
        print(
            f"  3D phantom: phantoms.example(ndim=3, shape=(48, 160, 160)), {int(labels.max())} nuclei"
        )
    print(f"timing {batches} batches after {warmup} warm-up batches, for each of pipeline and loop")
    bench("2D BBBC039", two_d, PatchConfig((256, 256), args.batch, seed=0), render, norm, warmup, batches)
    for name, samples in sources_3d:
        bench(name, samples, PatchConfig((32, 128, 128), args.batch, seed=0), render, norm, warmup, batches)


if __name__ == "__main__":
    main()
