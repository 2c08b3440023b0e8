"""Experiment configs: presets, dotted overrides, flags and flag files -> ExperimentConfig."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
from absl import flags

from nucgen_tf import io
from nucgen_tf.commands import experiment as experiment_command
from nucgen_tf.config import SeedConfig, to_dict
from nucgen_tf.experiments import config as C
from nucgen_tf.experiments import runner

REPO = pathlib.Path(__file__).resolve().parents[2]


def _parse(argv):
    fv = flags.FlagValues()
    experiment_command.define_flags(fv)
    fv(["augmentation", *argv])
    return experiment_command.config_from_flags(fv)


@pytest.mark.parametrize(
    "spelling, expected",
    [("none", "none"), ("p+CycleGAN", "p+CycleGAN"), ("p_cyclegan", "p+CycleGAN"), ("rp2p", "r+p2p"),
     ("R+P2P", "r+p2p"), ("ours", "ours")],
)  # fmt: skip
def test_parse_condition(spelling, expected):
    assert C.parse_condition(spelling) == expected


def test_parse_condition_rejects_unknown():
    with pytest.raises(ValueError, match="Unknown condition"):
        C.parse_condition("mixup")


def test_with_overrides_nested():
    cfg = C.with_overrides(
        C.smoke_preset("d", "w"), {"segmenter.network.base_filters": 16, "gan.stage1_steps": 7, "seeds": (3,)}
    )
    assert cfg.segmenter.network.base_filters == 16
    assert cfg.segmenter.network.depth == C.smoke_preset("d", "w").segmenter.network.depth
    assert cfg.gan.stage1_steps == 7 and cfg.seeds == (3,)


def test_with_overrides_rejects_unknown_field():
    with pytest.raises(ValueError, match="No field 'segmentr'"):
        C.with_overrides(C.smoke_preset("d", "w"), {"segmentr.steps": 3})


def test_config_rejects_mismatched_ndim():
    with pytest.raises(ValueError, match="same ndim"):
        C.with_overrides(C.smoke_preset("d", "w"), {"synth_shape": (16, 64, 64)})


def test_config_rejects_synth_shape_off_the_divisor():
    with pytest.raises(ValueError, match="synth_shape"):
        C.with_overrides(C.full_preset("d", "w"), {"synth_shape": (200, 200)})


def test_config_rejects_reserved_extra_eval_name():
    with pytest.raises(ValueError, match="extra_eval"):
        C.with_overrides(C.smoke_preset("d", "w"), {"extra_eval": (("test", "/x"),)})


def test_presets_differ_where_it_matters():
    full, smoke = C.full_preset("d", "w"), C.smoke_preset("d", "w")
    assert full.conditions == smoke.conditions == C.CONDITIONS
    assert smoke.segmenter.steps < full.segmenter.steps and smoke.n_synthetic < full.n_synthetic
    assert full.seeds == (0, 1, 2) and full.n_train == (20,)


def test_flags_override_the_preset():
    cfg = _parse(
        ["--preset=smoke", "--data_root=/data", "--workdir=/w", "--seg_steps=40", "--seg_eval_every=20",
         "--n_train=1,2", "--conditions=none,p+CycleGAN", "--extra_eval=held=/h", "--gan_filters=6"]
    )  # fmt: skip
    smoke = C.smoke_preset("/data", "/w")
    assert cfg.segmenter.steps == 40 and cfg.segmenter.eval_every == 20
    assert cfg.n_train == (1, 2) and cfg.conditions == ("none", "p+CycleGAN")
    assert cfg.extra_eval == (("held", "/h"),)
    assert cfg.gan.base_filters == 6
    assert cfg.segmenter.patch_shape == smoke.segmenter.patch_shape  # untouched: the preset's
    assert cfg.seeds == smoke.seeds


def test_ours_require_seed_is_a_setting_only_when_on():
    from nucgen_tf.experiments.runner import settings_record

    base = ["--preset=smoke", "--data_root=/data", "--workdir=/w"]
    off, on = _parse(base), _parse([*base, "--ours_require_seed"])
    assert not off.ours_require_seed and on.ours_require_seed
    assert "ours_require_seed" not in settings_record(off)  # older workdirs stay valid
    assert settings_record(on)["ours_require_seed"] is True


def test_ours_margin_is_a_setting_only_when_set():
    from nucgen_tf.experiments.runner import settings_record

    base = ["--preset=smoke", "--data_root=/data", "--workdir=/w"]
    off, on = _parse(base), _parse([*base, "--ours_margin=32"])
    assert off.ours_margin == 0 and on.ours_margin == 32
    assert "ours_margin" not in settings_record(off)  # older workdirs stay valid
    assert settings_record(on)["ours_margin"] == 32


def test_segmenter_schedule_is_a_setting_only_when_phased():
    from nucgen_tf.experiments.runner import settings_record

    base = ["--preset=smoke", "--data_root=/data", "--workdir=/w", "--seg_steps=40", "--seg_eval_every=20"]
    mixed = _parse(base)
    phased = _parse([*base, "--seg_schedule=pretrain_finetune", "--seg_pretrain_steps=20"])
    assert mixed.segmenter.schedule == "mixed" and mixed.segmenter.pretrain_steps == 0
    assert phased.segmenter.schedule == "pretrain_finetune" and phased.segmenter.pretrain_steps == 20
    assert "schedule" not in settings_record(mixed)["segmenter"]  # older workdirs stay valid
    assert settings_record(phased)["segmenter"]["pretrain_steps"] == 20
    stardist = _parse([*base, "--segmenter=stardist", "--seg_schedule=pretrain_finetune", "--seg_pretrain_steps=20"])
    assert stardist.stardist.schedule == "pretrain_finetune" and stardist.stardist.pretrain_steps == 20


def test_sensor_noise_is_on_by_default_and_a_setting_only_when_on():
    from nucgen_tf.experiments.runner import settings_record

    base = ["--preset=smoke", "--data_root=/data", "--workdir=/w"]
    on, off = _parse(base), _parse([*base, "--nosensor_noise"])
    assert on.sensor_noise and not off.sensor_noise
    assert settings_record(on)["sensor_noise"] is True
    assert "sensor_noise" not in settings_record(off)  # workdirs from before the sensor model


def test_flag_files_parse(tmp_path):
    for name, preset in (("smoke.flags", "smoke"), ("experiment.flags", "full")):
        cfg = _parse([f"--flagfile={REPO / 'configs' / 'bbbc039_2d' / name}"])
        assert cfg == C.preset(preset, cfg.data_root, cfg.workdir)
        assert cfg.data_root.endswith("shared/data/bbbc039")


def test_flags_reject_bad_extra_eval():
    with pytest.raises(Exception, match="NAME=DIR"):
        _parse(["--data_root=/d", "--workdir=/w", "--extra_eval=nodir"])


def test_flags_require_data_root():
    with pytest.raises(Exception, match="data_root"):
        _parse(["--workdir=/w"])


def _export(folder: pathlib.Path, weights: bytes) -> None:
    """A stand-in compact export: all that `content_hash` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nucgen_manifest.json").write_text("{}")
    (folder / "weights.npz").write_bytes(weights)


def _given_chain(tmp_path, folder="models"):
    """(config with `ours_models` = a stage1..3 folder, that folder)."""
    models = tmp_path / folder
    for stage in (1, 2, 3):
        _export(models / f"stage{stage}", f"stage {stage}".encode())
    config = C.with_overrides(C.smoke_preset("/data", str(tmp_path / "work")), {"ours_models": str(models)})
    return config, models


def _as_version_0(record: dict) -> dict:
    """A record as written before content hashes: generator folders by path, no version."""
    old = {k: v for k, v in record.items() if k not in ("config_version", "models", "model_paths")}
    for key in C.MODEL_FIELDS:
        old[key] = record.get("model_paths", {}).get(key)
    return old


def test_changed_generators_are_refused_naming_the_setting(tmp_path):
    config, models = _given_chain(tmp_path)
    runner.check_workdir(config)
    (models / "stage3" / "weights.npz").write_bytes(b"retrained")
    changed = r"experiment.json.*ours_models.stage3: 'sha256:\w+' -> 'sha256:\w+'"
    with pytest.raises(io.DataError, match=changed):
        runner.check_workdir(config)


def test_the_same_generators_in_another_folder_are_accepted(tmp_path):
    config, models = _given_chain(tmp_path)
    runner.check_workdir(config)
    path = tmp_path / "work" / runner.SETTINGS
    before = path.read_bytes()
    moved = tmp_path / "elsewhere" / "models"
    shutil.copytree(models, moved)
    shutil.rmtree(models)
    runner.check_workdir(C.with_overrides(config, {"ours_models": str(moved)}))
    assert path.read_bytes() == before


def test_migrate_brings_an_old_record_to_this_version():
    old = {
        "data_root": "/data",
        "gan": {"seed": 0, "seeds": to_dict(SeedConfig()), "spacing": [1.0, 2.0]},
        "models_dir": None,
        "ours_models": "/models",
        "rp2p_models": "/models/stage3",
        "sensor_noise": True,
    }
    migrated = C.migrate(old)
    assert migrated["config_version"] == C.CONFIG_VERSION
    assert migrated["models"] == {"ours_models": C.UNKNOWN_HASH, "rp2p_models": C.UNKNOWN_HASH}
    assert migrated["model_paths"] == {"ours_models": "/models", "rp2p_models": "/models/stage3"}
    assert not set(C.MODEL_FIELDS) & set(migrated)
    # Settings added later compare as absent at the value their absence means.
    assert migrated["gan"] == {"seed": 0, "spacing": [1.0, 2.0]} and migrated["sensor_noise"] is True
    assert old["ours_models"] == "/models" and "seeds" in old["gan"]  # the input is left as it was
    assert C.migrate(migrated) == migrated
    with pytest.raises(ValueError, match="config_version"):
        C.migrate({**migrated, "config_version": C.CONFIG_VERSION + 1})


def test_an_old_workdir_records_the_generator_hashes_on_its_first_rerun(tmp_path):
    config, models = _given_chain(tmp_path)
    record = runner.settings_record(config)
    path = tmp_path / "work" / runner.SETTINGS
    io.write_json(path, _as_version_0(record))
    moved = C.with_overrides(config, {"ours_models": str(tmp_path / "other")})
    _given_chain(tmp_path, "other")
    with pytest.raises(io.DataError, match=r"experiment.json.*ours_models: '.*models' -> '.*other'"):
        runner.check_workdir(moved)  # unknown content: the old rule, by folder
    runner.check_workdir(config)
    saved = json.loads(path.read_text())
    assert saved == record and saved["models"]["ours_models"]["stage1"].startswith("sha256:")
    (models / "stage1" / "weights.npz").write_bytes(b"retrained")
    with pytest.raises(io.DataError, match=r"ours_models.stage1: 'sha256:"):
        runner.check_workdir(config)
