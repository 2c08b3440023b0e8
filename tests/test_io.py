"""Tests for nucgen_tf.io: validated readers, pair listing and atomic writers."""

from __future__ import annotations

import csv
import json
import logging
import pickle

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from nucgen_tf import io

SHAPES = {2: (6, 7), 3: (3, 6, 7)}


def _tiff(path, array):
    """Writes with plain tifffile so that reader tests do not depend on our writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack" if array.ndim > 1 else None)
    return path


def _pair_folder(root, names, shape=(4, 5), suffix=".tif"):
    for i, name in enumerate(names):
        _tiff(root / "images" / f"{name}{suffix}", np.full(shape, i, np.uint16))
        _tiff(root / "masks" / f"{name}{suffix}", np.ones(shape, np.uint16))
    return root


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --- DataError -------------------------------------------------------------------------------------


def test_data_error_starts_with_path_and_pickles(tmp_path):
    err = io.DataError(tmp_path / "x.tif", "broken")
    assert isinstance(err, ValueError)
    assert str(err) == f"{tmp_path / 'x.tif'}: broken"
    assert err.path == tmp_path / "x.tif"
    clone = pickle.loads(pickle.dumps(err))
    assert (type(clone), str(clone), clone.path) == (io.DataError, str(err), err.path)


# --- read_image ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.float32, np.float64])
def test_read_image_roundtrip_keeps_dtype_and_values(tmp_path, ndim, dtype):
    array = (np.arange(np.prod(SHAPES[ndim])) % 100).reshape(SHAPES[ndim]).astype(dtype)
    path = _tiff(tmp_path / "a.tif", array)
    for expected_ndim in (ndim, None):
        out = io.read_image(path, expected_ndim)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "shape, ndim, expected",
    [
        ((1, 6, 7), 2, (6, 7)),
        ((6, 7, 1), 2, (6, 7)),
        ((1, 3, 6, 7), 3, (3, 6, 7)),
        ((3, 6, 7, 1), None, (3, 6, 7)),
        ((1, 6, 7), None, (1, 6, 7)),  # already a valid 3D shape: left alone
    ],
)
def test_read_image_squeezes_singleton_axis_only_to_match(tmp_path, shape, ndim, expected):
    path = _tiff(tmp_path / "a.tif", np.zeros(shape, np.uint16))
    assert io.read_image(path, ndim).shape == expected


def test_read_image_missing_file(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(io.DataError, match="file not found") as info:
        io.read_image(path)
    assert str(info.value).startswith(str(path))


def test_read_image_corrupt_file(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"this is not a tiff at all")
    with pytest.raises(io.DataError, match="cannot read as TIFF") as info:
        io.read_image(path)
    assert str(path) in str(info.value)


def test_read_image_truncated_file(tmp_path):
    path = _tiff(tmp_path / "cut.tif", np.ones((64, 64), np.uint32))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(io.DataError, match="cannot read") as info:
        io.read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "shape, ndim",
    [((7,), None), ((2, 3, 6, 7), None), ((3, 6, 7), 2), ((6, 7), 3), ((2, 2, 3, 6, 7), 3)],
)
def test_read_image_wrong_dims_names_file_and_shape(tmp_path, shape, ndim):
    path = _tiff(tmp_path / "a.tif", np.zeros(shape, np.uint8))
    with pytest.raises(io.DataError, match="dimensions") as info:
        io.read_image(path, ndim)
    assert str(path) in str(info.value)
    assert str(shape) in str(info.value)


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_read_image_rejects_non_numeric(tmp_path, dtype):
    path = _tiff(tmp_path / "a.tif", np.ones((4, 5), dtype))
    with pytest.raises(io.DataError, match="integer or float") as info:
        io.read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_read_image_rejects_non_finite(tmp_path, bad):
    array = np.zeros((4, 5), np.float32)
    array[1, 2] = bad
    path = _tiff(tmp_path / "a.tif", array)
    with pytest.raises(io.DataError, match="1 NaN/inf") as info:
        io.read_image(path)
    assert str(path) in str(info.value)


def test_read_image_bad_ndim_argument(tmp_path):
    path = _tiff(tmp_path / "a.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="Received: ndim=4"):
        io.read_image(path, 4)


# --- read_labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_read_labels_sequential_is_int32_and_silent(tmp_path, ndim, caplog):
    labels = np.zeros(SHAPES[ndim], np.uint16)
    labels.flat[[1, 5, 9]] = [1, 2, 3]
    path = _tiff(tmp_path / "m.tif", labels)
    with caplog.at_level(logging.WARNING):
        out = io.read_labels(path, ndim)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, labels)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("ndim", [2, 3])
def test_read_labels_relabels_gaps_in_order_with_one_warning(tmp_path, ndim, caplog):
    labels = np.zeros(SHAPES[ndim], np.uint16)
    labels.flat[[0, 1, 4, 10, 11]] = [9, 9, 3, 7, 3]
    path = _tiff(tmp_path / "m.tif", labels)
    with caplog.at_level(logging.WARNING):
        out = io.read_labels(path, ndim)
    expected = np.zeros(SHAPES[ndim], np.int32)
    expected.flat[[0, 1, 4, 10, 11]] = [3, 3, 1, 2, 1]  # 3 -> 1, 7 -> 2, 9 -> 3
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int32
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage() and "relabelled" in warnings[0].getMessage()


def test_read_labels_does_not_split_disconnected_objects(tmp_path):
    labels = np.zeros((5, 9), np.uint8)
    labels[0:2, 0:2] = 1
    labels[3:5, 6:9] = 1  # same label, far away: still one nucleus
    out = io.read_labels(_tiff(tmp_path / "m.tif", labels))
    np.testing.assert_array_equal(out, labels)


def test_read_labels_rejects_float(tmp_path):
    path = _tiff(tmp_path / "m.tif", np.ones((4, 5), np.float32))
    with pytest.raises(io.DataError, match="labels must be integers, got float32") as info:
        io.read_labels(path)
    assert str(path) in str(info.value)


def test_read_labels_rejects_negative(tmp_path):
    labels = np.zeros((4, 5), np.int16)
    labels[0, 0] = -3
    path = _tiff(tmp_path / "m.tif", labels)
    with pytest.raises(io.DataError, match="minimum -3") as info:
        io.read_labels(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("dtype, value", [(np.uint32, 2**31), (np.int64, 2**40)])
def test_read_labels_rejects_over_int32(tmp_path, dtype, value):
    labels = np.zeros((4, 5), dtype)
    labels[1, 1] = value
    path = _tiff(tmp_path / "m.tif", labels)
    with pytest.raises(io.DataError, match="int32") as info:
        io.read_labels(path)
    assert str(path) in str(info.value)


# --- list_pairs / read_pair ----------------------------------------------------------------------


def test_list_pairs_sorted_with_both_suffixes_ignoring_dot_files(tmp_path):
    root = _pair_folder(tmp_path / "d", ["b", "a"])
    _pair_folder(root, ["c"], suffix=".tiff")
    _tiff(root / "images" / "._a.tif", np.zeros((4, 5), np.uint16))  # macOS resource fork
    (root / "images" / "notes.txt").write_text("not an image")
    pairs = io.list_pairs(root)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[0] == io.ImagePair("a", root / "images" / "a.tif", root / "masks" / "a.tif")
    assert pairs[2].mask_path == root / "masks" / "c.tiff"
    with pytest.raises(AttributeError):
        pairs[0].name = "z"  # frozen


def test_list_pairs_missing_root(tmp_path):
    with pytest.raises(io.DataError, match="not found") as info:
        io.list_pairs(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


@pytest.mark.parametrize("kind", ["images", "masks"])
def test_list_pairs_missing_subfolder(tmp_path, kind):
    (tmp_path / ("masks" if kind == "images" else "images")).mkdir()
    with pytest.raises(io.DataError, match="folder not found") as info:
        io.list_pairs(tmp_path)
    assert str(tmp_path / kind) in str(info.value)


def test_list_pairs_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(io.DataError, match="empty folder") as info:
        io.list_pairs(tmp_path)
    assert str(tmp_path / "images") in str(info.value)


def test_list_pairs_image_without_mask(tmp_path):
    _pair_folder(tmp_path, ["a"])
    _tiff(tmp_path / "images" / "b.tif", np.zeros((4, 5), np.uint16))
    with pytest.raises(io.DataError, match="image has no mask") as info:
        io.list_pairs(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "images" / "b.tif"))
    assert str(tmp_path / "masks" / "b.tif") in str(info.value)


def test_list_pairs_mask_without_image(tmp_path):
    _pair_folder(tmp_path, ["a"])
    _tiff(tmp_path / "masks" / "b.tif", np.zeros((4, 5), np.uint16))
    with pytest.raises(io.DataError, match="mask has no image") as info:
        io.list_pairs(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "masks" / "b.tif"))
    assert str(tmp_path / "images" / "b.tif") in str(info.value)


def test_list_pairs_duplicate_stem(tmp_path):
    _pair_folder(tmp_path, ["a"])
    _tiff(tmp_path / "images" / "a.tiff", np.zeros((4, 5), np.uint16))
    with pytest.raises(io.DataError, match="two files share the name") as info:
        io.list_pairs(tmp_path)
    assert "a.tif" in str(info.value)


@pytest.mark.parametrize("ndim", [2, 3])
def test_read_pair(tmp_path, ndim):
    image = np.arange(np.prod(SHAPES[ndim]), dtype=np.uint16).reshape(SHAPES[ndim])
    labels = (image % 3).astype(np.uint8)
    _tiff(tmp_path / "images" / "x.tif", image)
    _tiff(tmp_path / "masks" / "x.tif", labels)
    (pair,) = io.list_pairs(tmp_path)
    out_image, out_labels = io.read_pair(pair, ndim)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_labels, labels)
    assert (out_image.dtype, out_labels.dtype) == (np.uint16, np.int32)


def test_read_pair_shape_mismatch_names_both(tmp_path):
    _tiff(tmp_path / "images" / "x.tif", np.zeros((4, 5), np.uint16))
    _tiff(tmp_path / "masks" / "x.tif", np.zeros((4, 6), np.uint16))
    (pair,) = io.list_pairs(tmp_path)
    with pytest.raises(io.DataError, match="does not match") as info:
        io.read_pair(pair)
    message = str(info.value)
    assert str(pair.image_path) in message and str(pair.mask_path) in message
    assert "(4, 5)" in message and "(4, 6)" in message


# --- atomic writers ------------------------------------------------------------------------------


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "dir" / "f.txt"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".f.txt.") and tmp.name.endswith(".tmp")
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_interrupted_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(KeyboardInterrupt), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert not target.exists()
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_without_output_is_an_error(tmp_path):
    with pytest.raises(io.DataError, match="produced no file"), io.atomic_path(tmp_path / "f.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("had_old_file", [False, True])
def test_crash_inside_tifffile_leaves_old_file_intact(tmp_path, monkeypatch, had_old_file):
    target = tmp_path / "img.tif"
    old = np.full((4, 5), 7, np.uint16)
    if had_old_file:
        io.write_tiff(target, old)

    def crashing_imwrite(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", crashing_imwrite)
    with pytest.raises(OSError, match="disk full"):
        io.write_tiff(target, np.zeros((4, 5), np.uint16))
    monkeypatch.undo()
    if had_old_file:
        np.testing.assert_array_equal(io.read_image(target), old)
    else:
        assert not target.exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("ndim", [2, 3])
def test_write_tiff_zlib_axes_and_roundtrip(tmp_path, ndim):
    # A trailing axis of length 3 must not be mistaken for RGB samples.
    array = np.arange(np.prod(SHAPES[ndim][:-1]) * 3, dtype=np.uint16).reshape(*SHAPES[ndim][:-1], 3)
    path = tmp_path / "a" / "b.tif"
    io.write_tiff(path, array)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == 8  # zlib / Adobe deflate
        assert tif.series[0].axes == ("YX" if ndim == 2 else "ZYX")
        np.testing.assert_array_equal(tif.asarray(), array)


def test_write_tiff_uncompressed_and_bool(tmp_path):
    io.write_tiff(tmp_path / "b.tif", np.eye(3, dtype=bool), compress=False)
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert tif.pages[0].compression == 1
        np.testing.assert_array_equal(tif.asarray(), np.eye(3, dtype=np.uint8))


def test_write_tiff_axes_must_match(tmp_path):
    with pytest.raises(ValueError, match="axes='YX'"):
        io.write_tiff(tmp_path / "a.tif", np.zeros((2, 3, 4)), axes="YX")


@pytest.mark.parametrize("high, dtype", [(65535, np.uint16), (65536, np.uint32)])
def test_write_labels_narrows_only_when_safe(tmp_path, high, dtype):
    labels = np.zeros((3, 4), np.int64)
    labels[1, 2] = high
    io.write_labels(tmp_path / "m.tif", labels)
    out = tifffile.imread(tmp_path / "m.tif")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize(
    "labels, match",
    [(np.ones((2, 2), np.float32), "integers"), (np.full((2, 2), -1, np.int32), ">= 0")],
)
def test_write_labels_rejects(tmp_path, labels, match):
    with pytest.raises(ValueError, match=match):
        io.write_labels(tmp_path / "m.tif", labels)


def test_write_json_converts_numpy_and_sorts(tmp_path):
    path = tmp_path / "j" / "c.json"
    io.write_json(
        path, {"b": np.float32(0.5), "a": np.arange(3), np.int64(7): (1, np.int16(2)), "p": tmp_path}
    )
    text = path.read_text()
    assert json.loads(text) == {"7": [1, 2], "a": [0, 1, 2], "b": 0.5, "p": str(tmp_path)}
    assert text.index('"7"') < text.index('"a"') < text.index('"b"')
    assert '\n  "a": [\n    0,' in text  # indent 2


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3), (4, 5, 4)])
def test_write_png_roundtrip(tmp_path, shape):
    array = (np.arange(np.prod(shape)) % 256).astype(np.uint8).reshape(shape)
    io.write_png(tmp_path / "p" / "a.png", array)
    np.testing.assert_array_equal(iio.imread(tmp_path / "p" / "a.png"), array)


@pytest.mark.parametrize(
    "array, match", [(np.zeros((4, 5, 3), np.float32), "uint8"), (np.zeros((4, 5, 2), np.uint8), "shape")]
)
def test_write_png_rejects(tmp_path, array, match):
    with pytest.raises(ValueError, match=match):
        io.write_png(tmp_path / "a.png", array)


def test_write_csv_sequences_and_mappings(tmp_path):
    path = tmp_path / "c" / "m.csv"
    io.write_csv(
        path, [["train", "a", np.int64(3)], {"n": 4, "name": "b", "split": "val"}], ["split", "name", "n"]
    )
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["split", "name", "n"], ["train", "a", "3"], ["val", "b", "4"]]


def test_write_csv_wrong_row_length_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        io.write_csv(tmp_path / "m.csv", [[1, 2, 3], [1, 2]], ["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


# --- real data -----------------------------------------------------------------------------------


def test_bbbc039_train_pairs_match_manifest(bbbc039_train, data_root):
    with open(data_root / "bbbc039" / "manifest.csv", newline="") as f:
        manifest = {row["name"]: row for row in csv.DictReader(f) if row["split"] == "train"}
    pairs = io.list_pairs(bbbc039_train)
    assert len(pairs) == 20
    assert [p.name for p in pairs] == sorted(manifest)
    for pair in pairs:
        image, labels = io.read_pair(pair, ndim=2)
        assert image.dtype == np.uint16 and image.shape == (520, 696)
        assert labels.dtype == np.int32 and labels.shape == (520, 696)
        n = int(manifest[pair.name]["n_instances"])
        np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))


def test_stardist_3d_reads_as_zyx(stardist_3d, caplog):
    (pair,) = io.list_pairs(stardist_3d)
    with caplog.at_level(logging.WARNING):
        image, labels = io.read_pair(pair, ndim=3)
    assert image.shape == labels.shape == (31, 61, 57)
    assert image.dtype == np.uint16 and labels.dtype == np.int32
    # The shipped mask has 51 nuclei labelled with gaps (up to 162): relabelled to 1..51, with a warning.
    np.testing.assert_array_equal(np.unique(labels), np.arange(52))
    assert any("relabelled" in r.getMessage() for r in caplog.records)
    with pytest.raises(io.DataError, match=r"\(31, 61, 57\)"):
        io.read_image(pair.image_path, ndim=2)


def test_check_record_accepts_a_new_or_equal_folder_and_names_what_differs(tmp_path):
    path = tmp_path / "record.json"
    record = {"seed": 1, "sizes": {"train": 2}}
    io.check_record(path, record, "this folder differs", "use another")  # no record yet
    io.write_json(path, record)
    io.check_record(path, record, "this folder differs", "use another")
    expected = r"this folder differs \(differs in \['seed'\]\); use another"
    with pytest.raises(io.DataError, match=expected) as info:
        io.check_record(path, {**record, "seed": 2}, "this folder differs", "use another")
    assert str(info.value).startswith(str(path))
    path.write_text("{not json")
    with pytest.raises(io.DataError, match="unreadable record"):
        io.check_record(path, record, "this folder differs", "use another")


def test_list_images_takes_a_tiff_folder_or_a_data_folder(tmp_path):
    from nucgen_tf import io as nio

    nio.write_tiff(tmp_path / "images" / "b.tif", np.zeros((4, 4), np.uint16))
    nio.write_tiff(tmp_path / "images" / "a.tiff", np.zeros((4, 4), np.uint16))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    expected = [tmp_path / "images" / "a.tiff", tmp_path / "images" / "b.tif"]
    assert nio.list_images(tmp_path) == expected
    assert nio.list_images(tmp_path / "images") == expected
    (tmp_path / "empty").mkdir()
    with pytest.raises(nio.DataError, match="empty folder"):
        nio.list_images(tmp_path / "empty")
    with pytest.raises(nio.DataError, match="not found"):
        nio.list_images(tmp_path / "missing")


def test_rgb_image_is_named_with_how_to_convert(tmp_path):
    """Issue 18, item 5: 'expected 2 dimensions ... got (128, 128, 3)' did not say it is RGB."""
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((128, 128, 3), np.uint8), photometric="rgb")
    with pytest.raises(io.DataError, match=r"rgb.tif: an RGB image \(128, 128, 3\); nuclei need one channel"):
        io.read_image(path, 2)
