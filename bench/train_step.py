"""Train-step throughput of the three GAN stages: baseline vs XLA vs oneDNN (and dtypes).

Each configuration runs in its own subprocess, so that the peak RSS is that of one model and
one compiled step, and XLA / oneDNN / dtype settings cannot leak between runs. A run builds
the stage's model, compiles `tf.function(model.train_step, jit_compile=...)`, takes
`--warmup` steps (the first one traces and, with XLA, compiles), then times `--steps` steps
on a fixed batch of one patch (the paper's CycleGAN / pix2pix batch size).

Variants, per stage / ndim / dtype:
  base    TF_ENABLE_ONEDNN_OPTS=0, no XLA (TensorFlow's own kernels; TF's default on CPUs
          without AVX512-VNNI/AMX, e.g. AMD EPYC)
  xla     TF_ENABLE_ONEDNN_OPTS=0, `jit_compile=True`
  onednn  TF_ENABLE_ONEDNN_OPTS=1, no XLA

    /work/venv/bin/python bench/train_step.py --quick      # smoke run, small sizes
    /work/venv/bin/python bench/train_step.py              # 256x256 and 32x64x64, 16 filters
    /work/venv/bin/python bench/train_step.py --dtypes float32,mixed_bfloat16 --variants base,onednn

Columns: steps/s per variant, speed-up over `base`, first-step seconds (trace + compile),
and the peak RSS of each worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

STAGES = {
    # name: (model kind, channels of A / input, channels of B / output)
    "cyclegan": ("cyclegan", 1, 1),
    "paired": ("paired", 3, 4),
    "pix2pix": ("pix2pix", 4, 1),
}

PRESETS = {
    # ndim: (spatial, base filters, generator depth, discriminator layers)
    "full": {2: ((256, 256), 16, 4, 3), 3: ((32, 64, 64), 16, 4, 3)},
    "quick": {2: ((64, 64), 8, 3, 3), 3: ((16, 32, 32), 8, 3, 3)},
}

VARIANTS = {
    # name: (jit_compile, TF_ENABLE_ONEDNN_OPTS)
    "base": (False, "0"),
    "xla": (True, "0"),
    "onednn": (False, "1"),
}


def _worker(spec: dict) -> dict:
    """Build one stage, time its train step and return the figures (runs in a subprocess)."""
    sys.path.insert(0, str(REPO_ROOT))
    import keras
    import tensorflow as tf

    from nucgen_tf.models import DiscriminatorConfig, GeneratorConfig, build_cyclegan, build_pix2pix

    keras.mixed_precision.set_global_policy(spec["dtype"])
    keras.utils.set_random_seed(0)
    kind, c_a, c_b = STAGES[spec["stage"]]
    ndim, spatial = spec["ndim"], tuple(spec["spatial"])
    gen = GeneratorConfig(base_filters=spec["filters"], depth=spec["depth"])
    disc = DiscriminatorConfig(base_filters=spec["filters"], n_layers=spec["n_layers"])
    if kind == "pix2pix":
        model = build_pix2pix(ndim, c_a, c_b, gen, disc)
    else:
        model = build_cyclegan(ndim, c_a, c_b, gen, disc, paired=kind == "paired")
        model.build([(1, *spatial, c_a), (1, *spatial, c_b)])
    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    batch = (
        tf.random.uniform((1, *spatial, c_a), -1.0, 1.0, seed=1),
        tf.random.uniform((1, *spatial, c_b), -1.0, 1.0, seed=2),
    )
    step = tf.function(model.train_step, jit_compile=VARIANTS[spec["variant"]][0])

    start = time.perf_counter()
    first = float(step(batch)["g_loss"])
    first_step_s = time.perf_counter() - start
    for _ in range(spec["warmup"] - 1):
        step(batch)
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        logs = step(batch)
    last = float(logs["g_loss"])
    elapsed = time.perf_counter() - start
    return {
        **spec,
        "steps_per_s": spec["steps"] / elapsed,
        "first_step_s": first_step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "finite": bool(tf.math.is_finite(first) and tf.math.is_finite(last)),
        "params": int(model.count_params()),
    }


def _run(spec: dict, timeout: float) -> dict:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO_ROOT),
        "TF_ENABLE_ONEDNN_OPTS": VARIANTS[spec["variant"]][1],
    }
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True, text=True, env=env, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps (smoke run)")
    parser.add_argument("--stages", default="cyclegan,paired,pix2pix")
    parser.add_argument("--ndims", default="2,3")
    parser.add_argument("--dtypes", default="float32", help="comma list: float32, mixed_bfloat16, ...")
    parser.add_argument("--variants", default="base,xla,onednn", help=f"comma list of {sorted(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5, quick 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps; the first one traces")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    preset = PRESETS["quick" if args.quick else "full"]
    steps = args.steps or (3 if args.quick else 5)
    print(f"# nucgen-tf train-step bench ({'quick' if args.quick else 'full'}): batch 1, {steps} timed "
          f"steps after {args.warmup} warm-up, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    head = f"{'stage':9s} {'ndim':>4s} {'size':>9s} {'filt':>4s} {'dtype':>14s}"
    print(head + "".join(f" {v + ' st/s':>11s}" for v in variants)
          + "".join(f" {v + ' x':>9s}" for v in variants if v != "base")
          + "".join(f" {v + ' 1st s':>11s}" for v in variants)
          + "".join(f" {v + ' MB':>9s}" for v in variants), flush=True)
    started = time.perf_counter()
    for dtype in args.dtypes.split(","):
        for ndim in (int(n) for n in args.ndims.split(",")):
            spatial, filters, depth, n_layers = preset[ndim]
            for stage in args.stages.split(","):
                base = dict(stage=stage, ndim=ndim, spatial=list(spatial), filters=filters, depth=depth,
                            n_layers=n_layers, dtype=dtype, steps=steps, warmup=args.warmup)
                results = {v: _run({**base, "variant": v}, args.timeout) for v in variants}
                ok = {v: r for v, r in results.items() if "error" not in r}

                def cell(v, key, fmt, width, ok=ok):
                    return f" {format(ok[v][key], fmt) if v in ok else 'err':>{width}s}"

                line = f"{stage:9s} {ndim:4d} {'x'.join(map(str, spatial)):>9s} {filters:4d} {dtype:>14s}"
                line += "".join(cell(v, "steps_per_s", ".3f", 11) for v in variants)
                for v in variants:
                    if v != "base":
                        ratio = (ok[v]["steps_per_s"] / ok["base"]["steps_per_s"]
                                 if v in ok and "base" in ok else None)
                        line += f" {'err' if ratio is None else format(ratio, '.2f'):>9s}"
                line += "".join(cell(v, "first_step_s", ".1f", 11) for v in variants)
                line += "".join(cell(v, "peak_rss_mb", ".0f", 9) for v in variants)
                if not all(r.get("finite", False) for r in ok.values()):
                    line += "  NON-FINITE"
                print(line, flush=True)
                for v, r in results.items():
                    if "error" in r:
                        print(f"#   {stage} {ndim}D {dtype} {v}: {r['error']}", flush=True)
    print(f"# total {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
