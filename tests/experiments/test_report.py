"""The experiment report from hand-made numbers: summary, Table I layout, charts, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from nucgen_tf import charts
from nucgen_tf.experiments import report as R

CONDITIONS = ("none", "p+CycleGAN", "r+p2p", "ours")


def _cell(n_train, condition, seed, pixel, instance, obj, extra=None, later=None):
    """A cell's figures; `later` adds the matched-pair and touching figures (older runs lack them)."""
    evals = {"test": {"pixel_f1": pixel, "instance_f1": instance, "object_f1": obj, "mean_ap": 0.5}}
    if later is not None:
        evals["test"].update(
            instance_matched_f1=later, touching_instance_f1=later - 0.1, touching_object_f1=later - 0.2
        )
    if extra is not None:
        evals["other"] = {"pixel_f1": extra, "instance_f1": extra, "object_f1": extra, "mean_ap": extra}
    return {"n_train": n_train, "condition": condition, "seed": seed, "evals": evals}


@pytest.fixture
def cells():
    # instance F1 means: none 0.90, p+CycleGAN 0.89, r+p2p 0.92, ours 0.95 at n_train=20.
    return [
        _cell(20, "none", 0, 0.96, 0.89, 0.80, extra=0.7),
        _cell(20, "none", 1, 0.96, 0.91, 0.82),
        _cell(20, "p+CycleGAN", 0, 0.95, 0.88, 0.79),
        _cell(20, "p+CycleGAN", 1, 0.95, 0.90, 0.81),
        _cell(20, "r+p2p", 0, 0.96, 0.92, 0.83),
        _cell(20, "r+p2p", 1, 0.96, 0.92, 0.85),
        _cell(20, "ours", 0, 0.97, 0.95, 0.90),
        _cell(5, "none", 0, 0.90, 0.80, 0.70),
        _cell(5, "ours", 0, 0.92, 0.85, 0.75),
    ]


def test_mean_std_uses_the_sample_deviation():
    stat = R.mean_std([0.89, 0.91])
    assert stat["mean"] == pytest.approx(0.90)
    assert stat["std"] == pytest.approx(math.sqrt(2) * 0.01)  # ddof=1
    assert stat["n"] == 2
    assert R.mean_std([0.5])["std"] is None
    assert R.mean_std([])["mean"] is None


def test_error_cut():
    # err_none = 0.10, err_ours = 0.05: half of the errors removed.
    assert R.error_cut(0.90, 0.95) == pytest.approx(0.5)
    assert R.error_cut(0.90, 0.85) == pytest.approx(-0.5)
    assert R.error_cut(1.0, 0.9) is None
    assert R.error_cut(None, 0.9) is None


def test_summarize(cells):
    summary = R.summarize(cells, CONDITIONS, (5, 20), "test")
    assert list(summary) == ["5", "20"]
    row = summary["20"]
    assert row["none"]["instance_f1"]["mean"] == pytest.approx(0.90)
    assert row["p+CycleGAN"]["instance_error_cut"] == pytest.approx(-0.1)
    assert row["r+p2p"]["instance_error_cut"] == pytest.approx(0.2)
    assert row["ours"]["instance_error_cut"] == pytest.approx(0.5)
    assert row["ours"]["instance_f1"]["std"] is None  # one seed
    assert row["none"]["instance_error_cut"] is None
    assert summary["5"]["r+p2p"]["instance_f1"]["n"] == 0
    assert summary["5"]["ours"]["instance_error_cut"] == pytest.approx(0.25)
    other = R.summarize(cells, CONDITIONS, (20,), "other")
    assert other["20"]["none"]["pixel_f1"]["values"] == [0.7]
    assert other["20"]["ours"]["pixel_f1"]["n"] == 0


def test_markdown_table_has_table_one_layout(cells):
    row = R.summarize(cells, CONDITIONS, (20,), "test")["20"]
    text = R.markdown_table(row, CONDITIONS, "U-Net")
    lines = text.splitlines()
    assert lines[0] == (
        "| Model | Aug method | Pixel F1 | Instance F1 (paper) | Instance F1 (matched pairs) | Object F1@0.5 "
        "| Touching: instance F1 (matched) | Touching: object F1@0.5 | Instance-F1 error cut vs none |"
    )
    # These cells predate the matched-pair and touching figures: "–", not "not run".
    assert lines[2] == "| U-Net | none | 0.9600 ± 0.0000 | 0.9000 ± 0.0141 | – | 0.8100 ± 0.0141 | – | – | – |"
    assert lines[3] == (
        "|  | p+CycleGAN | 0.9500 ± 0.0000 | 0.8900 ± 0.0141 | – | 0.8000 ± 0.0141 | – | – | -10.0% |"
    )
    assert lines[5] == "|  | ours | 0.9700 | 0.9500 | – | 0.9000 | – | – | +50.0% |"
    assert len(lines) == 2 + len(CONDITIONS)


def test_later_figures_fill_their_columns():
    cells = [_cell(20, "none", 0, 0.96, 0.90, 0.80, later=0.88), _cell(20, "ours", 0, 0.97, 0.95, 0.90, later=0.9)]
    row = R.summarize(cells, ("none", "ours"), (20,), "test")["20"]
    lines = R.markdown_table(row, ("none", "ours"), "U-Net").splitlines()
    assert lines[2] == "| U-Net | none | 0.9600 | 0.9000 | 0.8800 | 0.8000 | 0.7800 | 0.6800 | – |"
    assert lines[3] == "|  | ours | 0.9700 | 0.9500 | 0.9000 | 0.9000 | 0.8000 | 0.7000 | +50.0% |"


def test_3d_tables_name_voxel_f1(cells, tmp_path):
    row = R.summarize(cells, CONDITIONS, (20,), "test")["20"]
    header = R.markdown_table(row, CONDITIONS, "U-Net (3D)", ndim=3).splitlines()[0]
    assert header.startswith("| Model | Aug method | Voxel F1 | Instance F1 (paper) |")
    R.write_report(tmp_path, cells, CONDITIONS, (20,), ("test",), "U-Net (3D)", ndim=3)
    text = (tmp_path / "table.md").read_text()
    assert "Tables II/III" in text and "voxels of predicted instances" in text and "Pixel F1" not in text


def test_amount_table_and_missing_cells(cells):
    summary = R.summarize(cells, CONDITIONS, (5, 20), "test")
    text = R.amount_table(summary, CONDITIONS)
    assert "| Aug method | n_train = 5 | n_train = 20 |" in text
    assert "| r+p2p | not run | 0.9200 ± 0.0000 (+20.0%) |" in text
    assert "| ours | 0.8500 (+25.0%) | 0.9500 (+50.0%) |" in text


def test_nice_ticks_cover_the_range():
    ticks = charts.nice_ticks(0.873, 0.962)
    assert ticks[0] <= 0.873 and ticks[-1] >= 0.962
    steps = np.diff(ticks)
    np.testing.assert_allclose(steps, steps[0])
    assert 3 <= len(ticks) <= 9


def _colors_drawn(image: np.ndarray) -> int:
    """How many of the metric colors cover more than 50 pixels."""
    return sum(
        np.count_nonzero(np.all(image == np.asarray(R.COLORS[k], np.uint8), axis=-1)) > 50
        for k in range(len(R.METRICS))
    )


def test_bar_chart_draws_each_metric():
    cells = [_cell(20, c, 0, 0.96, 0.9 + 0.01 * i, 0.8, later=0.85) for i, c in enumerate(CONDITIONS)]
    row = R.summarize(cells, CONDITIONS, (20,), "test")["20"]
    image = R.bar_chart(row, CONDITIONS, "test")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert _colors_drawn(image) == len(R.METRICS)  # one bar color per metric


def test_bar_chart_of_older_cells_draws_the_metrics_they_have(cells):
    row = R.summarize(cells, CONDITIONS, (20,), "test")["20"]
    assert _colors_drawn(R.bar_chart(row, CONDITIONS, "test")) == 3


def test_bar_chart_rejects_an_empty_row():
    row = R.summarize([], CONDITIONS, (20,), "test")["20"]
    with pytest.raises(ValueError, match="No condition"):
        R.bar_chart(row, CONDITIONS, "test")


def test_write_report_files(tmp_path, cells):
    document = R.write_report(tmp_path, cells, CONDITIONS, (5, 20), ("test", "other"), "U-Net", {"k": 1})
    assert set(document["files"]) == {"table", "json", "bars", "gain_vs_amount"}
    for name in document["files"].values():
        assert (tmp_path / name).stat().st_size > 0
    with Image.open(tmp_path / "bars.png") as bars, Image.open(tmp_path / "gain_vs_amount.png") as gain:
        assert bars.height > 600  # one bar chart per amount, stacked
        assert gain.width > 300
    text = (tmp_path / "table.md").read_text()
    assert "## test: n_train = 20 real images (seeds per condition: 1/2)" in text
    assert "## other: n_train = 20" in text
    assert "## test: instance F1 vs training amount" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["test"]["20"]["ours"]["instance_error_cut"] == pytest.approx(0.5)
    assert [c["condition"] for c in saved["cells"][:2]] == ["none", "ours"]  # n_train 5 first
    assert saved["meta"] == {"k": 1}


def test_write_report_one_amount_has_no_gain_chart(tmp_path, cells):
    document = R.write_report(tmp_path, [c for c in cells if c["n_train"] == 20], CONDITIONS, (20,))
    assert "gain_vs_amount" not in document["files"]
    assert not (tmp_path / "gain_vs_amount.png").exists()


def test_val_curves_show_each_condition_over_training(tmp_path):
    curve = lambda top: [{"step": s, "loss": 1.0, "instance_f1": top * s / 750} for s in (250, 500, 750)]  # noqa: E731
    cells = [
        {**_cell(20, "none", seed, 0.96, 0.90, 0.8), "val_curve": curve(0.9)} for seed in (0, 1)
    ] + [{**_cell(20, "ours", 0, 0.97, 0.95, 0.9), "val_curve": curve(0.95)}, _cell(5, "none", 0, 0.9, 0.8, 0.7)]
    chart = R.val_curve_chart(cells, ("none", "ours"), 20, "val")
    for k in (0, 1):  # one line color per condition with a curve
        assert np.count_nonzero(np.all(chart == np.asarray(R.COLORS[k], np.uint8), axis=-1)) > 50
    assert R.val_curve_chart(cells, ("none", "ours"), 5, "val") is None  # no curve at that amount
    document = R.write_report(tmp_path, cells, ("none", "ours"), (5, 20), ("test",), "U-Net")
    assert document["files"]["val_curves"] == "val_curves.png"
    with Image.open(tmp_path / "val_curves.png") as image:
        assert image.width > 300


def test_runner_reads_the_validation_curve(tmp_path):
    from nucgen_tf.experiments.runner import val_curve

    history = {"history": [{"step": 250, "loss": 0.5, "instance_f1": 0.9, "seconds_per_step": 0.1}], "best": None}
    (tmp_path / "history.json").write_text(json.dumps(history))
    assert val_curve(tmp_path) == [{"step": 250, "loss": 0.5, "instance_f1": 0.9}]
    assert val_curve(tmp_path / "missing") == []
