"""What a user sees when `nucgen synthesize` is misused or interrupted (issue 18, item 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from nucgen_tf import io, pretrained
from nucgen_tf.commands import synthesize as synthesize_command
from nucgen_tf.synthesis import run as synth
from nucgen_tf.synthesis import writers
from nucgen_tf.synthesis.options import SynthesisOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _options(models, out, **kw) -> SynthesisOptions:
    return SynthesisOptions(models=str(models), out=str(out), **{"n": 2, "previews": False, **kw})


def test_smallest_canvas_is_what_the_generators_take(tiny):
    folder, chain = tiny
    # Divisor 4: a 4-px canvas reaches the bottleneck as 1 px, which a 3x3 mirrored conv cannot pad.
    assert synth.smallest_canvas(chain) == (5, 5)
    manifest = synth.synthesize(_options(folder, folder.parent / "ok", shape=(5, 5)), chain)
    assert manifest["summary"]["samples"] == 2


def test_too_small_shape_is_refused_before_anything_is_written(tiny, tmp_path):
    folder, chain = tiny
    with pytest.raises(ValueError, match=r"--shape 4,4 is too small for these generators .*at least 5,5 px"):
        synth.synthesize(_options(folder, tmp_path / "out", shape=(4, 4)), chain)
    assert not (tmp_path / "out").exists()


def test_too_small_tile_is_refused_before_anything_is_written(tiny, tmp_path):
    folder, chain = tiny
    message = r"--tile 4 is too small for these generators: tiles need at least 8,8 px"
    with pytest.raises(ValueError, match=message):
        synth.synthesize(_options(folder, tmp_path / "out", shape=(32, 32), tile=(4,)), chain)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused_before_loading_models(tmp_path, monkeypatch):
    target = tmp_path / "taken.txt"
    target.write_text("x")

    def no_loading(_):
        raise AssertionError("models were loaded before --out was checked")

    monkeypatch.setattr(synth, "load_generators", no_loading)
    with pytest.raises(io.DataError, match="taken.txt: --out is a file, not a folder"):
        synth.synthesize(_options(tmp_path / "models", target))


def test_ctrl_c_keeps_finished_samples_and_says_how_to_resume(tiny, tmp_path, monkeypatch):
    folder, chain = tiny
    real_write = writers.write_sample
    calls = []

    def write_then_interrupt(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kw)

    monkeypatch.setattr(writers, "write_sample", write_then_interrupt)
    options = _options(folder, tmp_path / "out", n=3, chunk=3)
    with pytest.raises(synth.Interrupted) as stop:
        synth.synthesize(options, chain)
    assert (stop.value.written, stop.value.total) == (1, 3)
    assert str(stop.value) == "interrupted; 1 of 3 samples written; rerun the same command to resume"
    monkeypatch.setattr(writers, "write_sample", real_write)
    manifest = synth.synthesize(options, chain)
    assert manifest["run"]["skipped"] == 1 and manifest["summary"]["samples"] == 3


def test_main_turns_ctrl_c_into_one_line(monkeypatch, capsys):
    def interrupted(_):
        raise synth.Interrupted(4, 10)

    monkeypatch.setattr(synthesize_command, "options_from_flags", lambda: None)
    monkeypatch.setattr(synthesize_command, "synthesize", interrupted)
    with pytest.raises(SystemExit) as stop:
        synthesize_command.main(["nucgen synthesize"])
    assert stop.value.code == 130
    assert capsys.readouterr().err == (
        "nucgen synthesize: interrupted; 4 of 10 samples written; rerun the same command to resume\n"
    )


@pytest.mark.slow
def test_cli_too_small_shape_with_the_bundled_generators_is_one_message(tmp_path):
    """The issue's command: no TensorFlow traceback, no start-up chatter, one line, no files."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "synthesize", "--shape=16,16", "--n=1",
         f"--out={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NUCGEN_TF_LOGS")},
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    models = pretrained.bundled_models()
    prefix = f"nucgen synthesize: --shape 16,16 is too small for these generators ({models}): "
    assert last.startswith(prefix), last
    pattern = r"each axis needs at least (\d+),\1 px, e.g. --shape (\d+),\2"
    need, typical = re.fullmatch(pattern, last[len(prefix) :]).groups()
    assert 16 < int(need) <= int(typical)
    assert "Traceback" not in proc.stderr and "paddings" not in proc.stderr
    assert not out.exists()
