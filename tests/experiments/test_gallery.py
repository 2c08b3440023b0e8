"""The synthetic-next-to-real gallery: rows per folder, aligned columns, 2D and 3D, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucgen_tf import io
from nucgen_tf.experiments import gallery as G


def _folder(root, n, shape, value):
    """`n` pairs with one bright square nucleus each (intensity `value`)."""
    for i in range(n):
        labels = np.zeros(shape, np.int32)
        labels[tuple(slice(s // 4, 3 * s // 4) for s in shape)] = 1
        image = np.where(labels > 0, value, 10).astype(np.uint16)
        io.write_tiff(root / "images" / f"p{i}.tif", image)
        io.write_labels(root / "masks" / f"p{i}.tif", labels)
    return root


@pytest.mark.parametrize("ndim", [2, 3])
def test_gallery_has_one_row_per_folder_and_two_panels_per_pair(tmp_path, ndim):
    shape = (48, 48) if ndim == 2 else (8, 48, 48)
    real = _folder(tmp_path / "real", 3, (64,) * ndim if ndim == 2 else (8, 64, 64), 900)
    synthetic = _folder(tmp_path / "syn", 1, shape, 500)  # fewer pairs than n: padded columns
    one = G.gallery({"real": real}, n=2, size=shape)
    two = G.gallery({"real": real, "ours": synthetic}, n=2, size=shape)
    assert one.dtype == np.uint8 and one.shape[-1] == 3
    assert two.shape[1] == one.shape[1]  # rows line up
    assert two.shape[0] > 1.9 * one.shape[0]
    # Contour panels draw red on the nucleus rim; the plain panels stay gray.
    red = (two[..., 0] > 200) & (two[..., 1] < 100)
    assert red.any()


def test_crop_keeps_image_and_labels_aligned():
    image = np.arange(100 * 120).reshape(100, 120)
    labels = image.copy()
    crop_image, crop_labels = G.crop_pair(image, labels, (32, 40), np.random.default_rng(3))
    assert crop_image.shape == (32, 40)
    np.testing.assert_array_equal(crop_image, crop_labels)


def test_write_gallery_from_an_experiment_layout(tmp_path):
    _folder(tmp_path / "data" / "train_n2", 2, (64, 64), 800)
    _folder(tmp_path / "synthetic" / "n2" / "ours", 2, (64, 64), 400)
    out = G.write_gallery(tmp_path, n_train=2, n=2)
    assert out == tmp_path / "report" / "gallery_n2.png"
    width, height = Image.open(out).size
    assert width > 4 * 64 and height > 2 * 64


def test_missing_amount_names_the_folder(tmp_path):
    with pytest.raises(io.DataError, match="train_n5"):
        G.write_gallery(tmp_path, n_train=5)
