"""Train-step throughput of the three GAN stages: current vs reference nets, or XLA / oneDNN.

    .venv/bin/python bench/train_step.py --compare nets --quick  # smoke run, small sizes
    .venv/bin/python bench/train_step.py --compare nets          # on an idle machine

Net comparison (`--compare nets`, issue 19): per stage (1 CycleGAN, 2 paired CycleGAN,
3 pix2pix), the stage built as the trainers build it (`trainers.stages.STAGES[n].make_model`)
at the sizes and options of `configs/bbbc039_cpu/stageN.flags` (128x128, batch 2, filters
8/8/16, its precision, losses and discriminator), with three generators:
  unet3x3  the current net, as the preset has it (depth 4, resize-conv)
  pix2pix  Isola et al.'s U-Net, down to a 1 px bottleneck (depth 7 at 128 px)
  resnet   Zhu et al.'s CycleGAN ResNet (2 down-sampling levels, 6 residual blocks)
The reference nets take the preset's base filters and `--ref_upsampling` (default
"transpose", the references' own; "nearest" is the preset's resize-conv). `--quick` uses
64x64 patches and batch 1 (pix2pix depth 6) and few steps: a smoke run, not figures.

A stage's nets live in one worker process and are timed interleaved: one untimed round,
then every repeat times `--steps` steps of each net, in a rotated order; the figures are
medians over `--repeats`. Printed per stage and net: the median step time, the convolution
GFLOP of one step, the achieved GFLOP/s; then per stage `ratio current/reference stage N:
X.XX`, the step time of unet3x3 over that of the faster reference net (named, with both
ratios, on the next line).

The GFLOP are counted from the traced train step's graph (not with TF's profiler, which
counts no 3D gradients): every convolution and transposed convolution of the forward
passes and every input / filter gradient of the backward passes, of the generator and the
discriminator updates alike, at 2 x (output positions) x (kernel volume x in x out
channels) each. Norms, activations, padding and the optimizer are not counted.

Variant comparison (`--compare variants`, the default): each configuration runs in its own
subprocess, so that the peak RSS is that of one model and one compiled step, and XLA /
oneDNN / dtype settings cannot leak between runs. A run builds the stage's model, compiles
`tf.function(model.train_step, jit_compile=...)`, takes `--warmup` steps (the first one
traces and, with XLA, compiles), then times `--steps` steps on a fixed batch of one patch
(the paper's CycleGAN / pix2pix batch size).

Variants, per stage / ndim / dtype:
  base    TF_ENABLE_ONEDNN_OPTS=0, no XLA (TensorFlow's own kernels; TF's default on CPUs
          without AVX512-VNNI/AMX, e.g. AMD EPYC)
  xla     TF_ENABLE_ONEDNN_OPTS=0, `jit_compile=True`
  onednn  TF_ENABLE_ONEDNN_OPTS=1, no XLA

    .venv/bin/python bench/train_step.py --quick      # smoke run, small sizes
    .venv/bin/python bench/train_step.py              # 256x256 and 32x64x64, 16 filters
    .venv/bin/python bench/train_step.py --dtypes float32,mixed_bfloat16 --variants base,onednn

Columns: steps/s per variant, speed-up over `base`, first-step seconds (trace + compile),
and the peak RSS of each worker process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import statistics
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


# --compare nets: the preset whose stages are compared, its nets, and the quick sizes.
NETS_PRESET = REPO_ROOT / "configs" / "bbbc039_cpu"
CURRENT_NET = "unet3x3"
REFERENCE_NETS = ("pix2pix", "resnet")
NETS_QUICK = {"patch": (64, 64), "batch": 1}
# Convolution ops of a traced step: forward (Conv*), conv-transpose forward and input
# gradients (*BackpropInput*), filter gradients (*BackpropFilter*).
_CONV_OPS = {
    "Conv2D", "Conv3D", "Conv2DBackpropInput", "Conv3DBackpropInputV2",
    "Conv2DBackpropFilter", "Conv3DBackpropFilterV2",
}  # fmt: skip


def _preset_flags(stage: int) -> dict[str, str]:
    """The `--name=value` lines of the preset's stage flagfile (a bare `--name` is "true")."""
    values = {}
    for line in (NETS_PRESET / f"stage{stage}.flags").read_text().splitlines():
        line = line.strip()
        if line.startswith("--"):
            name, _, value = line[2:].partition("=")
            values[name] = value if _ else "true"
    return values


def _net_stage_config(stage: int, net: str, quick: bool, ref_upsampling: str):
    """The StageConfig of `stage` in the preset, with generator `net` (reference nets at the
    preset's width; pix2pix down to a 1 px bottleneck, resnet at the reference's 2 levels)."""
    from nucgen_tf.config import PatchConfig
    from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
    from nucgen_tf.trainers.config import StageConfig, TrainConfig

    f = _preset_flags(stage)
    patch = NETS_QUICK["patch"] if quick else tuple(int(v) for v in f["patch"].split(","))
    batch = NETS_QUICK["batch"] if quick else int(f.get("batch", 1))
    frn = f.get("full_resolution_norm", "false") == "true"
    upsampling = f.get("upsampling", "transpose")
    if net == CURRENT_NET:
        generator = GeneratorConfig(base_filters=int(f["filters"]), depth=int(f["depth"]),
                                    upsampling=upsampling, full_resolution_norm=frn)  # fmt: skip
    elif net == "pix2pix":
        generator = GeneratorConfig(architecture="pix2pix", base_filters=int(f["filters"]),
                                    depth=int(math.log2(min(patch))), upsampling=ref_upsampling)  # fmt: skip
    else:
        generator = GeneratorConfig(architecture="resnet", base_filters=int(f["filters"]), depth=2,
                                    upsampling=ref_upsampling, full_resolution_norm=frn)  # fmt: skip
    return StageConfig(
        stage=stage,
        data="unused",
        patch=PatchConfig(patch_shape=patch, batch_size=batch),
        train=TrainConfig(precision=f.get("precision", "float32")),
        generator=generator,
        discriminator=DiscriminatorConfig(base_filters=int(f["d_filters"]), n_layers=int(f["d_layers"])),
        loss=GanLossConfig(adversarial=f.get("adversarial", "mae"),
                           instance_noise=float(f.get("instance_noise", 0.0))),  # fmt: skip
    )


def conv_gflop(graph) -> float:
    """GFLOP of the convolution ops in a traced graph (see the module doc), 2 per MAC."""
    total = 0
    for op in graph.get_operations():
        if op.type not in _CONV_OPS:
            continue
        if op.type.startswith(("Conv2DBackpropFilter", "Conv3DBackpropFilter")):
            kernel, positions = op.outputs[0].shape, op.inputs[2].shape
        elif "BackpropInput" in op.type:
            kernel, positions = op.inputs[1].shape, op.inputs[2].shape
        else:
            kernel, positions = op.inputs[1].shape, op.outputs[0].shape
        if not (kernel.is_fully_defined() and positions.is_fully_defined()):
            raise ValueError(f"{op.name}: shapes not static ({kernel}, {positions}); cannot count")
        total += 2 * math.prod(positions[:-1]) * math.prod(kernel)
    for function in graph.as_graph_def().library.function:  # a cond / call body: not counted
        if any(node.op in _CONV_OPS for node in function.node_def):
            raise ValueError(f"convolutions inside {function.signature.name}: this count would miss them")
    return total / 1e9


def _nets_worker(spec: dict) -> dict:
    """Build a stage with each net, time their train steps interleaved (runs in a subprocess)."""
    sys.path.insert(0, str(REPO_ROOT))
    import keras
    import tensorflow as tf

    from nucgen_tf import runtime
    from nucgen_tf.trainers.stages import STAGES, make_optimizer

    stage, nets = spec["stage"], spec["nets"]
    steps, times, results = {}, {net: [] for net in nets}, {}
    for net in nets:
        cfg = _net_stage_config(stage, net, spec["quick"], spec["ref_upsampling"])
        precision = runtime.set_precision(cfg.train.precision)
        keras.utils.set_random_seed(0)
        c_in, c_out = STAGES[stage].channels
        shape = (cfg.patch.batch_size, *cfg.patch.patch_shape)
        batch = (tf.random.uniform((*shape, c_in), -1.0, 1.0, seed=1),
                 tf.random.uniform((*shape, c_out), -1.0, 1.0, seed=2))  # fmt: skip
        model = STAGES[stage].make_model(cfg)
        model.build([tuple(t.shape) for t in batch])
        model.compile(make_optimizer(cfg.train, "g_adam"), make_optimizer(cfg.train, "d_adam"))
        step = tf.function(model.train_step)
        gflop = conv_gflop(step.get_concrete_function(batch).graph)
        for _ in range(spec["warmup"]):
            logs = step(batch)
        steps[net] = (step, batch)
        results[net] = {
            "gflop": gflop,
            "precision": precision,
            "patch": list(cfg.patch.patch_shape),
            "batch": cfg.patch.batch_size,
            "depth": cfg.generator.depth,
            "filters": cfg.generator.base_filters,
            "upsampling": cfg.generator.upsampling,
            "g_params": int(sum(math.prod(w.shape) for w in model.generator_variables)),
            "finite": bool(tf.math.is_finite(logs["g_loss"])),
        }
    # Repeat -1 is not timed: the first steps of a net after the others ran were up to 15x
    # slower (measured here), although each net had had its own warm-up steps.
    for repeat in range(-1, spec["repeats"]):
        order = nets[repeat % len(nets) :] + nets[: repeat % len(nets)]  # rotated: no fixed position
        for net in order:
            step, batch = steps[net]
            start = time.perf_counter()
            for _ in range(spec["steps"]):
                logs = step(batch)
            float(logs["g_loss"])  # wait for the last step
            if repeat >= 0:
                times[net].append((time.perf_counter() - start) / spec["steps"])
    for net in nets:
        results[net]["step_s"] = statistics.median(times[net])
        results[net]["step_s_all"] = times[net]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"stage": stage, "nets": results, "peak_rss_mb": peak_rss_mb}


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
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    if "variant" in spec:
        env["TF_ENABLE_ONEDNN_OPTS"] = VARIANTS[spec["variant"]][1]
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


def _compare_nets(args) -> None:
    """`--compare nets`: one worker per stage, its nets timed interleaved; see the module doc."""
    steps = args.steps or (2 if args.quick else 10)
    repeats = args.repeats or (2 if args.quick else 7)
    nets = [CURRENT_NET, *REFERENCE_NETS]
    print(f"# nucgen-tf train-step bench, current vs reference nets ({'quick' if args.quick else 'full'}): "
          f"preset {NETS_PRESET.relative_to(REPO_ROOT)}, {repeats} repeats x {steps} timed steps per net "
          f"after {args.warmup} warm-up, medians; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    print(f"{'stage':>5s} {'net':>8s} {'patch':>9s} {'batch':>5s} {'filt':>4s} {'depth':>5s} {'up':>9s} "
          f"{'precision':>14s} {'G params':>9s} {'step ms':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s}", flush=True)
    started = time.perf_counter()
    for name in args.stages.split(","):
        stage = list(STAGES).index(name) + 1
        spec = dict(stage=stage, nets=nets, quick=args.quick, ref_upsampling=args.ref_upsampling,
                    steps=steps, repeats=repeats, warmup=args.warmup)  # fmt: skip
        result = _run(spec, args.timeout)
        if "error" in result:
            print(f"#   stage {stage}: {result['error']}", flush=True)
            continue
        for net, r in result["nets"].items():
            patch = "x".join(map(str, r["patch"]))
            print(f"{stage:5d} {net:>8s} {patch:>9s} {r['batch']:5d} {r['filters']:4d} "
                  f"{r['depth']:5d} {r['upsampling']:>9s} {r['precision']:>14s} {r['g_params']:9d} "
                  f"{1e3 * r['step_s']:9.1f} {r['gflop']:7.2f} {r['gflop'] / r['step_s']:8.2f}"
                  + ("" if r["finite"] else "  NON-FINITE"), flush=True)
        times = {net: r["step_s"] for net, r in result["nets"].items()}
        reference = min(REFERENCE_NETS, key=times.__getitem__)
        ratio = times[CURRENT_NET] / times[reference]
        print(f"ratio current/reference stage {stage}: {ratio:.2f}", flush=True)
        print(f"#   reference = {reference} (the faster); "
              + ", ".join(f"current/{net} {times[CURRENT_NET] / times[net]:.2f}" for net in REFERENCE_NETS)
              + f"; worker peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    print(f"# total {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f} at end")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compare", choices=("variants", "nets"), default="variants",
                        help="variants: base / XLA / oneDNN; nets: current vs reference generators")
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps (smoke run)")
    parser.add_argument("--stages", default="cyclegan,paired,pix2pix")
    parser.add_argument("--ndims", default="2,3")
    parser.add_argument("--dtypes", default="float32", help="comma list: float32, mixed_bfloat16, ...")
    parser.add_argument("--variants", default="base,xla,onednn", help=f"comma list of {sorted(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (variants: default 5, quick 3; nets: per repeat, 10, quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="nets: interleaved repeats (7, quick 2)")
    parser.add_argument("--ref_upsampling", choices=("transpose", "nearest"), default="transpose",
                        help="nets: up-sampling of the reference nets")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps; the first one traces")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(_nets_worker(spec) if "nets" in spec else _worker(spec)))
        return
    if args.compare == "nets":
        _compare_nets(args)
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
