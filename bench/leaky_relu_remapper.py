"""Train-step time with Keras' LeakyReLU vs max(x, 0.2 x), interleaved (issue 18, item 4).

Keras' LeakyReLU after a convolution with bias makes oneDNN's Grappler remapper log
"remapper failed: ... fanout 'LeakyReluGrad' exist for missing node 'BiasAdd'" (it fused
Conv + BiasAdd + LeakyRelu, but the gradient still needs the BiasAdd output). max(x, 0.2 x)
gives the same values to the bit and no such error, but measured 8-10 % slower steps
(cyclegan 128x128: 139 vs 129 ms/step), so the models keep Keras' layer. Each run is a fresh
subprocess (oneDNN on, as nucgen sets it), alternating keras / max, timing `--steps` steps
after `--warmup` with `bench/train_step.py`'s worker; it also reports whether the run logged
the remapper failure.

    .venv/bin/python bench/leaky_relu_remapper.py --stage pix2pix --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _worker(spec: dict) -> dict:
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]
    import keras

    class MaxLeakyReLU(keras.layers.Layer):
        """max(x, slope x): no LeakyRelu op for the remapper to fuse."""

        def __init__(self, negative_slope: float = 0.2, **kwargs):
            super().__init__(**kwargs)
            self.negative_slope = negative_slope

        def call(self, x):
            return keras.ops.maximum(x, x * self.negative_slope)

    if spec.pop("leaky") == "max":  # every model builder takes keras.layers.LeakyReLU from here
        keras.layers.LeakyReLU = MaxLeakyReLU
    import train_step

    return train_step._worker(spec)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default="pix2pix", choices=["cyclegan", "paired", "pix2pix"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "0",
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    spec = dict(stage=args.stage, ndim=2, spatial=[args.size] * 2, filters=args.filters, depth=4, n_layers=3,
                dtype="float32", steps=args.steps, warmup=args.warmup, variant="onednn")  # fmt: skip
    times: dict[str, list[float]] = {"keras": [], "max": []}
    print(f"# {args.stage} {args.size}x{args.size}, {args.filters} filters, batch 1, {args.steps} "
          f"timed steps after {args.warmup}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for r in range(args.rounds):
        for leaky in ("keras", "max") if r % 2 == 0 else ("max", "keras"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps({**spec, "leaky": leaky})],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            ms = 1000.0 / result["steps_per_s"]
            times[leaky].append(ms)
            failed = "remapper failed" in proc.stderr
            print(f"round {r} {leaky:5s} {ms:8.1f} ms/step  remapper failed: {failed}", flush=True)
    for leaky, values in times.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"{leaky:5s} median {statistics.median(values):8.1f} ms/step  ({each})")
    ratio = statistics.median(times["keras"]) / statistics.median(times["max"])
    print(f"speed-up of max (keras / max median): {ratio:.2f}x, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
