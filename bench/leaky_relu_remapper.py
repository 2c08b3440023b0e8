"""Train-step time with Keras' LeakyReLU vs `layers.LeakyReLU` (max(x, 0.2 x)), interleaved.

Keras' LeakyReLU after a convolution with bias makes oneDNN's Grappler remapper fail
("remapper failed: ... LeakyReluGrad ... missing node ... BiasAdd") and leave the train step
unfused; `nucgen_tf.models.layers.LeakyReLU` computes the same values without the op. Each
run is a fresh subprocess (oneDNN on, as nucgen sets it), alternating keras / nucgen, timing
`--steps` steps after `--warmup` with `bench/train_step.py`'s worker; it also reports whether
the run logged the remapper failure.

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

    from nucgen_tf.models import layers

    if spec.pop("leaky") == "keras":  # the layer before the fix
        layers.LeakyReLU = lambda negative_slope, **kw: keras.layers.LeakyReLU(negative_slope, **kw)
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
    times: dict[str, list[float]] = {"keras": [], "nucgen": []}
    print(f"# {args.stage} {args.size}x{args.size}, {args.filters} filters, batch 1, {args.steps} "
          f"timed steps after {args.warmup}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for r in range(args.rounds):
        for leaky in ("keras", "nucgen") if r % 2 == 0 else ("nucgen", "keras"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps({**spec, "leaky": leaky})],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            ms = 1000.0 / result["steps_per_s"]
            times[leaky].append(ms)
            failed = "remapper failed" in proc.stderr
            print(f"round {r} {leaky:6s} {ms:8.1f} ms/step  remapper failed: {failed}", flush=True)
    for leaky, values in times.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"{leaky:6s} median {statistics.median(values):8.1f} ms/step  ({each})")
    ratio = statistics.median(times["keras"]) / statistics.median(times["nucgen"])
    print(f"speed-up (keras / nucgen median): {ratio:.2f}x, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
