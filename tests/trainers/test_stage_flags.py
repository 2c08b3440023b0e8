"""The stage trainers' command line: per-level strides (anisotropic 3D stacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from absl import app

from nucgen_tf import cli


def test_parse_strides():
    assert cli.parse_strides([]) == ()
    assert cli.parse_strides(["1x2x2", "2", " 2 "]) == ((1, 2, 2), 2, 2)
    with pytest.raises(app.UsageError, match=r"--d_strides takes one entry per level.*Received: 1x2xa"):
        cli.parse_strides(["1x2xa"], "d_strides")


def _parse(*argv: str) -> dict:
    """Stage flags -> the StageConfig's network fields (a subprocess: absl's global flags)."""
    script = (
        "import json, sys\n"
        "from absl import flags\n"
        "from nucgen_tf import cli\n"
        "cli.define_stage_flags()\n"
        "flags.FLAGS(['stage', *sys.argv[1:]])\n"
        "try:\n"
        "    cfg = cli.stage_config_from_flags()\n"
        "except ValueError as error:\n"
        "    print(json.dumps({'error': str(error)})); sys.exit(0)\n"
        "print(json.dumps({'g': cfg.generator.strides, 'd': cfg.discriminator.strides}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "--stage=1", "--data=d", "--workdir=w", "--depth=3", *argv],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_strides_flags_let_a_thin_stack_train():
    # 4 slices cannot be halved 3 times; keeping Z at the first level makes the patch valid.
    assert "must be divisible by 8" in _parse("--patch=4,32,32")["error"]
    parsed = _parse("--patch=4,32,32", "--strides=1x2x2,2,2", "--d_layers=2", "--d_strides=1x2x2,2")
    assert parsed == {"g": [[1, 2, 2], 2, 2], "d": [[1, 2, 2], 2]}
