"""Synthetic patches mixed in, or first alone then real only: sampling, learning rate, selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nucgen_tf import io
from nucgen_tf.models.segmenters import SegmenterConfig
from nucgen_tf.segment import schedule, training
from nucgen_tf.segment.config import SegmentTrainConfig
from nucgen_tf.segment.stardist import data as sdf
from nucgen_tf.segment.stardist.config import StardistTrainConfig
from tests.helpers import write_disc_pairs

TINY = SegmenterConfig(base_filters=4, depth=2)


def _phased(**overrides) -> SegmentTrainConfig:
    values = dict(
        network=TINY, patch_shape=(8, 8), batch_size=4, steps=6, eval_every=2,
        schedule="pretrain_finetune", pretrain_steps=4,
    )  # fmt: skip
    return SegmentTrainConfig(**{**values, **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pretrain_steps": 0}, "multiple of `eval_every` in \\(0, steps\\)"),
        ({"pretrain_steps": 6}, "in \\(0, steps\\)"),
        ({"pretrain_steps": 3}, "multiple of `eval_every`"),
        ({"schedule": "mixed"}, "needs schedule='pretrain_finetune'"),
        ({"schedule": "warmup"}, "`schedule` must be one of"),
    ],
)
def test_bad_schedules_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        _phased(**overrides)
    with pytest.raises(ValueError, match=message):  # the StarDist family shares the check
        values = {"schedule": "pretrain_finetune", "pretrain_steps": 4, **overrides}
        StardistTrainConfig(patch_shape=(32, 32), steps=6, eval_every=2, **values)


def test_unet_patches_are_synthetic_then_real():
    real = training.ImageSet(["r"], [np.full((16, 16), -1, np.float32)], [np.zeros((16, 16), np.uint8)])
    extra = training.ImageSet(["e"], [np.full((16, 16), 1, np.float32)], [np.ones((16, 16), np.uint8)])
    config = _phased(extra_fraction=0.5)  # the fraction plays no part in a phased run
    steps = [b[0].numpy()[:, 0, 0, 0] for b in training.patch_dataset(real, extra, config).take(6)]
    assert [bool(np.all(s > 0)) for s in steps] == [True] * 4 + [False] * 2
    assert np.all(steps[4] < 0) and np.all(steps[5] < 0)
    resumed = next(iter(training.patch_dataset(real, extra, config, start=4 * config.batch_size)))
    assert np.all(resumed[0].numpy() < 0)  # a run resumed after the switch draws real patches


def test_stardist_patches_are_synthetic_then_real():
    config = StardistTrainConfig(
        patch_shape=(32, 32), batch_size=3, steps=6, eval_every=2, schedule="pretrain_finetune", pretrain_steps=4
    )
    real = sdf.LabeledImages(["r"], [np.zeros((40, 40), np.float32)], [np.zeros((40, 40), np.int32)])
    extra = sdf.LabeledImages(["e"], [np.ones((40, 40), np.float32)], [np.ones((40, 40), np.int32)])
    means = [sdf.sample_batch(real, extra, config, step)[0].mean() for step in range(6)]
    assert means == [1.0] * 4 + [0.0] * 2


def test_learning_rate_restarts_at_the_switch():
    config = _phased(steps=8, pretrain_steps=4, lr=1e-3, lr_final_fraction=0.0)
    rate = schedule.learning_rate(config)
    values = [float(rate(s)) for s in range(9)]
    assert values[0] == pytest.approx(1e-3) and values[4] == pytest.approx(1e-3)  # a warm restart
    assert values[2] == pytest.approx(0.5e-3) and values[6] == pytest.approx(0.5e-3)
    assert values[8] == pytest.approx(0.0, abs=1e-9)
    mixed = schedule.learning_rate(SegmentTrainConfig(network=TINY, patch_shape=(8, 8), steps=8, eval_every=2))
    assert float(mixed(4)) == pytest.approx(0.5 * (1e-3 + 0.02e-3))  # one cosine, as before


def test_only_finetuned_models_are_selected(tmp_path):
    """A 6-step run, 4 of them on synthetic nuclei, then 2 on real fields without any, validated
    on nuclei: the pretrained rounds score at least as well, yet the saved model is the
    fine-tuned one. Without synthetic folders the schedule is refused."""
    real = write_disc_pairs(tmp_path / "real", range(2), (48, 48), 16, keep=0.0)
    synthetic = write_disc_pairs(tmp_path / "synthetic", range(10, 12), (48, 48), 16, keep=0.6)
    config = _phased(patch_shape=(32, 32), batch_size=2, precision="float32")
    out = training.train_segmenter([real], synthetic, tmp_path / "model", config, extra_dirs=[synthetic])
    saved = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in saved["history"]] == [2, 4, 6]
    assert saved["best"]["step"] == 6
    assert schedule.selectable(config, 6) and not schedule.selectable(config, 4)
    with pytest.raises(io.DataError, match="needs extra"):
        training.train_segmenter([real], real, tmp_path / "alone", config)


def test_old_stardist_run_records_still_match():
    mixed = {"steps": 4, "schedule": "mixed", "pretrain_steps": 0}
    assert schedule.record_without_defaults(mixed) == {"steps": 4}
    phased = {"steps": 4, "schedule": "pretrain_finetune", "pretrain_steps": 2}
    assert schedule.record_without_defaults(phased) == phased


def test_segment_command_flags_reach_both_families():
    from absl import flags

    from nucgen_tf.commands import flagsets

    fv = flags.FlagValues()
    flagsets.define_segment_flags(fv)
    fv(["segment", "--steps=40", "--eval_every=10", "--schedule=pretrain_finetune", "--pretrain_steps=20"])
    unet = flagsets.segment_train_config_from_flags(fv)
    stardist = flagsets.stardist_config_from_flags(fv)
    assert (unet.schedule, unet.pretrain_steps) == ("pretrain_finetune", 20)
    assert (stardist.schedule, stardist.pretrain_steps) == ("pretrain_finetune", 20)
