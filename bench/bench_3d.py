"""3D end to end on the phantom3d set: train-step time per stage at the configs/phantom_3d sizes,
synthesis volumes/s at 32 x 128 x 128, peak memory; each against a baseline in the same run.

    /work/venv/bin/python bench/bench_3d.py --quick    # 2 phantom volumes, 3 timed steps, 2 volumes
    /work/venv/bin/python bench/bench_3d.py            # 4 volumes, 10 timed steps, 6 volumes

It first simulates a few high-SNR phantom3d training volumes (32 x 128 x 128, Z spacing 2)
into a temporary folder. Then, each in its own subprocess (so that the peak RSS,
`resource.getrusage(RUSAGE_SELF).ru_maxrss`, is that of one model and one traced step):

- train steps: for stage 1, 2, 3 it parses `configs/phantom_3d/stage<N>.flags` (data and
  workdir pointed at the temporary set), builds the stage's tf.data pipeline and GAN exactly
  as `trainers.stages.train` does, takes `--warmup` steps (the first traces) and times
  `--steps` steps. Baseline: the same stage at batch 1 vs batch 2 (s/step and s/sample), so
  the preset's batch choice can be checked. The preset's projected minutes are its
  `--steps` x the measured s/step at its own batch.
- synthesis: `nucgen synthesize` end to end at 32 x 128 x 128 with the preset's seed
  arrangement and spacing, (a) untrained generators of the preset's size (network cost;
  their noise box maps decode to few nuclei) at batch 1 and, as baseline, batch 2, and
  (b) the hand-set reference chain (`tests.tiny_generators.export_reference_models`: nearly
  free networks but real nuclei, so decoding, the k-terminal cut and writing are measured).

The machine's other jobs slow every figure alike; compare rows of one run, not runs. CPU
seconds (`time.process_time`) are less sensitive to them: "min on 2 idle cores" assumes the
step's CPU time spreads over both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESET = REPO / "configs" / "phantom_3d"
CANVAS = (32, 128, 128)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _stage_config(stage: int, data: str, workdir: str, batch: int):
    """The StageConfig of the preset's flag file, with data, workdir and batch replaced."""
    from absl import flags

    from nucgen_tf.commands import flagsets

    flagsets.define_stage_flags()
    flags.FLAGS(
        [
            "bench",
            f"--flagfile={PRESET / f'stage{stage}.flags'}",
            f"--data={data}",
            f"--workdir={workdir}",
            f"--batch={batch}",
        ]
    )
    return flagsets.stage_config_from_flags()


def _train_worker(spec: dict) -> dict:
    """Build one stage from its preset, time its train step (runs in a subprocess)."""
    sys.path.insert(0, str(REPO))
    import keras
    import tensorflow as tf

    from nucgen_tf import runtime
    from nucgen_tf.trainers import loop, stages

    cfg = _stage_config(spec["stage"], spec["data"], spec["workdir"], spec["batch"])
    keras.utils.set_random_seed(0)
    policy = runtime.set_precision(cfg.train.precision)
    stage = stages.STAGES[cfg.stage]
    stats = stages.intensity_stats(cfg, pathlib.Path(spec["workdir"]))
    dataset = stage.make_dataset(cfg, stats, {})  # (no fits: a stage's own data only)
    batches = iter(dataset)
    first = next(batches)
    model = stage.make_model(cfg)
    model.build([tuple(t.shape) for t in first])
    model.compile(stages.make_optimizer(cfg.train, "g_adam"), stages.make_optimizer(cfg.train, "d_adam"))
    step = loop._make_step(model, tf.distribute.get_strategy(), cfg.train.jit_compile)
    start = time.perf_counter()
    for _ in range(spec["warmup"]):
        logs = step(next(batches))
    float(logs["g_loss"])
    warmup = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(spec["steps"]):
        logs = step(next(batches))
    float(logs["g_loss"])  # wait for the last step
    seconds = (time.perf_counter() - start) / spec["steps"]
    return {
        "s_per_step": seconds,
        "cpu_s_per_step": (time.process_time() - cpu) / spec["steps"],
        "warmup_s": warmup,
        "preset_steps": cfg.train.steps,
        "preset_batch": spec["preset_batch"],
        "patch": list(cfg.patch.patch_shape),
        "policy": policy,
        "params": int(sum(w.numpy().size for w in model.trainable_weights)),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _synth_worker(spec: dict) -> dict:
    """Time `synthesize()` on one model set and batch (runs in a subprocess)."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    from absl import logging

    from nucgen_tf.synthesis import models
    from nucgen_tf.synthesis.options import SynthesisOptions
    from nucgen_tf.synthesis.pipeline import ChainSettings, run_stage
    from nucgen_tf.synthesis.run import synthesize
    from tests import tiny_generators

    logging.set_verbosity(logging.ERROR)
    cfg = _stage_config(1, spec["data"], spec["workdir"], 1)
    folder = pathlib.Path(spec["workdir"]) / "models"
    if spec["kind"] == "unet":
        tiny_generators.export_untrained_models(
            folder, CANVAS, cfg.generator.base_filters, cfg.generator.depth, seeds=cfg.seeds
        )
    else:
        tiny_generators.export_reference_models(
            folder, CANVAS, nucleus_radius=(5.0, 10.0, 10.0), seeds=cfg.seeds
        )
    chain = models.load_generators(folder)
    settings = ChainSettings(tile=(1024,), overlap=(64,), batch_size=spec["batch"])
    for k, channels in ((1, 1), (2, 3), (3, 4)):  # trace each network at the canvas shape
        run_stage(chain.stages[k], np.zeros((spec["batch"], *CANVAS, channels), np.float32), settings)
    options = SynthesisOptions(
        models=str(folder),
        out=str(pathlib.Path(spec["workdir"]) / "out"),
        n=spec["n"],
        shape=CANVAS,
        spacing=tuple(cfg.spacing),
        batch=spec["batch"],
        chunk=max(spec["batch"], 2),
    )
    start, cpu = time.perf_counter(), time.process_time()
    manifest = synthesize(options, chain)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    records = list(manifest["samples"].values())
    timings = {}
    for record in records:
        for key, value in record["timings"].items():
            timings[key] = timings.get(key, 0.0) + value / len(records)
    return {
        "volumes_per_s": spec["n"] / seconds,
        "s_per_volume": seconds / spec["n"],
        "cpu_s_per_volume": cpu / spec["n"],
        "nuclei": float(np.mean([r["counts"]["instances"] for r in records])),
        "timings": timings,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _run(spec: dict, timeout: float) -> dict:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def _phantoms(out: pathlib.Path, n: int) -> pathlib.Path:
    from nucgen_tf.recipes import phantom3d

    phantom3d.generate(out, snr="high", n_train=n, n_test=0, progress=False)
    return out / "high" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer volumes and steps")
    parser.add_argument("--steps", type=int, default=None, help="timed train steps (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed train steps; the first traces")
    parser.add_argument("--n", type=int, default=None, help="volumes per synthesis row (default 6, quick 2)")
    parser.add_argument("--stages", default="1,2,3")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        result = _train_worker(spec) if spec["job"] == "train" else _synth_worker(spec)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    sys.path.insert(0, str(REPO))
    steps = args.steps or (3 if args.quick else 10)
    n = args.n or (2 if args.quick else 6)
    with tempfile.TemporaryDirectory(prefix="nucgen_bench_3d_") as tmp:
        tmp = pathlib.Path(tmp)
        start = time.perf_counter()
        data = str(_phantoms(tmp / "phantoms", 2 if args.quick else 4))
        print(f"phantom3d: {2 if args.quick else 4} volumes {CANVAS} in {time.perf_counter() - start:.1f} s")
        print(f"\ntrain steps at configs/phantom_3d sizes ({args.warmup} warm-up, {steps} timed steps)")
        print(
            f"  {'stage':<6} {'batch':>5} {'s/step':>7} {'cpu s/step':>10} {'s/sample':>9} "
            f"{'1st steps s':>11} {'peak MiB':>9}  preset"
        )
        for stage in (int(s) for s in args.stages.split(",")):
            preset = _stage_config_batch(stage)
            rows = {}
            for batch in (1, 2):
                spec = {
                    "job": "train",
                    "stage": stage,
                    "batch": batch,
                    "preset_batch": preset,
                    "data": data,
                    "workdir": str(tmp / f"train{stage}_{batch}"),
                    "warmup": args.warmup,
                    "steps": steps,
                }
                rows[batch] = r = _run(spec, args.timeout)
                if "error" in r:
                    print(f"  {stage:<6} {batch:>5} failed: {r['error']}")
                    continue
                note = ""
                if batch == preset:
                    minutes = r["preset_steps"] * r["s_per_step"] / 60
                    idle = r["preset_steps"] * r["cpu_s_per_step"] / 2 / 60
                    note = (
                        f"<- preset: {r['preset_steps']} steps ~ {minutes:.0f} min here, "
                        f"~{idle:.0f} min on 2 idle cores; patch {r['patch']}, "
                        f"{r['params']:,} params, {r['policy']}"
                    )
                print(
                    f"  {stage:<6} {batch:>5} {r['s_per_step']:7.3f} {r['cpu_s_per_step']:10.3f} "
                    f"{r['s_per_step'] / batch:9.3f} "
                    f"{r['warmup_s']:11.1f} {r['peak_rss_mib']:9.0f}  {note}"
                )
            if all("error" not in r for r in rows.values()):
                ratio = (rows[2]["s_per_step"] / 2) / rows[1]["s_per_step"]
                print(f"         batch 2 / batch 1 time per sample: {ratio:.2f}")
        print(f"\nsynthesis at {CANVAS}, {n} volumes per row (preset seeds and spacing)")
        for kind, batch, label in (
            ("unet", 1, "untrained preset-size U-Nets, batch 1"),
            ("unet", 2, "untrained preset-size U-Nets, batch 2 (baseline)"),
            ("reference", 1, "reference chain (real nuclei), batch 1"),
        ):
            spec = {
                "job": "synth",
                "kind": kind,
                "batch": batch,
                "n": n,
                "data": data,
                "workdir": str(tmp / f"synth_{kind}_{batch}"),
            }
            r = _run(spec, args.timeout)
            if "error" in r:
                print(f"  {label:<50} failed: {r['error']}")
                continue
            print(
                f"  {label:<50} {r['volumes_per_s']:6.3f} volumes/s {r['s_per_volume']:6.2f} s/volume "
                f"({r['cpu_s_per_volume']:5.2f} CPU s) "
                f"{r['nuclei']:5.1f} nuclei  peak {r['peak_rss_mib']:.0f} MiB"
            )
            print("      " + "  ".join(f"{k} {v:.2f}" for k, v in r["timings"].items()))
    print(f"\nthis process: peak {_peak_rss_mib():.0f} MiB (phantom simulation)")


def _stage_config_batch(stage: int) -> int:
    """The preset's --batch, read from its flag file (no absl in the parent process)."""
    for line in (PRESET / f"stage{stage}.flags").read_text(encoding="utf-8").splitlines():
        if line.startswith("--batch="):
            return int(line.split("=", 1)[1])
    return 1


if __name__ == "__main__":
    main()
