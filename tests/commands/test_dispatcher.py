"""The `nucgen` dispatcher: quiet TensorFlow start-up, one message per error (issue 18, item 4)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from nucgen_tf.commands import nucgen

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHATTER = ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "I0000", "W0000")


def _nucgen(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NUCGEN_TF_LOGS")}
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**base, **env},
    )  # fmt: skip


def test_quiet_tensorflow_sets_only_what_the_user_left_unset():
    environ = {}
    assert nucgen.quiet_tensorflow(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    mine = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert not nucgen.quiet_tensorflow(mine)  # the user asked for TensorFlow's logs
    assert mine == {"TF_CPP_MIN_LOG_LEVEL": "0"}
    on = {"NUCGEN_TF_LOGS": "1"}
    assert not nucgen.quiet_tensorflow(on)
    assert on == {"NUCGEN_TF_LOGS": "1"}


@pytest.mark.slow
def test_help_of_a_tensorflow_command_has_no_start_up_chatter():
    proc = _nucgen("train", "--help")
    assert proc.returncode == 0 and "--stage" in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if any(c in line for c in CHATTER)], proc.stderr


@pytest.mark.slow
def test_nucgen_tf_logs_turns_the_chatter_back_on():
    proc = _nucgen("train", "--help", NUCGEN_TF_LOGS="1")
    assert "oneDNN" in proc.stderr


def test_an_error_is_printed_once(tmp_path):
    proc = _nucgen("evaluate", f"--pred={tmp_path / 'nope'}", f"--truth={tmp_path}")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"nucgen evaluate: {tmp_path / 'nope'}: folder not found "
                                        "(expected label TIFFs, or a data folder with masks/)"]  # fmt: skip


@pytest.mark.slow
def test_a_segment_error_is_printed_once(tmp_path):
    proc = _nucgen("segment", "train", f"--data={tmp_path / 'nope'}", f"--out={tmp_path / 'model'}")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert [line for line in lines if "nope" in line] == lines[-1:], proc.stderr
    assert lines[-1].startswith(f"nucgen segment train: {tmp_path / 'nope'}: data folder not found")
