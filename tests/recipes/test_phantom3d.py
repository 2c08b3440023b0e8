"""Tests for nucgen_tf.recipes.phantom3d: the simulated BBBC024 stand-in on a tiny setting."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from nucgen_tf import io, phantoms
from nucgen_tf.recipes import phantom3d

TINY = phantoms.PhantomConfig(shape=(16, 40, 40), spacing=(2.0, 1.0, 1.0), n_nuclei=5, radius=(5.0, 6.5))
SIZES = {"n_train": 2, "n_test": 2}
NAMES = {"train": ["train_c00_0000", "train_c25_0001"], "test": ["test_c00_0000", "test_c25_0001"]}


def _manifest(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _arrays(root):
    """{relative path: array} of every TIFF under root."""
    return {str(p.relative_to(root)): io.read_image(p) for p in sorted(root.rglob("*.tif"))}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom3d") / "set"
    rows = phantom3d.generate(out, seed=5, config=TINY, progress=False, **SIZES)
    return out, rows


def test_layout_files_and_manifest(generated):
    out, rows = generated
    assert set(rows) == {"high", "low"}
    masks = {}
    for snr in ("high", "low"):
        manifest = _manifest(out / snr / "manifest.csv")
        assert [(r["split"], r["name"]) for r in manifest] == [
            (split, name) for split in ("train", "test") for name in NAMES[split]
        ]
        for split in ("train", "test"):
            pairs = io.list_pairs(out / snr / split)
            assert [p.name for p in pairs] == sorted(NAMES[split])
            for pair in pairs:
                image, labels = io.read_pair(pair, ndim=3)
                assert image.shape == labels.shape == TINY.shape and image.dtype == np.uint16
                n = int(labels.max())
                np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
                row = next(r for r in manifest if r["split"] == split and r["name"] == pair.name)
                assert int(row["n_instances"]) == n == TINY.n_nuclei
                assert row["shape"] == "16x40x40"
                assert float(row["clustering"]) == (0.0 if "_c00_" in pair.name else 0.25)
                assert float(row["snr_measured"]) == pytest.approx(
                    phantoms.measure_snr(image, labels), abs=1e-3
                )
                masks.setdefault((split, pair.name), []).append(labels)
    for pair_masks in masks.values():  # both SNR sets share the masks
        np.testing.assert_array_equal(*pair_masks)
    high = [float(r["snr_measured"]) for r in _manifest(out / "high" / "manifest.csv")]
    low = [float(r["snr_measured"]) for r in _manifest(out / "low" / "manifest.csv")]
    assert all(h > 4 * lo for h, lo in zip(high, low))


def test_parameter_record(generated):
    out, _ = generated
    record = json.loads((out / "phantom3d.json").read_text())
    assert "simulated stand-in for BBBC024" in record["description"]
    assert record["seed"] == 5 and record["sizes"] == {"train": 2, "test": 2}
    assert record["geometry"]["shape"] == [16, 40, 40] and record["geometry"]["spacing"] == [2.0, 1.0, 1.0]
    assert record["clustering_levels"] == [0.0, 0.25, 0.5, 0.75]
    assert record["snr_settings"]["low"]["measured_range"] == list(phantoms.SNR_RANGES["low"])
    assert record["snr_settings"]["high"]["snr"] == phantoms.SNR_SETTINGS["high"].snr


def test_rerun_skips_and_regenerates_only_missing_files(generated, monkeypatch):
    out, rows = generated
    before = _arrays(out)
    calls = []
    real = phantom3d.phantom_volume

    def counting(*args, **kwargs):
        calls.append(kwargs.get("snrs"))
        return real(*args, **kwargs)

    monkeypatch.setattr(phantom3d, "phantom_volume", counting)
    assert phantom3d.generate(out, seed=5, config=TINY, progress=False, **SIZES) == rows
    assert calls == []

    (out / "low" / "test" / "images" / "test_c25_0001.tif").unlink()
    assert phantom3d.generate(out, seed=5, config=TINY, progress=False, **SIZES) == rows
    assert calls == [["low"]]
    after = _arrays(out)
    assert after.keys() == before.keys()
    for key, array in before.items():  # the regenerated image is bit-identical
        np.testing.assert_array_equal(after[key], array)
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


def test_same_seed_gives_identical_files_and_volumes_do_not_depend_on_split_sizes(generated, tmp_path):
    out, _ = generated
    phantom3d.generate(
        tmp_path / "again", snr="high", seed=5, config=TINY, progress=False, n_train=1, n_test=0
    )
    assert not (tmp_path / "again" / "low").exists()
    again = _arrays(tmp_path / "again")
    assert sorted(again) == ["high/train/images/train_c00_0000.tif", "high/train/masks/train_c00_0000.tif"]
    original = _arrays(out)
    for key, array in again.items():
        np.testing.assert_array_equal(array, original[key])
    phantom3d.generate(
        tmp_path / "other", snr="high", seed=6, config=TINY, progress=False, n_train=1, n_test=0
    )
    other = _arrays(tmp_path / "other")
    assert not np.array_equal(
        other["high/train/images/train_c00_0000.tif"], again["high/train/images/train_c00_0000.tif"]
    )


def test_refuses_other_parameters_in_the_same_folder(generated):
    out, _ = generated
    with pytest.raises(io.DataError, match="other parameters") as info:
        phantom3d.generate(out, seed=6, config=TINY, progress=False, **SIZES)
    assert str(info.value).startswith(str(out / "phantom3d.json"))


def test_rejects_unknown_snr(tmp_path):
    with pytest.raises(ValueError, match="snr"):
        phantom3d.generate(tmp_path, snr="medium", config=TINY, progress=False, **SIZES)


def test_names_levels_and_seeds():
    assert [phantom3d.clustering_level(i) for i in range(6)] == [0.0, 0.25, 0.5, 0.75, 0.0, 0.25]
    assert phantom3d.volume_name("test", 7) == "test_c75_0007"
    assert phantom3d.volume_seed(24, "test", 7) == [24, 1, 7]


@pytest.mark.slow
def test_module_runs_as_script(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nucgen_tf.commands.phantom3d",
            f"--out={tmp_path / 'o'}",
            "--snr=low",
            "--n_train=1",
            "--n_test=0",
            "--shape=24,64,64",
            "--n_nuclei=3",
            "--seed=3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=phantom3d.__file__.rsplit("/nucgen_tf/", 1)[0],
    )
    assert result.returncode == 0, result.stderr
    rows = _manifest(tmp_path / "o" / "low" / "manifest.csv")
    assert [(r["split"], r["name"], r["shape"], r["n_instances"]) for r in rows] == [
        ("train", "train_c00_0000", "24x64x64", "3")
    ]
    record = json.loads((tmp_path / "o" / "phantom3d.json").read_text())
    assert record["seed"] == 3 and record["geometry"]["n_nuclei"] == 3
    assert not (tmp_path / "o" / "high").exists()
