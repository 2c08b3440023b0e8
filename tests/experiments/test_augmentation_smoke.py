"""The smoke preset end to end on real BBBC039 data: every condition, the report, resuming.

One run of `run_experiment(smoke_preset(...))` (module fixture; a few minutes on 2 busy
cores: four GAN trainings and four segmenter trainings, each a few steps) is shared by the
tests below.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nucgen_tf import io
from nucgen_tf.experiments import runner
from nucgen_tf.experiments.config import CONDITIONS, SLUGS, smoke_preset, with_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, bbbc039_train):
    config = smoke_preset(str(bbbc039_train.parent), str(tmp_path_factory.mktemp("smoke")))
    document = runner.run_experiment(config)
    return config, document


def test_report_has_finite_figures_for_every_condition(smoke):
    config, document = smoke
    report = pathlib.Path(config.workdir) / "report"
    saved = json.loads((report / "results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(document["summary"]))
    row = saved["summary"]["test"]["2"]
    assert set(row) == set(CONDITIONS)
    for condition in CONDITIONS:
        for metric in ("pixel_f1", "instance_f1", "object_f1"):
            stat = row[condition][metric]
            assert stat["n"] == 1 and math.isfinite(stat["mean"]) and 0.0 <= stat["mean"] <= 1.0
        cut = row[condition]["instance_error_cut"]
        assert (cut is None) == (condition == "none")
    # 30 segmenter steps are enough to find nuclei without synthetic data.
    assert row["none"]["pixel_f1"]["mean"] > 0.3
    cells = saved["cells"]
    assert [c["condition"] for c in cells] == list(CONDITIONS)
    assert all(c["evals"]["test"]["n_images"] == config.max_test_images for c in cells)
    assert all(c["best_step"] in (15, 30) for c in cells)  # selected on val among the 2 evaluations


def test_table_and_plot(smoke):
    config, _ = smoke
    report = pathlib.Path(config.workdir) / "report"
    text = (report / "table.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(CONDITIONS)
    assert rows[0].startswith("| Model | Aug method | Pixel F1 | Instance F1 (paper) | Instance F1 (matched pairs) | Object F1@0.5")
    for condition, line in zip(CONDITIONS, rows[1:]):
        assert f"| {condition} | " in line and "not run" not in line
    with Image.open(report / "bars.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # axes, text and bars, not a blank image
    # Synthetic pairs next to real ones: a row for the real data and one per synthetic condition.
    with Image.open(report / f"gallery_n{config.n_train[0]}.png") as image:
        width, height = image.size
    assert width > 4 * 64 and height > (1 + len(CONDITIONS) - 1) * 64


def test_synthetic_folders(smoke):
    config, _ = smoke
    for condition in CONDITIONS[1:]:
        folder = pathlib.Path(config.workdir) / "synthetic" / "n2" / SLUGS[condition]
        pairs = io.list_pairs(folder)
        assert len(pairs) == config.n_synthetic
        for pair in pairs:
            image, labels = io.read_pair(pair)
            assert image.shape == config.synth_shape and image.dtype == np.uint16
            ids = np.unique(labels)
            np.testing.assert_array_equal(ids[ids > 0], np.arange(1, labels.max() + 1))  # consecutive
        complete = json.loads((folder / "complete.json").read_text())
        assert complete["pairs"] == config.n_synthetic and complete["condition"] == condition
    real = io.list_pairs(pathlib.Path(config.workdir) / "data" / "train_n2")
    assert len(real) == 2 and all(p.image_path.is_symlink() for p in real)


def test_rerun_skips_finished_cells_and_scores_new_sets(smoke):
    config, document = smoke
    # The run's own 1-image validation subset, scored again under another name.
    again_dir = pathlib.Path(config.workdir) / "data" / "val"
    extra = with_overrides(config, {"extra_eval": (("val_again", str(again_dir)),)})
    history = pathlib.Path(config.workdir) / "cells" / "n2" / "ours" / "seed0" / "segmenter" / "history.json"
    before = history.stat().st_mtime_ns
    # A cell scored before the touching figures existed is rescored from its kept predictions.
    result_path = history.parent.parent / runner.RESULT
    old = json.loads(result_path.read_text())
    expected = old["evals"]["test"]["touching_object_f1"]
    del old["evals"]["test"]["touching_object_f1"]
    result_path.write_text(json.dumps(old))
    again = runner.run_experiment(extra)
    assert history.stat().st_mtime_ns == before  # no segmenter was trained again
    rescored = json.loads(result_path.read_text())["evals"]["test"]
    assert rescored["touching_object_f1"] == pytest.approx(expected)
    assert again["summary"]["test"] == json.loads(json.dumps(document["summary"]["test"]))
    row = again["summary"]["val_again"]["2"]
    assert all(row[c]["instance_f1"]["n"] == 1 for c in CONDITIONS)
    assert "## val_again: n_train = 2" in (pathlib.Path(config.workdir) / "report" / "table.md").read_text()


def test_workdir_with_other_settings_is_refused(smoke):
    config, _ = smoke
    with pytest.raises(io.DataError, match=r"experiment.json.*segmenter.steps: 30 -> 60"):
        runner.run_experiment(with_overrides(config, {"segmenter.steps": 60}))


def test_command_line_resumes_the_finished_run(smoke):
    config, _ = smoke
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.experiment", "--preset=smoke",
         f"--data_root={config.data_root}", f"--workdir={config.workdir}"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {config.workdir}/report/table.md" in result.stdout
    assert "[cell 4/4]" in result.stderr and "finished" in result.stderr
