"""Tests of the stateless aligned crop / flip / rot90 augmentation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from nucgen_tf.data import augment


def _seed(i: int) -> tf.Tensor:
    return tf.constant([7, i], tf.int64)


def _image_and_labels(shape, seed=0):
    image = np.random.default_rng(seed).random(shape).astype(np.float32)
    return image, (image > 0.6).astype(np.int32)


def _orientations(array: np.ndarray, ndim: int) -> list[np.ndarray]:
    """Every flip (any spatial axis) x rot90 (YX) of `array`, as numpy references."""
    y, x = ndim - 2, ndim - 1
    out = []
    for flips in itertools.product([False, True], repeat=ndim):
        flipped = array
        for axis, f in enumerate(flips):
            if f:
                flipped = np.flip(flipped, axis)
        for k in range(4):
            out.append(np.rot90(flipped, k, axes=(y, x)))
    return out


def _unique(arrays) -> list[np.ndarray]:
    seen = {}
    for a in arrays:
        seen.setdefault(a.tobytes(), a)
    return list(seen.values())


@pytest.mark.parametrize("ndim", [2, 3])
def test_crop_and_flip_rot_keep_alignment(ndim):
    shape = (20, 24) if ndim == 2 else (6, 20, 24)
    patch = (12, 12) if ndim == 2 else (4, 12, 12)
    image, labels = _image_and_labels(shape)
    rgb = np.stack([image, 1 - image, image * 2], axis=-1)
    for i in range(6):
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(_seed(i), 2))
        out = augment.random_crop({"image": image, "labels": labels, "rgb": rgb}, patch, s1)
        out = augment.random_flip_rot(out, ndim, s2)
        img, lab, col = out["image"].numpy(), out["labels"].numpy(), out["rgb"].numpy()
        assert img.shape == patch and lab.shape == patch and col.shape == (*patch, 3)
        assert lab.dtype == np.int32
        np.testing.assert_array_equal(lab, (img > 0.6).astype(np.int32))
        np.testing.assert_array_equal(col[..., 0], img)
        np.testing.assert_allclose(col[..., 2], img * 2)


@pytest.mark.parametrize("ndim", [2, 3])
def test_crop_is_a_window_of_the_source(ndim):
    shape = (13, 17) if ndim == 2 else (5, 13, 17)
    patch = (6, 6) if ndim == 2 else (3, 6, 6)
    coords = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    offsets = set()
    for i in range(40):
        out = augment.random_crop({"labels": coords}, patch, _seed(i))["labels"].numpy()
        origin = np.unravel_index(int(out[(0,) * ndim]), shape)
        window = tuple(slice(o, o + p) for o, p in zip(origin, patch))
        np.testing.assert_array_equal(out, coords[window])
        offsets.add(origin)
    limits = [s - p for s, p in zip(shape, patch)]
    assert all(0 <= o <= lim for origin in offsets for o, lim in zip(origin, limits))
    # Offsets are spread over the valid range, including both ends on some axis.
    for axis in range(ndim):
        values = {origin[axis] for origin in offsets}
        assert len(values) > 1
    assert any(origin[-1] == limits[-1] for origin in offsets)
    assert any(origin[-1] == 0 for origin in offsets)


def test_crop_pads_short_axes():
    """The 3D example volume has Z=31 < 32: pad images with their minimum, labels with 0."""
    image = np.arange(5 * 10, dtype=np.float32).reshape(5, 10) + 3.0
    labels = np.ones((5, 10), np.int32)
    out = augment.random_crop({"image": image, "labels": labels}, (8, 8), _seed(1))
    img, lab = out["image"].numpy(), out["labels"].numpy()
    # 3 missing rows: 1 before, 2 after.
    np.testing.assert_array_equal(lab[[0, 6, 7]], 0)
    np.testing.assert_array_equal(lab[1:6], 1)
    np.testing.assert_array_equal(img[[0, 6, 7]], 3.0)
    x0 = int(img[1, 0] - 3.0)
    np.testing.assert_array_equal(img[1:6], image[:, x0 : x0 + 8])


def test_crop_in_graph_with_unknown_shape():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32)])
    def crop(volume):
        return augment.random_crop({"v": volume}, (4, 8, 8), tf.constant([1, 2], tf.int64))["v"]

    out = crop(tf.ones((3, 9, 12)))
    assert crop.get_concrete_function().structured_outputs.shape == (4, 8, 8)
    assert out.shape == (4, 8, 8)


def test_crop_rejects_misaligned_tensors():
    with pytest.raises(tf.errors.InvalidArgumentError, match="different spatial shapes"):
        augment.random_crop({"a": tf.zeros((8, 8)), "b": tf.zeros((8, 9))}, (4, 4), _seed(0))


def test_flip_rot_rejects_non_square_rotation():
    with pytest.raises(ValueError, match="square"):
        augment.random_flip_rot({"a": tf.zeros((4, 6))}, 2, _seed(0))


@pytest.mark.parametrize("ndim", [2, 3])
def test_same_seed_same_output_different_seeds_differ(ndim):
    shape = (16, 16) if ndim == 2 else (4, 16, 16)
    image, labels = _image_and_labels(shape, seed=3)

    def run(i):
        out = augment.random_crop({"image": image, "labels": labels}, (8,) * ndim, _seed(i))
        return augment.random_flip_rot(out, ndim, _seed(i))["image"].numpy()

    np.testing.assert_array_equal(run(5), run(5))
    outputs = [run(i) for i in range(8)]
    assert len(_unique(outputs)) > 4


def test_2d_reaches_all_eight_orientations():
    square = np.arange(16, dtype=np.int32).reshape(4, 4)
    references = _unique(_orientations(square, 2))
    assert len(references) == 8
    outputs = _unique(augment.random_flip_rot({"a": square}, 2, _seed(i))["a"].numpy() for i in range(100))
    assert len(outputs) == 8
    ref_keys = {r.tobytes() for r in references}
    assert {o.tobytes() for o in outputs} == ref_keys


def test_3d_rotates_only_yx():
    volume = np.arange(3 * 4 * 4, dtype=np.int32).reshape(3, 4, 4)
    references = _unique(_orientations(volume, 3))
    assert len(references) == 16
    outputs = _unique(augment.random_flip_rot({"a": volume}, 3, _seed(i))["a"].numpy() for i in range(200))
    assert {o.tobytes() for o in outputs} == {r.tobytes() for r in references}
    for out in outputs:
        # Each output slice is one input slice (the same or the mirrored z), transformed in YX.
        z_sources = [int(out[z].min()) // 16 for z in range(3)]
        assert z_sources in ([0, 1, 2], [2, 1, 0])


def test_flags_disable_augmentation():
    square = np.arange(16, dtype=np.int32).reshape(4, 4)
    for i in range(10):
        out = augment.random_flip_rot({"a": square}, 2, _seed(i), flips=False, rot90=False)["a"]
        np.testing.assert_array_equal(out.numpy(), square)
    flips_only = _unique(
        augment.random_flip_rot({"a": square}, 2, _seed(i), rot90=False)["a"].numpy() for i in range(60)
    )
    assert len(flips_only) == 4  # identity, flip Y, flip X, both.
