"""The p + CycleGAN baseline is a row of the stage table: it gets every engine option of the stages."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nucgen_tf import io
from nucgen_tf.config import PatchConfig
from nucgen_tf.experiments import baselines
from nucgen_tf.exported.manifest import read_manifest
from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.synthesis.models import load_image_stage
from nucgen_tf.trainers import realism_eval, stages
from nucgen_tf.trainers.config import POLYGON_CYCLEGAN, EvalConfig, StageConfig, TrainConfig
from tests.conftest import _require


def _tiny_pcyclegan(data: str, eval_data: str, steps: int) -> StageConfig:
    # Options the old p+CycleGAN trainer (`baselines.train_polygon_cyclegan`) ignored: realism
    # checks with checkpoint selection and `max_files`; with the pix2pix U-Net and DiffAugment.
    return StageConfig(
        stage=POLYGON_CYCLEGAN,
        data=data,
        patch=PatchConfig(patch_shape=(64, 64), batch_size=1),
        train=TrainConfig(steps=steps, log_every=1, image_every=2, checkpoint_every=2),
        generator=GeneratorConfig(architecture="pix2pix", base_filters=8, depth=2),
        discriminator=DiscriminatorConfig(base_filters=8, n_layers=2),
        loss=GanLossConfig(diff_augment=("translation", "cutout")),
        max_files=2,
        evaluation=EvalConfig(every=2, data=eval_data, crop=64),
    )


def test_pcyclegan_row_takes_engine_options_resumes_and_paints(tmp_path, data_root, bbbc039_train):
    val = _require(data_root / "bbbc039" / "val")
    workdir = tmp_path / "run"
    cfg = _tiny_pcyclegan(str(bbbc039_train), str(val), steps=2)
    target = stages.train(cfg, workdir, tmp_path / "pcyclegan")
    manifest = read_manifest(target)
    assert manifest["stage"] == POLYGON_CYCLEGAN and manifest["step"] <= 2
    assert (manifest["input"]["channels"], manifest["output"]["channels"]) == (4, 1)
    assert manifest["config"]["generator"]["architecture"] == "pix2pix"
    assert manifest["config"]["loss"]["diff_augment"] == ["translation", "cutout"]
    assert manifest["intensity_stats"]["num_images"] == 2  # max_files reaches the baseline
    assert manifest["selected"]["trained_steps"] == 2  # checked by realism, the export selected
    assert "sensor" not in manifest  # (as before: the baseline paints without a camera)
    polygons = json.loads((workdir / "polygons.json").read_text())
    assert manifest["polygons"] == polygons and polygons["shape"] == [64, 64]
    assert list((workdir / "panels").glob("p_cyclegan_*.png"))
    assert [json.loads(line)["step"] for line in (workdir / realism_eval.LOG).read_text().splitlines()] == [2]

    # Resumed from its checkpoint (a fresh run would check step 2 again).
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4))
    manifest = read_manifest(stages.train(more, workdir, tmp_path / "pcyclegan"))
    steps = [json.loads(line)["step"] for line in (workdir / realism_eval.LOG).read_text().splitlines()]
    assert steps == [2, 4] and manifest["selected"]["trained_steps"] == 4
    assert (workdir / "checkpoints" / "ckpt-4.index").is_file()

    # The experiment's p+CycleGAN condition paints new parametric masks with the export.
    assert load_image_stage(target, stage=POLYGON_CYCLEGAN).sensor is None
    out = baselines.generate_polygon_cyclegan(target, tmp_path / "synthetic", 1, (64, 64), seed=1)
    (pair,) = io.list_pairs(out)
    image, labels = io.read_pair(pair)
    assert image.shape == labels.shape == (64, 64)


def test_pcyclegan_row_refuses_pix2pix_only_options():
    cfg = StageConfig(stage=POLYGON_CYCLEGAN, data="unused", patch=PatchConfig(patch_shape=(64, 64)))
    with pytest.raises(ValueError, match="stage=p\\+CycleGAN, noise_channels=1"):
        dataclasses.replace(cfg, generator=GeneratorConfig(noise_channels=1))


def test_the_synthesis_chain_holds_the_paper_stages_only():
    assert list(stages.STAGES) == [1, 2, 3]
    assert stages.TABLE[POLYGON_CYCLEGAN].domains == stages.STAGES[3].domains  # a mask -> image generator
