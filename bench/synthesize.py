"""Samples/s of `nucgen synthesize` end to end, with baselines in the same run.

    /work/venv/bin/python bench/synthesize.py [--quick] [--n N] [--filters 8] [--depth 4]

For 2D 512 x 512 and 3D 32 x 128 x 128 canvases it exports two model sets to a temporary
folder and times `synthesize()` (seeds -> 3 generators -> decoding -> files, previews
included) under several settings:

- untrained U-Nets (`tests.tiny_generators.export_untrained_models`, base filters `--filters`,
  depth `--depth`): the network cost of small real generators. Their box maps are noise, so
  decoding is not representative. Settings: one pass with batch 1 (the default), batch 4
  (the baseline batching is meant to beat) and tiles (2D: 256 px with 32 overlap; 3D:
  32 x 64 x 64 with 16 overlap) against one pass.
- the bundled BBBC039 generators (2D only): trained networks, real decoding work.
- hand-set reference convolutions (`tests.tiny_generators.export_reference_models`): nearly
  free networks but realistic nuclei, so the numpy side (rendering, stage-1/2 decoding,
  recoloring, alignment, writing) is measured with real content.

A per-stage breakdown (mean seconds per sample, from the manifest's timings) follows each
row; "networks" is stage1 + stage2 + stage3 (batched calls are split evenly over their
samples). Every setting is warmed up with one call per stage at its shapes. The k-terminal
cut on its own (the bulk of `decode_colored_mask`) is benchmarked by bench/k_terminal_cut.py.

Decoding before/after (`--decode`, or `--decode_only` for just this): the bundled generators'
stage-1 and stage-2 outputs of `--decode_n` 256 x 256 samples are decoded by today's decoders
and by the stage-2 decoder of commit `BEFORE` (nearest-palette components, read from git
history, so this needs the checkout's .git), interleaved sample by sample; prints the mean
decoding time per sample (box map + colored mask) of each, their ratio (target <= 1.5) and
labels per box of each.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from absl import logging  # noqa: E402

from nucgen_tf import pretrained  # noqa: E402
from nucgen_tf.config import SeedConfig  # noqa: E402
from nucgen_tf.synthesis import models  # noqa: E402
from nucgen_tf.synthesis.options import SynthesisOptions  # noqa: E402
from nucgen_tf.synthesis.pipeline import ChainSettings, run_chain, run_stage  # noqa: E402
from nucgen_tf.synthesis.run import synthesize  # noqa: E402
from tests import tiny_generators  # noqa: E402

BEFORE = "61f42a2"  # the last commit with the nearest-palette stage-2 decoder
CANVAS = {2: (512, 512), 3: (32, 128, 128)}
PATCH = {2: (256, 256), 3: (32, 128, 128)}
TILES = {2: ((256,), (32,)), 3: ((32, 64, 64), (16,))}
SEEDS = {2: SeedConfig(), 3: SeedConfig(density=2.0, sparse_min_distance=16.0, crowded_min_distance=9.0)}
STAGES = (
    "seed_map",
    "stage1",
    "decode_box_map",
    "ellipses",
    "stage2",
    "decode_colored_mask",
    "stage3_input",
    "stage3",
    "write",
)


NETWORK = ("stage1", "stage2", "stage3")


def warm_up(chain, **kw) -> None:
    """One call per stage at the benchmark's shapes, so first-call costs stay out of the timing."""
    settings = ChainSettings(
        tile=kw.get("tile", (1024,)), overlap=kw.get("overlap", (64,)), batch_size=kw.get("batch", 1)
    )
    for k, channels in ((1, 1), (2, 3), (3, 4)):
        run_stage(
            chain.stages[k], np.zeros((kw.get("batch", 1), *kw["shape"], channels), np.float32), settings
        )


def run(label: str, models_dir, chain, out, n: int, **kw) -> tuple[float, float]:
    """Time one setting; returns (samples/s end to end, network seconds per sample)."""
    warm_up(chain, **kw)
    start = time.perf_counter()
    manifest = synthesize(SynthesisOptions(models=str(models_dir), out=str(out), n=n, **kw), chain)
    seconds = time.perf_counter() - start
    records = manifest["samples"].values()
    timings = {k: np.mean([r["timings"].get(k, 0.0) for r in records]) for k in STAGES}
    network = sum(timings[k] for k in NETWORK)
    instances = np.mean([r["counts"]["instances"] for r in records])
    print(
        f"  {label:<40} {n / seconds:6.2f} samples/s  {seconds / n:6.3f} s/sample  "
        f"(networks {network:.3f} s, {instances:5.1f} nuclei)"
    )
    print("      " + "  ".join(f"{k} {v:.3f}" for k, v in timings.items()))
    return n / seconds, network


def _decoder_before():
    """`decode_colored_mask` as of commit BEFORE, imported from git history."""
    import importlib.util
    import subprocess

    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE}:nucgen_tf/postprocess/decode.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = pathlib.Path(tempfile.mkdtemp(prefix="nucgen_decode_before_")) / "decode_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("decode_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.decode_colored_mask


def bench_decoding(n: int) -> None:
    """Decoding time per sample, today's decoders vs the palette-component decoder of BEFORE."""
    from nucgen_tf.postprocess import decode
    from nucgen_tf.synthesis import sampling

    before = _decoder_before()
    chain = models.load_generators(pretrained.bundled_models())
    shape = (256, 256)
    times = {"before": [], "after": []}
    counts = {"before": [0, 0], "after": [0, 0]}  # labels, boxes that got a label
    for i in range(n):
        rng = sampling.sample_rngs(0, i)
        _, points = sampling.draw_seeds("mixed", shape, rng["seeds"], chain.seeds, chain.spacing)
        sample = run_chain(chain, [points], [rng], shape, ChainSettings())[0]
        decoders = (("before", before), ("after", decode.decode_colored_mask))
        for name, decoder in decoders[:: 1 if i % 2 else -1]:  # interleaved, alternating order
            start = time.perf_counter()
            boxes = decode.decode_box_map(sample.box_map, value_range=(0.0, 1.0))
            labels, report = decoder(
                sample.colored_mask, boxes, value_range=(0.0, 1.0), box_colors=sample.box_colors,
                return_report=True,
            )  # fmt: skip
            times[name].append(time.perf_counter() - start)
            counts[name][0] += int(labels.max(initial=0))
            counts[name][1] += len(boxes) - report["n_unmatched_boxes"]
    print(f"\ndecoding (box map + colored mask), bundled generators, {n} samples of 256 x 256:")
    for name in ("before", "after"):
        labels, boxed = counts[name]
        mean, median = np.mean(times[name]) * 1e3, np.median(times[name]) * 1e3
        per_box = labels / max(boxed, 1)
        print(f"  {name:<6} {mean:7.1f} ms/sample (median {median:.1f}), {per_box:.3f} labels per box")
    print(f"ratio decoding after/before: {np.mean(times['after']) / np.mean(times['before']):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples per setting")
    parser.add_argument("--n", type=int, default=None, help="samples per setting (default 16 / 8 in 3D)")
    parser.add_argument("--filters", type=int, default=8, help="U-Net base filters")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth (divisor 2**depth)")
    parser.add_argument("--decode", action="store_true", help="also decoding time before/after")
    parser.add_argument("--decode_only", action="store_true", help="only decoding time before/after")
    parser.add_argument("--decode_n", type=int, default=40, help="samples for the decoding comparison")
    args = parser.parse_args()
    logging.set_verbosity(logging.ERROR)
    if args.decode or args.decode_only:
        bench_decoding(args.decode_n)
        if args.decode_only:
            return
    with tempfile.TemporaryDirectory(prefix="nucgen_bench_synth_") as tmp:
        tmp = pathlib.Path(tmp)
        for ndim in (2, 3):
            n = args.n or (2 if args.quick else (16 if ndim == 2 else 8))
            print(f"\n{ndim}D canvas {CANVAS[ndim]}, {n} samples per setting")
            unet = tiny_generators.export_untrained_models(
                tmp / f"unet{ndim}",
                PATCH[ndim],
                base_filters=args.filters,
                depth=args.depth,
                seeds=SEEDS[ndim],
            )
            reference = tiny_generators.export_reference_models(
                tmp / f"ref{ndim}",
                PATCH[ndim],
                nucleus_radius=8.0 if ndim == 2 else (2.0, 5.0, 5.0),
                seeds=SEEDS[ndim],
            )
            unet_chain, ref_chain = models.load_generators(unet), models.load_generators(reference)
            shape = CANVAS[ndim]
            tile, overlap = TILES[ndim]
            common = {"shape": shape, "arrangement": "random"}
            one, net_one = run("U-Net one pass, batch 1", unet, unet_chain, tmp / f"a{ndim}", n, **common)
            four, net_four = run(
                "U-Net one pass, batch 4 (baseline)",
                unet,
                unet_chain,
                tmp / f"b{ndim}",
                n,
                batch=4,
                chunk=4,
                **common,
            )
            tiled, net_tiled = run(
                f"U-Net tiles {tile} overlap {overlap}",
                unet,
                unet_chain,
                tmp / f"c{ndim}",
                n,
                tile=tile,
                overlap=overlap,
                **common,
            )
            print(
                f"  network time: batch 4 / batch 1 = {net_four / net_one:.2f}, tiles / one pass = "
                f"{net_tiled / net_one:.2f}; end to end: batch 1 x{one / four:.2f} vs batch 4, "
                f"one pass x{one / tiled:.2f} vs tiles"
            )
            run("reference chain (real nuclei)", reference, ref_chain, tmp / f"d{ndim}", n, **common)
            run(
                "reference chain, no previews",
                reference,
                ref_chain,
                tmp / f"e{ndim}",
                n,
                previews=False,
                **common,
            )
            if ndim == 2:
                bundled = pretrained.bundled_models()
                run(
                    "bundled BBBC039 generators (trained)",
                    bundled,
                    models.load_generators(bundled),
                    tmp / "f2",
                    n,
                    shape=shape,
                    arrangement="mixed",
                )


if __name__ == "__main__":
    main()
