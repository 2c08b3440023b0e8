"""The stage trainers' command line: per-level strides (anisotropic 3D stacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from absl import app

from nucgen_tf.commands import flagsets


def test_parse_strides():
    assert flagsets.parse_strides([]) == ()
    assert flagsets.parse_strides(["1x2x2", "2", " 2 "]) == ((1, 2, 2), 2, 2)
    with pytest.raises(app.UsageError, match=r"--d_strides takes one entry per level.*Received: 1x2xa"):
        flagsets.parse_strides(["1x2xa"], "d_strides")


def _parse(*command_lines: tuple[str, ...]) -> list[dict]:
    """Stage flags -> the StageConfig's network strides and realism checks, per command line (one subprocess:
    absl's flags are global)."""
    script = (
        "import dataclasses, json, sys\n"
        "from absl import flags\n"
        "from nucgen_tf.commands import flagsets\n"
        "flagsets.define_stage_flags()\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    flags.FLAGS.unparse_flags()\n"
        "    flags.FLAGS(['stage', '--stage=1', '--data=d', '--workdir=w', '--depth=3', *argv])\n"
        "    try:\n"
        "        cfg = flagsets.stage_config_from_flags()\n"
        "        print(json.dumps({'g': cfg.generator.strides, 'd': cfg.discriminator.strides,\n"
        "                          'stage': cfg.stage,\n"
        "                          'generator': dataclasses.asdict(cfg.generator),\n"
        "                          'eval': dataclasses.asdict(cfg.evaluation),\n"
        "                          'd_scales': cfg.discriminator.scales,\n"
        "                          'render': dataclasses.asdict(cfg.render),\n"
        "                          'loss': dataclasses.asdict(cfg.loss)}))\n"
        "    except ValueError as error:\n"
        "        print(json.dumps({'error': str(error)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(command_lines)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.strip().splitlines()[-len(command_lines) :]]


def test_strides_flags_let_a_thin_stack_train():
    # 4 slices cannot be halved 3 times; keeping Z at the first level makes the patch valid.
    plain, strided = _parse(
        ("--patch=4,32,32",),
        ("--patch=4,32,32", "--strides=1x2x2,2,2", "--d_layers=2", "--d_strides=1x2x2,2"),
    )
    assert "must be divisible by 8" in plain["error"]
    assert {k: strided[k] for k in "gd"} == {"g": [[1, 2, 2], 2, 2], "d": [[1, 2, 2], 2]}


def test_realism_check_and_oriented_boxes_flags():
    from nucgen_tf.config import RenderConfig, from_dict

    default, on, no_data, oriented = _parse(
        (),
        ("--eval_every=500", "--eval_data=val", "--eval_crop=128", "--export_checkpoint=latest"),
        ("--eval_every=500",),
        ("--oriented_boxes",),
    )
    assert default["render"]["oriented"] is False and oriented["render"]["oriented"] is True
    # A manifest written before the field existed reads as the paper's axis-aligned boxes.
    assert from_dict(RenderConfig, {"bv": 0.25, "seed_radius": 1.5}).oriented is False
    assert default["eval"] == {"every": 0, "data": "", "crop": 256, "export_checkpoint": "best"}
    assert on["eval"] == {"every": 500, "data": "val", "crop": 128, "export_checkpoint": "latest"}
    assert "Realism checks need `data`" in no_data["error"]


def test_discriminator_option_flags():
    default, on, stage1_fm, bad = _parse(
        ("--stage=3",),
        ("--stage=3", "--d_scales=2", "--lambda_fm=10", "--diff_augment=cutout,translation", "--r1_gamma=.5"),
        ("--lambda_fm=1",),
        ("--diff_augment=blur",),
    )
    assert default["d_scales"] == 1
    assert {k: default["loss"][k] for k in ("lambda_feature_matching", "diff_augment", "r1_gamma")} == {
        "lambda_feature_matching": 0.0, "diff_augment": [], "r1_gamma": 0.0
    }  # fmt: skip
    assert on["d_scales"] == 2
    assert {k: on["loss"][k] for k in ("lambda_feature_matching", "diff_augment", "r1_gamma")} == {
        "lambda_feature_matching": 10.0, "diff_augment": ["translation", "cutout"], "r1_gamma": 0.5
    }  # fmt: skip
    assert "stage-3 (pix2pix) option" in stage1_fm["error"]
    assert "diff_augment" in bad["error"]


def test_generator_architecture_flags():
    flags = ("--stage=3", "--generator=pix2pix", "--depth=5", "--patch=64,64", "--dropout=0.5")
    resnet_flags = ("--stage=1", "--generator=resnet", "--depth=2", "--patch=64,64", "--n_residual_blocks=9")
    default, pix2pix, resnet = _parse((), (*flags, "--noise_channels=1", "--max_filters=64"), resnet_flags)
    assert default["generator"]["architecture"] == "unet3x3" and default["generator"]["kernel_size"] == 3
    assert default["generator"]["noise_channels"] == 0 and default["generator"]["dropout"] == 0.0
    names = ("architecture", "kernel_size", "dropout", "noise_channels")
    assert [pix2pix["generator"][k] for k in names] == ["pix2pix", 4, 0.5, 1]
    assert default["generator"]["max_filters"] == 256 and pix2pix["generator"]["max_filters"] == 64
    # kernel_size=None resolves to the chosen architecture's (3 for resnet).
    assert [resnet["generator"][k] for k in ("architecture", "kernel_size", "depth")] == ["resnet", 3, 2]
    assert resnet["generator"]["n_residual_blocks"] == 9 and default["generator"]["n_residual_blocks"] == 6


def test_stage_flag_takes_the_stage_table_rows():
    one, baseline = _parse((), ("--stage=p+CycleGAN",))
    assert one["stage"] == 1 and baseline["stage"] == "p+CycleGAN"  # ints stay ints, as configs expect
    script = (
        "from absl import flags\n"
        "from nucgen_tf.commands import flagsets\n"
        "flagsets.define_stage_flags()\n"
        "flags.FLAGS(['x', '--stage=4'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "p+CycleGAN" in result.stderr  # the allowed rows are named
