"""Issue 7, "3D end to end": the 3D smoke preset runs all stages and the experiment end to end.

One module fixture (about 2 minutes on 2 busy cores) builds a tiny phantom3d set (2 train, 1
val, 1 test volumes of 16x32x32, Z spacing 2), trains the three GAN stages in 3D for 2 steps
with the experiment's own stage configs (`GanSettings.stage_config`, tiny networks) plus a 3D
seed arrangement, exports them, and runs `configs/phantom_3d/smoke.flags` (every condition:
none, p+CycleGAN, r+p2p, ours) with `--models_dir` set to those exports. "ours" synthesizes
its volumes with exactly those generators through `nucgen synthesize`'s code path; the
tests below check those volumes, the baselines' 3D data and the report. The k-terminal cut
on voxels (a touching 3D pair split into two instances by `decode_colored_mask`, which the
synthesis path calls) is tested in tests/postprocess/test_decode.py
(`test_decode_colored_mask_cuts_same_color_touching_nuclei`, its 3D cases).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from nucgen_tf import geometry, io, phantoms
from nucgen_tf.commands import experiment as experiment_command
from nucgen_tf.config import SeedConfig
from nucgen_tf.experiments import runner
from nucgen_tf.experiments.config import CONDITIONS, SLUGS
from nucgen_tf.recipes import phantom3d

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
PRESETS = REPO / "configs" / "phantom_3d"
SHAPE = (16, 32, 32)
SPACING = (2.0, 1.0, 1.0)
TINY = phantoms.PhantomConfig(shape=SHAPE, spacing=SPACING, n_nuclei=3, radius=(5.0, 6.0))
# ~6 seeds per 16x32x32 volume (3 nuclei in the real ones): a tiny canvas needs a higher
# density than the 0.2 per 10,000 physical units of configs/phantom_3d.
SEEDS = SeedConfig(density=2.0, cluster_radius=6.0, sparse_min_distance=12.0, crowded_min_distance=8.0)


def _experiment_flags(*argv: str):
    fv = flags.FlagValues()
    experiment_command.define_flags(fv)
    fv(["augmentation", *argv])
    return experiment_command.config_from_flags(fv)


@pytest.fixture(scope="module")
def smoke3d(tmp_path_factory):
    import keras

    from nucgen_tf.trainers import stages

    root = tmp_path_factory.mktemp("smoke3d")
    phantom3d.generate(
        root / "data", snr="high", seed=3, n_train=2, n_val=1, n_test=1, config=TINY, progress=False
    )
    config = _experiment_flags(
        f"--flagfile={PRESETS / 'smoke.flags'}",
        f"--data_root={root / 'data' / 'high'}",
        f"--workdir={root / 'work'}",
        f"--models_dir={root / 'models'}",
    )
    exports = {}
    for stage in (1, 2, 3):
        cfg = dataclasses.replace(
            config.gan.stage_config(stage, str(root / "data" / "high" / "train")),
            seeds=SEEDS,
            spacing=SPACING,
        )
        exports[stage] = stages.train(cfg, root / "gans" / f"stage{stage}", root / "models" / f"stage{stage}")
        keras.backend.clear_session()
    document = runner.run_experiment(config)
    return config, exports, document


def test_smoke_flags_make_a_3d_experiment(smoke3d):
    config, _, _ = smoke3d
    assert config.ndim == 3 and config.gan.ndim == 3
    assert config.synth_shape == SHAPE and config.gan.patch_shape == SHAPE
    assert config.conditions == CONDITIONS and config.n_train == (2,)


def test_stages_export_3d_generators(smoke3d):
    _, exports, _ = smoke3d
    channels = {1: (1, 1), 2: (3, 4), 3: (4, 1)}
    for stage, folder in exports.items():
        manifest = json.loads((folder / "nucgen_manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["ndim"] == 3 and manifest["step"] == 2
        assert (manifest["input"]["channels"], manifest["output"]["channels"]) == channels[stage]
        assert manifest["divisor"] == [4, 4, 4] and manifest["patch_shape"] == list(SHAPE)
    stage1 = json.loads((exports[1] / "nucgen_manifest.json").read_text())["config"]
    assert stage1["spacing"] == list(SPACING) and stage1["seeds"]["density"] == SEEDS.density


def test_ours_synthesizes_aligned_3d_volumes(smoke3d):
    from nucgen_tf.synthesis import models, sampling
    from nucgen_tf.synthesis.pipeline import ChainSettings, run_stage, to_intensity

    config, exports, _ = smoke3d
    folder = pathlib.Path(config.workdir) / "synthetic" / "n2" / "ours"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["summary"]["samples"] == config.n_synthetic and manifest["summary"]["complete"]
    generators = models.load_generators(exports[1].parent)
    pairs = io.list_pairs(folder)
    assert [p.name for p in pairs] == ["sample_000000", "sample_000001"]
    for index, pair in enumerate(pairs):
        record = manifest["samples"][pair.name]
        assert record["counts"]["seeds"] > 0
        image, labels = io.read_pair(pair, ndim=3)
        assert image.shape == labels.shape == SHAPE and image.dtype == np.uint16
        ids = np.unique(labels)
        np.testing.assert_array_equal(ids[ids > 0], np.arange(1, labels.max() + 1))  # consecutive
        assert record["counts"]["instances"] == labels.max()
        # Aligned: the image is stage 3 applied to exactly the saved labels (recolored with the
        # sample's own stream), voxel for voxel.
        rng = sampling.sample_rngs(config.gan.seed, index)["colors_stage3"]
        graph = geometry.color_graph(
            geometry.boxes_from_labels(labels), labels, generators.render3.color_margin
        )
        lut = geometry.color_lut(geometry.assign_colors(graph, rng=rng), int(labels.max()) + 1)
        rendered = geometry.render_colored_mask(labels, lut, generators.render3.boundary_width)
        np.testing.assert_array_equal(rendered[..., :3].any(-1), labels > 0)
        y = run_stage(generators.stages[3], rendered[None], ChainSettings(tile=(1024,), overlap=(64,)))
        clean = to_intensity(y[0, ..., 0], generators)
        if generators.sensor is not None:  # the camera fitted to the training volumes, as synthesis adds it
            clean = generators.sensor.apply(clean, sampling.sample_rngs(config.gan.seed, index)["sensor"])
        np.testing.assert_array_equal(clean, image)


def test_baselines_make_3d_data_fitted_to_the_anisotropic_masks(smoke3d):
    config, _, _ = smoke3d
    work = pathlib.Path(config.workdir)
    for condition in ("p+CycleGAN", "r+p2p"):
        folder = work / "synthetic" / "n2" / SLUGS[condition]
        pairs = io.list_pairs(folder)
        assert len(pairs) == config.n_synthetic
        total = 0
        for pair in pairs:
            image, labels = io.read_pair(pair, ndim=3)
            assert image.shape == labels.shape == SHAPE and image.dtype == np.uint16
            ids = np.unique(labels)
            np.testing.assert_array_equal(ids[ids > 0], np.arange(1, labels.max() + 1))
            total += int(labels.max())
        assert total > 0  # real masks (r+p2p) and fitted polygons (p+CycleGAN) are never empty
    # Parametric nuclei are fitted to the real ones, flattened along Z by the spacing of 2.
    polygons = json.loads((work / "gans" / "n2" / "pcyclegan" / "polygons.json").read_text())
    assert polygons["shape"] == list(SHAPE)
    assert polygons["spacing"][0] == pytest.approx(2.0, rel=0.2)
    assert polygons["spacing"][1:] == [pytest.approx(1.0, abs=0.1), 1.0]


def test_report_has_finite_figures_for_every_condition(smoke3d):
    config, _, document = smoke3d
    report = pathlib.Path(config.workdir) / "report"
    saved = json.loads((report / "results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(document["summary"]))
    row = saved["summary"]["test"]["2"]
    assert set(row) == set(CONDITIONS)
    for condition in CONDITIONS:
        for metric in ("pixel_f1", "instance_f1", "object_f1"):
            stat = row[condition][metric]
            assert stat["n"] == 1 and math.isfinite(stat["mean"]) and 0.0 <= stat["mean"] <= 1.0
    cells = saved["cells"]
    assert [c["condition"] for c in cells] == list(CONDITIONS)
    for cell in cells:
        test = cell["evals"]["test"]
        assert test["n_images"] == 1 and test["n_true"] == TINY.n_nuclei
    table = (report / "table.md").read_text()
    assert all(f"| {condition} | " in table for condition in CONDITIONS) and "not run" not in table
    assert (report / "bars.png").stat().st_size > 1000


def test_experiment_presets_parse_to_3d_configs():
    for snr in ("high", "low"):
        config = _experiment_flags(f"--flagfile={PRESETS / f'experiment_{snr}.flags'}")
        assert config.ndim == 3 and config.data_root.endswith(f"phantom_3d/data/{snr}")
        assert config.synth_shape == (32, 128, 128) and config.gan.patch_shape == (32, 64, 64)
        assert config.n_train == (12,) and config.conditions == CONDITIONS
        assert config.models_dir.endswith(f"phantom_3d/{snr}/models")


def test_stage_presets_parse_to_3d_stage_configs():
    """Each flag file through the trainers' own flag parsing (a subprocess: absl's global flags)."""
    script = (
        "import json, sys\n"
        "from absl import flags\n"
        "from nucgen_tf.commands import flagsets\n"
        "flagsets.define_stage_flags()\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    flags.FLAGS.unparse_flags()\n"
        "    flags.FLAGS(['stage', f'--flagfile={name}'])\n"
        "    cfg = flagsets.stage_config_from_flags()\n"
        "    out[name] = [cfg.stage, cfg.ndim, list(cfg.patch.patch_shape), list(cfg.spacing),\n"
        "                 cfg.seeds.density, cfg.train.steps, cfg.data]\n"
        "print(json.dumps(out))\n"
    )
    names = ["stage1.flags", "stage2.flags", "stage3.flags", "stage3_low.flags"]
    result = subprocess.run(
        [sys.executable, "-c", script, *(str(PRESETS / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    for name, stage in zip(names, (1, 2, 3, 3)):
        got_stage, ndim, patch, spacing, density, steps, data = parsed[str(PRESETS / name)]
        assert (got_stage, ndim, patch, spacing) == (stage, 3, [32, 64, 64], [2.0, 1.0, 1.0])
        assert density == 0.2 and steps >= 1000
        assert data.endswith("data/low/train" if "low" in name else "data/high/train")
