"""The "fitted" seed arrangement: fit to real masks, draw, save/load, and `nucgen synthesize` with it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import spatial

from nucgen_tf import geometry, io
from nucgen_tf.config import SeedConfig
from nucgen_tf.realism.shapes import nearest_neighbour_distances
from nucgen_tf.synthesis import arrangement_fit, sampling
from nucgen_tf.synthesis import run as synth
from nucgen_tf.synthesis.arrangement_fit import FittedArrangement
from nucgen_tf.synthesis.models import seed_geometry
from nucgen_tf.synthesis.options import SynthesisOptions
from tests import tiny_generators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CANVAS = (256, 256)


@pytest.fixture(scope="module")
def real_fit(bbbc039_train) -> FittedArrangement:
    return arrangement_fit.fit_arrangement(bbbc039_train)


def _options(models, out, **kw) -> SynthesisOptions:
    return SynthesisOptions(models=str(models), out=str(out), **{"n": 1, "previews": False, **kw})


def test_fit_of_the_real_train_masks_lies_in_their_ranges(real_fit, bbbc039_train):
    masks = [io.read_labels(p) for p in sorted((bbbc039_train / "masks").glob("*.tif"))]
    counts = np.asarray([len(np.unique(m)) - 1 for m in masks])
    densities = counts / np.asarray([m.size for m in masks]) * 1e4
    raw_nn = np.concatenate([nearest_neighbour_distances(m) for m in masks])
    assert (real_fit.ndim, real_fit.fields, real_fit.nuclei) == (2, len(masks), counts.sum())
    assert real_fit.density_quantiles[0] == pytest.approx(min(densities), abs=1e-4)
    assert real_fit.density_quantiles[-1] == pytest.approx(max(densities), abs=1e-4)
    assert 2.5 < real_fit.density_quantiles[10] < 5.0  # median nuclei per 10,000 px
    # Edge correction drops only a few nuclei: the median stays near the plain one (34 px).
    assert real_fit.nn_median == pytest.approx(np.median(raw_nn), rel=0.05)
    assert np.quantile(raw_nn, 0.001) < real_fit.hard_core < np.quantile(raw_nn, 0.05)
    # Real nuclei spread more evenly than Poisson points (R > 1), so the knob inhibits.
    assert 1.1 < real_fit.clark_evans < 1.5 and real_fit.interaction > 0


def test_fitted_seeds_reproduce_the_fitted_statistics(real_fit):
    rng = np.random.default_rng(0)
    drawn = [
        (sampling.draw_seeds("fitted", CANVAS, rng, SeedConfig(), fit=real_fit)[1], CANVAS) for _ in range(50)
    ]
    stats = arrangement_fit.arrangement_statistics(drawn)
    assert stats.nn_quantile(0.5) == pytest.approx(real_fit.nn_median, rel=0.15)
    for p in (0.25, 0.5, 0.75):  # quartiles: a decile of 50 fields is mostly sampling noise
        assert stats.density_quantile(p) == pytest.approx(
            np.interp(p, real_fit.levels, real_fit.density_quantiles), rel=0.2
        )
    assert abs(stats.clark_evans - real_fit.clark_evans) < 0.1
    assert (
        min(spatial.distance.pdist(points).min() for points, _ in drawn if len(points) > 1)
        >= real_fit.hard_core
    )


def test_fitted_seeds_are_deterministic_for_a_seed(real_fit):
    def draw(seed):
        return sampling.draw_seeds(
            "fitted", CANVAS, sampling.sample_rngs(seed, 3)["seeds"], SeedConfig(), fit=real_fit
        )

    kind, first = draw(0)
    assert kind == "fitted" and len(first) > 0
    np.testing.assert_array_equal(first, draw(0)[1])
    assert not np.array_equal(first, draw(1)[1])


def test_fit_is_deterministic_and_survives_json(real_fit, bbbc039_train, tmp_path):
    arrangement_fit.save_fit(tmp_path / "fit.json", real_fit)
    assert arrangement_fit.load_fit(tmp_path / "fit.json") == real_fit
    assert FittedArrangement.from_dict(json.loads(json.dumps(real_fit.to_dict()))) == real_fit
    assert arrangement_fit.load_or_fit(data=bbbc039_train) == real_fit


def test_3d_masks_fit_and_draw_with_physical_spacing(tmp_path):
    spacing = (2.0, 1.0, 1.0)
    shape = (24, 64, 64)
    grid = np.indices(shape).transpose(1, 2, 3, 0) * np.asarray(spacing)
    for k in range(4):
        centres = geometry.hard_core_seeds(shape, 2.0, 12.0, np.random.default_rng(k), spacing=spacing)
        labels = np.zeros(shape, np.uint16)
        for i, centre in enumerate(centres * np.asarray(spacing), start=1):
            labels[np.sum((grid - centre) ** 2, axis=-1) <= 2.5**2] = i
        io.write_labels(tmp_path / f"field{k}.tif", labels)
    fit = arrangement_fit.fit_arrangement(tmp_path, spacing=spacing)
    assert fit.ndim == 3 and fit.spacing == spacing and fit.fields == 4
    # The centres' physical hard core of 12, less what the pixel grid and the edge shift centroids.
    assert 10.0 <= fit.hard_core <= 14.0 and fit.density_quantiles[10] == pytest.approx(2.0, rel=0.2)
    seeds = fit.draw(shape, np.random.default_rng(0), spacing=spacing)
    assert seeds.shape[1] == 3 and len(seeds) > 5
    assert spatial.distance.pdist(seeds * np.asarray(spacing)).min() >= fit.hard_core
    assert spatial.distance.pdist(seeds).min() < fit.hard_core  # only physical distance counts


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not a JSON arrangement fit"),
        ('{"ndim": 2}', "not a valid arrangement fit: Keys must be"),
        ("[1, 2]", "not a valid arrangement fit: A fit must be a JSON object"),
    ],
)
def test_a_bad_fit_file_is_one_message_naming_it(tmp_path, content, problem):
    path = tmp_path / "fit.json"
    path.write_text(content)
    with pytest.raises(io.DataError, match=f"^{path}: {problem}"):
        arrangement_fit.load_fit(path)


def test_a_fit_with_bad_values_is_named(real_fit, tmp_path):
    values = {**real_fit.to_dict(), "interaction": 3.0}
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(values))
    with pytest.raises(io.DataError, match=f"^{path}: not a valid arrangement fit: .*interaction=3.0"):
        arrangement_fit.load_fit(path)


def test_fitted_takes_at_most_one_source_and_needs_a_fit():
    assert SynthesisOptions(models="m", out="o", n=1).arrangement == "fitted"  # the default
    with pytest.raises(ValueError, match="takes one of `arrangement_data`"):
        SynthesisOptions(models="m", out="o", n=1, arrangement_data="masks", arrangement_fit="fit.json")
    with pytest.raises(ValueError, match="only apply to `arrangement='fitted'`"):
        SynthesisOptions(models="m", out="o", n=1, arrangement="mixed", arrangement_fit="fit.json")
    with pytest.raises(ValueError, match="needs `fit`"):
        sampling.draw_seeds("fitted", CANVAS, np.random.default_rng(0), SeedConfig())


def test_a_bad_fit_file_is_refused_before_loading_models(tiny, tmp_path, monkeypatch):
    folder, _ = tiny
    path = tmp_path / "fit.json"
    path.write_text("{not json")

    def no_loading(_):
        raise AssertionError("models were loaded before --arrangement_fit was checked")

    monkeypatch.setattr(synth, "load_generators", no_loading)
    with pytest.raises(io.DataError, match=f"^{path}: not a JSON arrangement fit"):
        synth.synthesize(_options(folder, tmp_path / "out", arrangement="fitted", arrangement_fit=str(path)))
    assert not (tmp_path / "out").exists()


def test_a_masks_folder_without_masks_is_refused(tiny, tmp_path):
    folder, chain = tiny
    with pytest.raises(io.DataError, match=f"^{tmp_path / 'empty'}: folder not found"):
        synth.synthesize(
            _options(
                folder, tmp_path / "out", arrangement="fitted", arrangement_data=str(tmp_path / "empty")
            ),
            chain,
        )


def test_the_fit_is_recorded_and_a_rerun_with_another_fit_is_refused(real_fit, tiny, tmp_path):
    folder, chain = tiny
    first, other = tmp_path / "a.json", tmp_path / "b.json"
    arrangement_fit.save_fit(first, real_fit)
    arrangement_fit.save_fit(other, dataclasses.replace(real_fit, clark_evans=1.0, interaction=0.0))
    out = tmp_path / "out"
    manifest = synth.synthesize(
        _options(folder, out, arrangement="fitted", arrangement_fit=str(first)), chain
    )
    assert manifest["settings"]["arrangement_fit"] == real_fit.to_dict()
    assert manifest["samples"]["sample_000000"]["arrangement"] == "fitted"
    again = synth.synthesize(_options(folder, out, arrangement="fitted", arrangement_fit=str(first)), chain)
    assert again["run"]["skipped"] == 1
    with pytest.raises(io.DataError, match="other settings .*arrangement_fit"):
        synth.synthesize(_options(folder, out, arrangement="fitted", arrangement_fit=str(other)), chain)


def test_masks_given_at_synthesis_are_fitted_at_the_models_spacing(real_fit, bbbc039_train, tiny, tmp_path):
    folder, chain = tiny
    assert seed_geometry(folder) == (2, None)  # what a run without preloaded models fits with
    options = _options(folder, tmp_path / "out", arrangement="fitted", arrangement_data=str(bbbc039_train))
    assert synth.synthesize(options, chain)["settings"]["arrangement_fit"] == real_fit.to_dict()


def test_other_arrangements_record_no_fit(tiny, tmp_path):
    folder, chain = tiny
    manifest = synth.synthesize(_options(folder, tmp_path / "out", arrangement="mixed"), chain)
    assert "arrangement_fit" not in manifest["settings"]
    assert manifest["settings"]["arrangement"] == "mixed"


def test_the_default_draws_from_the_fit_stage1_recorded(real_fit, tmp_path):
    folder = tmp_path / "models"
    tiny_generators.export_untrained_models(folder, (32, 32), base_filters=4, depth=2)
    manifest_path = folder / "stage1" / "nucgen_manifest.json"
    io.write_json(manifest_path, {**json.loads(manifest_path.read_text()), "arrangement_fit": real_fit.to_dict()})
    manifest = synth.synthesize(_options(folder, tmp_path / "out", shape=CANVAS))
    assert manifest["settings"]["arrangement"] == "fitted"
    assert manifest["settings"]["arrangement_fit"] == real_fit.to_dict()
    assert manifest["samples"]["sample_000000"]["arrangement"] == "fitted"


def test_the_default_on_models_without_a_fit_falls_back_to_mixed_and_says_so(tiny, tmp_path, caplog):
    folder, chain = tiny
    with caplog.at_level(logging.WARNING, logger="absl"):
        manifest = synth.synthesize(_options(folder, tmp_path / "out"), chain)
    assert manifest["settings"]["arrangement"] == "mixed"
    assert "arrangement_fit" not in manifest["settings"]
    assert any("carries no arrangement fit" in r.getMessage() for r in caplog.records)


def test_a_bad_recorded_fit_is_named(real_fit, tmp_path):
    folder = tmp_path / "models"
    tiny_generators.export_untrained_models(folder, (32, 32), base_filters=4, depth=2)
    manifest_path = folder / "stage1" / "nucgen_manifest.json"
    bad = {**real_fit.to_dict(), "interaction": 3.0}
    io.write_json(manifest_path, {**json.loads(manifest_path.read_text()), "arrangement_fit": bad})
    with pytest.raises(io.DataError, match=f"^{manifest_path}: holds an invalid arrangement_fit"):
        synth.synthesize(_options(folder, tmp_path / "out"))


def test_cli_takes_the_fit_flags(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text("{not json")
    args = [
        "--arrangement",
        "fitted",
        "--arrangement_fit",
        str(path),
        "--n",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", "synthesize", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and f"{path}: not a JSON arrangement fit" in proc.stderr
