"""The segmenter family setting of the experiment: flags, workdir compatibility, a StarDist smoke run.

The workdir tests use a verbatim copy of an `experiment.json` written before the family
setting existed (the Table I run on BBBC039), so they fail if a change to the configs would
make such a workdir be refused or its cells be looked for elsewhere.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib

import pytest
from absl import flags

from nucgen_tf import io
from nucgen_tf.commands import experiment as experiment_command
from nucgen_tf.experiments import config as C
from nucgen_tf.experiments import runner

# /work/exp/table1/experiment.json as written by the U-Net-only code, paths replaced by
# placeholders that `_old_record` fills in.
OLD_RECORD = {
    "data_root": "<DATA>",
    "elastic_alpha": 6.0,
    "elastic_sigma": 16.0,
    "gan": {
        "base_filters": 8, "batch_size": 2, "checkpoint_every": 500, "d_filters": 8, "d_layers": 3,
        "depth": 4, "lr": 0.0002, "patch_shape": [128, 128], "pcyclegan_steps": 2000, "pix2pix_lr": 0.001,
        "precision": "mixed", "seed": 0, "stage1_steps": 3000, "stage2_steps": 3000, "stage3_steps": 3000,
    },
    "max_test_images": 0,
    "max_val_images": 0,
    "models_dir": None,
    "n_synthetic": 100,
    "ours_models": "<MODELS>",
    "pcyclegan_models": None,
    "rp2p_models": "<MODELS>/stage3",
    "segmenter": {
        "batch_size": 4, "boundary_width": 1, "class_weights": [1.0, 1.0, 5.0], "dice_weight": 0.0,
        "eval_every": 250, "extra_fraction": 0.5, "flips": True,
        "instances": {"foreground_threshold": 0.5, "min_seed_size": 8, "min_size": 25, "seed_threshold": 0.5},
        "jit_compile": False, "lr": 0.001, "lr_final_fraction": 0.02,
        "network": {"base_filters": 16, "depth": 4, "dropout": 0.0, "kernel_size": 3, "max_filters": 512,
                    "norm": "batch", "strides": []},
        "norm": {"high_percentile": 99.8, "low_percentile": 1.0, "min_span_fraction": 0.5},
        "patch_shape": [128, 128], "precision": "float32", "rot90": True, "seed": 0,
        "select_on": "instance_f1", "steps": 1000,
    },
    "synth_shape": [256, 256],
}  # fmt: skip


def _parse(argv):
    fv = flags.FlagValues()
    experiment_command.define_flags(fv)
    fv(["augmentation", *argv])
    return experiment_command.config_from_flags(fv)


def _table1(tmp_path, *extra):
    """The config of the Table I command line (its flag file), optionally with more flags.

    `--nosensor_noise`: the old workdir was written before the sensor model, whose images had
    no camera noise; continuing it takes that flag (a run with noise is refused, see below).
    """
    data, models = tmp_path / "bbbc039", tmp_path / "models"
    return _parse(
        ["--preset=full", f"--data_root={data}", f"--workdir={tmp_path / 'work'}", "--seeds=0,1",
         "--n_synthetic=100", "--seg_steps=1000", "--seg_eval_every=250", "--pcyclegan_steps=2000",
         f"--ours_models={models}", f"--rp2p_models={models / 'stage3'}", "--nosensor_noise", *extra]
    )  # fmt: skip


def _write_old_record(tmp_path) -> pathlib.Path:
    text = json.dumps(OLD_RECORD).replace("<DATA>", str((tmp_path / "bbbc039").resolve()))
    text = text.replace("<MODELS>", str((tmp_path / "models").resolve()))
    path = tmp_path / "work" / runner.SETTINGS
    io.write_json(path, json.loads(text))
    return path


def test_flags_choose_the_family_and_route_seg_flags(tmp_path):
    unet = _table1(tmp_path)
    assert unet.segmenter_family == "unet" and unet.segmenter.steps == 1000
    assert unet.stardist == C.full_preset("d", "w").stardist  # untouched by --seg_* flags
    stardist = _table1(tmp_path, "--segmenter=stardist", "--seg_filters=16", "--stardist_rays=24")
    assert stardist.segmenter_family == "stardist" and stardist.segmenter_config is stardist.stardist
    assert stardist.stardist.steps == 1000 and stardist.stardist.eval_every == 250
    assert stardist.stardist.unet_n_filter_base == 16 and stardist.stardist.n_rays == 24
    assert stardist.segmenter == C.full_preset("d", "w").segmenter  # the U-Net keeps its preset


def test_3d_patch_gets_the_automatic_stardist_grid(tmp_path):
    # The presets' StarDist grid is 2x2; a 3D experiment without --stardist_grid must not fail on it.
    in_3d = ("--segmenter=stardist", "--seg_patch=32,64,64", "--gan_patch=32,64,64",
             "--synth_shape=32,128,128")  # fmt: skip
    config = _table1(tmp_path, *in_3d)
    assert config.stardist.patch_shape == (32, 64, 64) and config.stardist.grid == ()
    given = _table1(tmp_path, *in_3d, "--stardist_grid=1,2,2")
    assert given.stardist.grid == (1, 2, 2)
    assert _table1(tmp_path, "--segmenter=stardist", "--seg_patch=64,64").stardist.grid == (2, 2)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="segmenter_family"):
        C.with_overrides(C.smoke_preset("d", "w"), {"segmenter_family": "maskrcnn"})


def test_old_workdir_is_accepted_unchanged_with_cells_in_place(tmp_path):
    path = _write_old_record(tmp_path)
    before = path.read_bytes()
    config = _table1(tmp_path)
    runner.check_workdir(config)  # raises io.DataError on any difference
    assert path.read_bytes() == before
    assert runner.cell_dir(config, 20, "none", 0) == tmp_path / "work" / "cells" / "n20" / "none" / "seed0"


def test_stardist_shares_an_old_workdir(tmp_path):
    path = _write_old_record(tmp_path)
    stardist = _table1(tmp_path, "--segmenter=stardist")
    runner.check_workdir(stardist)
    saved = json.loads(path.read_text())
    assert saved["segmenter"] == OLD_RECORD["segmenter"]  # the U-Net entry is kept as it was
    assert saved["stardist"]["steps"] == 1000
    assert {k: v for k, v in saved.items() if k != "stardist"} == runner.settings_record(_table1(tmp_path))
    runner.check_workdir(stardist)  # its second run matches
    runner.check_workdir(_table1(tmp_path))  # and the U-Net is still accepted
    cell = runner.cell_dir(stardist, 20, "ours", 1)
    assert cell == tmp_path / "work" / "cells" / "stardist" / "n20" / "ours" / "seed1"


def test_an_old_workdir_refuses_sensor_noise_its_synthetic_images_never_had(tmp_path):
    _write_old_record(tmp_path)
    noisy = _table1(tmp_path, "--sensor_noise")
    with pytest.raises(io.DataError, match=r"experiment.json.*sensor_noise: None -> True"):
        runner.check_workdir(noisy)


def test_other_stardist_settings_are_refused(tmp_path):
    _write_old_record(tmp_path)
    runner.check_workdir(_table1(tmp_path, "--segmenter=stardist"))
    with pytest.raises(io.DataError, match=r"experiment.json.*stardist.steps: 1000 -> 500"):
        runner.check_workdir(
            _table1(tmp_path, "--segmenter=stardist", "--seg_steps=500", "--seg_eval_every=250")
        )


def test_stardist_with_other_common_settings_is_refused(tmp_path):
    _write_old_record(tmp_path)
    with pytest.raises(io.DataError, match=r"n_synthetic: 100 -> 50"):
        runner.check_workdir(_table1(tmp_path, "--segmenter=stardist", "--n_synthetic=50"))


def test_report_has_a_block_of_rows_per_family(tmp_path):
    def cell(family, condition, f1):
        evals = {"test": {"pixel_f1": f1, "instance_f1": f1, "object_f1": f1, "mean_ap": f1}}
        record = {"n_train": 20, "condition": condition, "seed": 0, "evals": evals}
        return record if family is None else {**record, "segmenter_family": family}

    from nucgen_tf.experiments import report

    cells = [cell(None, "none", 0.8), cell(None, "ours", 0.9), cell("stardist", "none", 0.7)]
    models = {"unet": "U-Net (2D)", "stardist": "StarDist (2D)"}
    document = report.write_report(tmp_path, copy.deepcopy(cells), ("none", "ours"), (20,), model=models)
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| ")][2:]
    assert rows[0].startswith("| U-Net (2D) | none | 0.8000 |") and rows[1].startswith("|  | ours | 0.9000 |")
    assert rows[2].startswith("| StarDist (2D) | none | 0.7000 |") and "not run" in rows[3]
    assert document["models"] == ["U-Net (2D)", "StarDist (2D)"]
    by_model = document["summary_by_model"]
    assert by_model["U-Net (2D)"]["test"]["20"]["ours"]["instance_error_cut"] == pytest.approx(0.5)
    assert by_model["StarDist (2D)"]["test"]["20"]["ours"]["instance_f1"]["n"] == 0


@pytest.mark.slow
def test_smoke_experiment_with_stardist(tmp_path, bbbc039_train):
    try:
        import stardist  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("stardist is not installed (pip install 'stardist==0.9.2')")
        pytest.skip("stardist is not installed")
    workdir = tmp_path / "smoke"
    # A finished U-Net cell of the same grid (hand-written): the report shows both families.
    unet_cell = workdir / "cells" / "n2" / "none" / "seed0" / runner.RESULT
    evals = {"test": {"pixel_f1": 0.9, "instance_f1": 0.8, "object_f1": 0.7, "mean_ap": 0.5}}
    io.write_json(unet_cell, {"n_train": 2, "condition": "none", "seed": 0, "evals": evals})
    # The smoke preset, shortened further: this test is about the wiring, not the figures.
    config = _parse(
        ["--preset=smoke", f"--data_root={bbbc039_train.parent}", f"--workdir={workdir}", "--conditions=none",
         "--segmenter=stardist", "--seg_steps=6", "--seg_eval_every=3", "--max_test_images=1",
         "--stardist_optimize_thresholds=false"]
    )  # fmt: skip
    assert config.stardist.steps == 6 and config.segmenter.steps == 30
    document = runner.run_experiment(config)

    result = json.loads(
        (workdir / "cells" / "stardist" / "n2" / "none" / "seed0" / runner.RESULT).read_text()
    )
    assert result["segmenter_family"] == "stardist" and result["model"].startswith("StarDist (2D, 16 rays")
    test = result["evals"]["test"]
    assert test["n_images"] == 1
    for metric in ("pixel_f1", "instance_f1", "object_f1"):
        assert 0.0 <= test[metric] <= 1.0
    assert result["best_step"] in (3, 6)
    preds = sorted(
        p.name for p in (workdir / "cells" / "stardist" / "n2" / "none" / "seed0" / "pred" / "test").iterdir()
    )
    truths = sorted(p.name for p in (workdir / "data" / "test" / "masks").iterdir())
    assert preds == truths

    rows = [
        line for line in (workdir / "report" / "table.md").read_text().splitlines() if line.startswith("| ")
    ]
    models = [line.split(" | ")[0][2:] for line in rows[2:]]
    assert models[0].startswith("U-Net (2D, 3-class") and models[1].startswith("StarDist (2D, 16 rays")
    assert document["models"][1] == result["model"]
    saved = json.loads((workdir / runner.SETTINGS).read_text())
    assert "stardist" in saved and "segmenter" not in saved  # only the family that ran records its settings
