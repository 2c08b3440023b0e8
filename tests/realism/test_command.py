"""`nucgen realism` end to end (subprocess), TSTR smoke, and the no-TensorFlow promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.segmentation import relabel_sequential

from nucgen_tf import io
from nucgen_tf.models.segmenters import SegmenterConfig
from nucgen_tf.segment import SegmentTrainConfig
from nucgen_tf.segment.config import InstanceConfig
from tests.conftest import REPO_ROOT
from tests.helpers import write_disc_pairs

_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def _nucgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "realism", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, env=_ENV, timeout=120,
    )  # fmt: skip


def _write(root, fields) -> None:
    for i, (image, labels) in enumerate(fields):
        io.write_tiff(root / "images" / f"f{i:02d}.tif", image.astype(np.uint16))
        io.write_labels(root / "masks" / f"f{i:02d}.tif", relabel_sequential(labels)[0])  # crops leave gaps


def test_command_writes_table_json_and_png(tmp_path, real_fields, other_fields):
    _write(tmp_path / "real", real_fields[:4])
    _write(tmp_path / "synthetic", other_fields[:3])
    out = tmp_path / "out"
    result = _nucgen(f"--real={tmp_path / 'real'}", f"--synthetic={tmp_path / 'synthetic'}",
                     f"--json={out / 'r.json'}", f"--png={out / 'r.png'}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "statistic" in result.stdout and "edge_sharpness" in result.stdout
    document = json.loads((out / "r.json").read_text())
    assert document["n_real_fields"] == 4 and document["n_synthetic_fields"] == 3
    assert document["statistics"]["area"]["floor"] > 0
    png = iio.imread(out / "r.png")
    assert png.ndim == 3 and png.shape[1] >= 1000 and png.shape[0] > 800


def test_command_bad_folder_gives_one_line(tmp_path, real_fields):
    _write(tmp_path / "real", real_fields[:2])
    result = _nucgen(f"--real={tmp_path / 'real'}", f"--synthetic={tmp_path / 'missing'}")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0]
    assert "Traceback" not in result.stderr


def test_realism_does_not_import_tensorflow():
    code = ("import sys, nucgen_tf.realism, nucgen_tf.commands.realism, nucgen_tf.realism.figure; "
            "print('tensorflow' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_tstr_smoke(tmp_path):
    from nucgen_tf.realism.tstr import run_tstr

    synthetic = write_disc_pairs(tmp_path / "synthetic", range(2), (64, 64))
    real = write_disc_pairs(tmp_path / "real", range(2, 4), (64, 64))
    evaluation = write_disc_pairs(tmp_path / "eval", range(4, 5), (64, 64))
    config = SegmentTrainConfig(
        network=SegmenterConfig(base_filters=4, depth=2), instances=InstanceConfig(min_size=0),
        patch_shape=(32, 32), batch_size=2, precision="float32",
    )  # fmt: skip
    result = run_tstr(synthetic, real, evaluation, tmp_path / "work", steps=2, config=config)
    assert result.steps == 2
    assert 0.0 <= result.synthetic_f1 <= 1.0 and 0.0 <= result.real_f1 <= 1.0
    assert result.gap == pytest.approx(result.real_f1 - result.synthetic_f1)
    assert set(result.scores) == {"synthetic", "real"}
    assert (tmp_path / "work" / "real" / "pred" / "d04.tif").is_file()


def test_tstr_patch_flag_sets_the_segmenter_patch(monkeypatch, tmp_path):
    """--tstr_patch=128 trains as Table I does (the default 256 px patch is 4x slower)."""
    import types

    from nucgen_tf.commands import realism as command
    from nucgen_tf.realism import tstr

    seen = {}

    def fake_run_tstr(synthetic, real_train, real_eval, workdir, steps, config):
        seen.update(patch=config.patch_shape, steps=steps)
        return tstr.TstrResult(steps, 0.5, 0.6, 0.1, {})

    monkeypatch.setattr(tstr, "run_tstr", fake_run_tstr)
    folders = {"synthetic": "s", "tstr_real_train": "t", "tstr_real_eval": "e", "tstr_workdir": str(tmp_path)}
    cfg = types.SimpleNamespace(**folders, tstr_steps=7, tstr_patch=128)
    assert command._tstr(cfg)["gap"] == 0.1
    assert seen == {"patch": (128, 128), "steps": 7}
