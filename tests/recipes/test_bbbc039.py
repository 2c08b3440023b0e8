"""Tests for the BBBC039 recipe: mask decoding, the seeded split, convert/fetch and resuming.

The real download cannot run here; ``download`` and ``fetch`` are exercised through file:// URLs.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile

from nucgen_tf import io
from nucgen_tf.recipes import bbbc039

SHAPE = (12, 20)


def _rgba(red: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*red.shape, 4), np.uint8)
    rgba[..., 0] = red
    rgba[..., 3] = 255
    return rgba


def _make_source(root, n_images, empty=(), shape=SHAPE):
    """Fake extracted BBBC039: images/<name>.tif uint16 + masks/<name>.png RGBA.

    Image i holds 1 + i % 3 square nuclei of 3 x 3 px (9 px), except that the first one is
    5 x 5 (25 px) when i is even; names in ``empty`` hold none.
    Returns {name: (n_instances, n_instances_ge25px)}.
    """
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    expected = {}
    for i in range(n_images):
        name = f"IXMtest_{i:02d}"
        red = np.zeros(shape, np.uint8)
        n = 0 if name in empty else 1 + i % 3
        for j in range(n):
            size = 5 if (j == 0 and i % 2 == 0) else 3
            red[1 : 1 + size, 1 + 6 * j : 1 + 6 * j + size] = j % 3 + 1
        io.write_png(root / "masks" / f"{name}.png", _rgba(red))
        tifffile.imwrite(root / "images" / f"{name}.tif", rng.integers(0, 4096, shape, dtype=np.uint16))
        expected[name] = (n, int(n > 0 and i % 2 == 0))
    return expected


def _read_manifest(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _zip_folder(folder, zip_path, arc_prefix):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{arc_prefix}/{path.name}")


# --- decode_mask_png -----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_decode_mask_png_equal_index_8_connected(tmp_path, channels):
    red = np.zeros((10, 12), np.uint8)
    red[1:4, 1:4] = 1  # nucleus A
    red[1:4, 4:7] = 2  # nucleus B touches A but has another index: stays separate
    red[6, 1] = red[7, 2] = red[8, 3] = 3  # one nucleus joined only diagonally (8-connectivity)
    red[7:9, 8:11] = 1  # same index as A, not touching it: a separate nucleus
    rgba = _rgba(red)[..., :channels].copy()
    rgba[..., 1] = 200  # green is ignored
    io.write_png(tmp_path / "m.png", rgba)
    expected = np.zeros((10, 12), np.int32)
    expected[1:4, 1:4] = 1
    expected[1:4, 4:7] = 2
    expected[6, 1] = expected[7, 2] = expected[8, 3] = 3
    expected[7:9, 8:11] = 4
    labels = bbbc039.decode_mask_png(tmp_path / "m.png")
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)
    assert bbbc039.count_instances(labels, min_area=9) == (4, 2)


def test_decode_mask_png_rejects_grayscale(tmp_path):
    io.write_png(tmp_path / "g.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(io.DataError, match=r"got shape \(4, 5\)") as info:
        bbbc039.decode_mask_png(tmp_path / "g.png")
    assert str(tmp_path / "g.png") in str(info.value)


def test_decode_mask_png_missing_and_corrupt(tmp_path):
    with pytest.raises(io.DataError, match="file not found"):
        bbbc039.decode_mask_png(tmp_path / "absent.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(io.DataError, match="cannot read as PNG") as info:
        bbbc039.decode_mask_png(tmp_path / "bad.png")
    assert str(tmp_path / "bad.png") in str(info.value)


# --- split_names ---------------------------------------------------------------------------------


def test_split_names_sizes_deterministic_and_order_free():
    names = [f"img_{i:03d}" for i in range(200)]
    split = bbbc039.split_names(names)
    assert {k: len(v) for k, v in split.items()} == {"train": 20, "val": 10, "test": 50, "heldout": 120}
    assert sorted(sum(split.values(), [])) == names  # a partition
    assert bbbc039.split_names(list(reversed(names))) == split  # listing order does not matter
    expected = np.random.default_rng(20120628).permutation(200)
    assert split["train"] == [names[i] for i in expected[:20]]
    assert split["heldout"] == [names[i] for i in expected[80:]]
    assert bbbc039.split_names(names, seed=1)["train"] != split["train"]


@pytest.mark.parametrize("as_mapping", [False, True])
def test_split_names_train_skips_empty_images_which_go_down_the_list(as_mapping):
    names = [f"img_{i}" for i in range(10)]
    plain = bbbc039.split_names(names, n_train=3, n_val=2, n_test=2)
    empty = {plain["train"][0], plain["train"][2]}
    has_nuclei = {n: n not in empty for n in names} if as_mapping else (lambda n: n not in empty)
    split = bbbc039.split_names(names, n_train=3, n_val=2, n_test=2, has_nuclei=has_nuclei)
    permuted = plain["train"] + plain["val"] + plain["test"] + plain["heldout"]
    assert split["train"] == [n for n in permuted if n not in empty][:3]
    rest = [n for n in permuted if n not in split["train"]]
    assert split["val"] == rest[:2] and split["val"][0] == plain["train"][0]
    assert split["test"] == rest[2:4] and split["heldout"] == rest[4:]


def test_split_names_errors():
    with pytest.raises(ValueError, match="at least"):
        bbbc039.split_names(["a", "b"], n_train=1, n_val=1, n_test=1)
    with pytest.raises(ValueError, match="duplicates"):
        bbbc039.split_names(["a", "a", "b"], n_train=1, n_val=1, n_test=1)
    with pytest.raises(ValueError, match="Only 1 images hold nuclei"):
        bbbc039.split_names(["a", "b", "c"], n_train=2, n_val=0, n_test=0, has_nuclei=lambda n: n == "b")
    with pytest.raises(ValueError, match="lacks 1 names"):
        bbbc039.split_names(["a", "b"], n_train=1, n_val=0, n_test=0, has_nuclei={"a": True})
    with pytest.raises(ValueError, match="n_val=-1"):
        bbbc039.split_names(["a", "b"], n_train=1, n_val=-1, n_test=0)


def test_split_of_shared_names_is_deterministic(data_root):
    # The staged data hold only 80 of the 200 source names, so the real split cannot be
    # recomputed here; check what can be checked on the real names.
    manifest = _read_manifest(data_root / "bbbc039" / "manifest.csv")
    names = [row["name"] for row in manifest]
    assert len(names) == 80
    assert all(int(row["n_instances"]) > 0 for row in manifest if row["split"] == "train")
    split = bbbc039.split_names(names, n_train=20, n_val=10, n_test=50)
    assert {k: len(v) for k, v in split.items()} == {"train": 20, "val": 10, "test": 50, "heldout": 0}
    assert split == bbbc039.split_names(sorted(names, reverse=True), n_train=20, n_val=10, n_test=50)
    assert sorted(sum(split.values(), [])) == sorted(names)


# --- convert -------------------------------------------------------------------------------------

SIZES = {"n_train": 3, "n_val": 2, "n_test": 2}


def _empty_first_train_name(n_images):
    """The name the plain split puts first in train: making it empty tests the skip."""
    names = [f"IXMtest_{i:02d}" for i in range(n_images)]
    return bbbc039.split_names(names, **SIZES)["train"][0]


@pytest.fixture
def source(tmp_path):
    empty = _empty_first_train_name(8)
    expected = _make_source(tmp_path / "src", 8, empty={empty})
    return tmp_path / "src", expected, empty


def test_convert_layout_manifest_and_split(tmp_path, source):
    src, expected, empty = source
    out = tmp_path / "out"
    split = bbbc039.convert(src, out, progress=False, **SIZES)

    assert empty not in split["train"] and split["val"][0] == empty
    assert {k: len(v) for k, v in split.items()} == {"train": 3, "val": 2, "test": 2, "heldout": 1}
    assert bbbc039.convert(src, tmp_path / "out2", progress=False, **SIZES) == split  # deterministic

    rows = _read_manifest(out / "manifest.csv")
    assert list(rows[0]) == list(bbbc039.MANIFEST_COLUMNS)
    assert [(r["split"], r["name"]) for r in rows] == [
        (part, name) for part in bbbc039.SPLITS for name in sorted(split[part])
    ]
    for row in rows:
        n, n_ge = expected[row["name"]]
        assert (int(row["height"]), int(row["width"])) == SHAPE
        assert (int(row["n_instances"]), int(row["n_instances_ge25px"])) == (n, n_ge)
        folder = out / row["split"]
        np.testing.assert_array_equal(
            io.read_image(folder / "images" / f"{row['name']}.tif"),
            tifffile.imread(src / "images" / f"{row['name']}.tif"),
        )
        with tifffile.TiffFile(folder / "masks" / f"{row['name']}.tif") as tif:
            assert tif.pages[0].dtype == np.uint16 and tif.pages[0].compression == 8
        labels = io.read_labels(folder / "masks" / f"{row['name']}.tif")
        np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    for part in bbbc039.SPLITS:
        assert [p.name for p in io.list_pairs(out / part)] == sorted(split[part])
    record = json.loads((out / "split.json").read_text())
    assert record["seed"] == bbbc039.DEFAULT_SEED and record["train"] == split["train"]


def test_convert_rerun_skips_existing_and_resumes_after_crash(tmp_path, source, monkeypatch):
    src, _, _ = source
    out = tmp_path / "out"
    calls = []
    real_write_labels = io.write_labels

    def crash_on_third(path, labels):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("killed")
        real_write_labels(path, labels)

    monkeypatch.setattr(io, "write_labels", crash_on_third)
    with pytest.raises(OSError, match="killed"):
        bbbc039.convert(src, out, progress=False, **SIZES)
    assert not (out / "manifest.csv").exists()
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []

    calls.clear()
    monkeypatch.setattr(
        io, "write_labels", lambda path, labels: (calls.append(path), real_write_labels(path, labels))
    )
    split = bbbc039.convert(src, out, progress=False, **SIZES)
    assert len(calls) == 8 - 2  # the two pairs finished before the crash are skipped
    assert len(_read_manifest(out / "manifest.csv")) == 8

    calls.clear()
    monkeypatch.setattr(io, "write_tiff", lambda *a, **k: pytest.fail("rewrote an existing image"))
    assert bbbc039.convert(src, out, progress=False, **SIZES) == split
    assert calls == []


def test_convert_refuses_a_different_split_in_the_same_folder(tmp_path, source):
    src, _, _ = source
    bbbc039.convert(src, tmp_path / "out", progress=False, **SIZES)
    with pytest.raises(io.DataError, match="different split") as info:
        bbbc039.convert(src, tmp_path / "out", seed=7, progress=False, **SIZES)
    assert str(info.value).startswith(str(tmp_path / "out" / "split.json"))


def test_convert_unpaired_source_file(tmp_path, source):
    src, _, _ = source
    (src / "masks" / "IXMtest_03.png").unlink()
    with pytest.raises(io.DataError, match="image has no mask") as info:
        bbbc039.convert(src, tmp_path / "out", progress=False, **SIZES)
    assert str(src / "images" / "IXMtest_03.tif") in str(info.value)
    assert str(src / "masks" / "IXMtest_03.png") in str(info.value)


def test_convert_missing_source_folders(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(io.DataError, match="images/\\*.tif and masks/\\*.png") as info:
        bbbc039.convert(tmp_path / "src", tmp_path / "out", progress=False)
    assert str(info.value).startswith(str(tmp_path / "src"))


# --- download / fetch / main ---------------------------------------------------------------------


def test_download_file_url_skip_and_failure(tmp_path):
    (tmp_path / "remote.zip").write_bytes(b"zip bytes" * 1000)
    dest = tmp_path / "dl" / "images.zip"
    assert bbbc039.download((tmp_path / "remote.zip").as_uri(), dest, progress=False) == dest
    assert dest.read_bytes() == b"zip bytes" * 1000
    # An existing file is complete (writes are atomic): kept, even if the URL is now dead.
    bbbc039.download((tmp_path / "gone.zip").as_uri(), dest, progress=False)
    assert dest.read_bytes() == b"zip bytes" * 1000

    missing = tmp_path / "dl" / "masks.zip"
    with pytest.raises(RuntimeError, match="--src=") as info:
        bbbc039.download((tmp_path / "gone.zip").as_uri(), missing, progress=False)
    assert "gone.zip" in str(info.value) and bbbc039.BBBC039_URL in str(info.value)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["images.zip"]


def _zip_source(src, zip_dir):
    zip_dir.mkdir()
    _zip_folder(src / "images", zip_dir / "images.zip", "images")
    _zip_folder(src / "masks", zip_dir / "masks.zip", "masks")
    with zipfile.ZipFile(zip_dir / "metadata.zip", "w") as archive:
        archive.writestr("metadata/training.txt", "IXMtest_00.png\n")


def test_fetch_downloads_extracts_and_converts(tmp_path, source, monkeypatch):
    src, _, _ = source
    _zip_source(src, tmp_path / "remote")
    monkeypatch.setattr(bbbc039, "BBBC039_URL", (tmp_path / "remote").as_uri() + "/")
    out = tmp_path / "out"
    split = bbbc039.fetch(out, progress=False, **SIZES)
    assert split == bbbc039.convert(src, tmp_path / "direct", progress=False, **SIZES)
    assert sorted(p.name for p in (out / "downloads").iterdir()) == list(bbbc039.ZIP_NAMES)
    assert (out / "raw" / "metadata" / "metadata" / "training.txt").is_file()
    assert len(_read_manifest(out / "manifest.csv")) == 8


def test_fetch_from_src_zips_or_folders(tmp_path, source):
    src, _, _ = source
    _zip_source(src, tmp_path / "zips")
    split = bbbc039.fetch(tmp_path / "a", src=tmp_path / "zips", progress=False, **SIZES)
    assert (tmp_path / "a" / "raw" / "images" / "images").is_dir()
    assert not (tmp_path / "a" / "downloads").exists()
    assert bbbc039.fetch(tmp_path / "b", src=src, progress=False, **SIZES) == split
    assert not (tmp_path / "b" / "raw").exists()  # extracted folders are used in place


def test_fetch_src_without_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(io.DataError, match="images.zip") as info:
        bbbc039.fetch(tmp_path / "out", src=tmp_path / "empty", progress=False)
    assert str(info.value).startswith(str(tmp_path / "empty"))


def test_fetch_bad_zip(tmp_path):
    (tmp_path / "zips").mkdir()
    for name in ("images.zip", "masks.zip"):
        (tmp_path / "zips" / name).write_bytes(b"not a zip")
    with pytest.raises(io.DataError, match="not a valid zip") as info:
        bbbc039.fetch(tmp_path / "out", src=tmp_path / "zips", progress=False)
    assert str(tmp_path / "zips" / "images.zip") in str(info.value)
    assert [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")] == []


def _nucgen(*args):
    """Run the real `nucgen` dispatcher in a subprocess (absl flags live in one process each)."""
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_main_with_default_split_sizes(tmp_path):
    empty = bbbc039.split_names([f"IXMtest_{i:02d}" for i in range(82)])["train"][5]
    expected = _make_source(tmp_path / "src", 82, empty={empty}, shape=(8, 14))
    out = tmp_path / "out"
    result = _nucgen("fetch", f"--out={out}", f"--src={tmp_path / 'src'}", f"--seed={bbbc039.DEFAULT_SEED}")
    assert result.returncode == 0, result.stderr
    rows = _read_manifest(out / "manifest.csv")
    counts = {part: sum(r["split"] == part for r in rows) for part in bbbc039.SPLITS}
    assert counts == {"train": 20, "val": 10, "test": 50, "heldout": 2}
    assert all(int(r["n_instances"]) == expected[r["name"]][0] for r in rows)
    assert next(r["split"] for r in rows if r["name"] == empty) != "train"


def test_main_requires_out():
    result = _nucgen("fetch", "--seed=1")
    assert result.returncode != 0
    assert "--out is required" in result.stderr


def test_module_runs_as_script_and_reports_bad_src(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nucgen_tf.commands.fetch",
            f"--out={tmp_path / 'o'}",
            f"--src={tmp_path / 'x'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bbbc039.__file__.rsplit("/nucgen_tf/", 1)[0],
    )
    assert result.returncode != 0
    assert f"{tmp_path / 'x'}: source folder (--src) not found" in result.stderr
