"""`nucgen realism`: how far a synthetic set is from real data, statistic by statistic.

Measures nucleus shape, crowding and image statistics of both folders, prints a table of
real and synthetic medians, the distance (Wasserstein / real IQR) and the real-vs-real floor
(the same distance between two halves of the real folder), and optionally writes the report
as JSON and a PNG of histograms and crops. With --tstr_* it also trains a segmenter on the
synthetic folder alone and on a real one (same steps) and scores both on real data
(minutes). See docs/realism.md.

    nucgen realism --real data/bbbc039/test --synthetic synthetic/ --json realism.json --png realism.png
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import tempfile

from absl import app, flags, logging

from nucgen_tf import io
from nucgen_tf.realism.distances import format_table
from nucgen_tf.realism.outputs import write_report


@dataclasses.dataclass(frozen=True)
class RealismOptions:
    """A `nucgen realism` run: the folders compared, the outputs, the optional TSTR run."""

    real: str
    synthetic: str
    json: str | None = None
    png: str | None = None
    small_area: float = 150.0
    crops: int = 3
    tstr_real_train: str | None = None
    tstr_real_eval: str | None = None
    tstr_steps: int = 300
    tstr_patch: int = 256
    tstr_workdir: str | None = None


def define_flags() -> None:
    d = RealismOptions(real="", synthetic="")
    flags.DEFINE_string("real", None, "Real data folder (images/ + masks/, masks/, or cellpose files).")
    flags.DEFINE_string("synthetic", None, "Synthetic data folder, same layouts.")
    flags.DEFINE_string("json", None, "Write the report to this JSON file.")
    flags.DEFINE_string("png", None, "Write histograms and crops to this PNG file.")
    flags.DEFINE_float("small_area", d.small_area, "Nuclei below this many pixels (voxels) count as small.")
    flags.DEFINE_integer("crops", d.crops, "Fields of each folder shown as crops in the PNG.")
    flags.DEFINE_string("tstr_real_train", None, "TSTR: real training folder (with --tstr_real_eval).")
    flags.DEFINE_string("tstr_real_eval", None, "TSTR: real folder both segmenters are scored on.")
    flags.DEFINE_integer("tstr_steps", d.tstr_steps, "TSTR: training steps of each segmenter.", lower_bound=1)
    flags.DEFINE_integer(
        "tstr_patch", d.tstr_patch, "TSTR: largest training patch per axis (128: 4x faster).", lower_bound=16
    )
    flags.DEFINE_string("tstr_workdir", None, "TSTR: keep models and predictions here (default: a temp dir).")


def options_from_flags(fv: flags.FlagValues = flags.FLAGS) -> RealismOptions:
    """The parsed flags as `RealismOptions`, after the checks of what goes together."""
    if not fv.real or not fv.synthetic:
        raise app.UsageError("--real and --synthetic are required.")
    if bool(fv.tstr_real_train) != bool(fv.tstr_real_eval):
        raise app.UsageError("--tstr_real_train and --tstr_real_eval go together.")
    for flag in ("json", "png"):
        path = fv[flag].value
        if path and pathlib.Path(path).is_dir():
            raise app.UsageError(f"--{flag} must be a file, not the folder {path}.")
    return RealismOptions(
        **{field.name: fv[field.name].value for field in dataclasses.fields(RealismOptions)}
    )


def _tstr(cfg: RealismOptions) -> dict:
    from nucgen_tf.realism.tstr import run_tstr  # imports TensorFlow: only when asked for
    from nucgen_tf.segment import SegmentTrainConfig

    base = SegmentTrainConfig(patch_shape=(cfg.tstr_patch,) * len(SegmentTrainConfig().patch_shape))
    with tempfile.TemporaryDirectory(prefix="nucgen_tstr_") as tmp:
        workdir = cfg.tstr_workdir or tmp
        steps = cfg.tstr_steps
        result = run_tstr(cfg.synthetic, cfg.tstr_real_train, cfg.tstr_real_eval, workdir, steps, base)
    sys.stdout.write(
        f"\nTSTR ({result.steps} steps, scored on {cfg.tstr_real_eval}): instance F1 trained on synthetic "
        f"{result.synthetic_f1:.4f}, on real {result.real_f1:.4f}, gap {result.gap:+.4f}\n"
    )
    return dataclasses.asdict(result)


def run(cfg: RealismOptions) -> dict:
    """The whole command; returns the JSON document."""
    report, document = write_report(cfg.real, cfg.synthetic, None, cfg.png, cfg.small_area, cfg.crops)
    sys.stdout.write(format_table(report) + "\n")  # the table is the command's output
    if cfg.png:
        logging.info("wrote %s", cfg.png)
    if cfg.tstr_real_train:
        document["tstr"] = _tstr(cfg)
    if cfg.json:
        io.write_json(cfg.json, document)
        logging.info("wrote %s", cfg.json)
    return document


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    options = options_from_flags()
    try:
        run(options)
    except io.DataError as error:
        raise SystemExit(f"nucgen realism: {error}") from error


if __name__ == "__main__":
    define_flags()
    app.run(main)
