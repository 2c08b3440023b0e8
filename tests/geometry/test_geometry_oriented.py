"""Oriented boxes: ovals along each nucleus' principal axes, rendered and decoded, 2D and 3D.

Axis-aligned bounding boxes of a diagonal, elongated nucleus are near-square, so its box-map
oval and stage-2 ellipse come out round; oriented boxes keep its shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nucgen_tf.config import RenderConfig
from nucgen_tf.geometry import (
    Boxes,
    boxes_from_box_map,
    boxes_from_labels,
    color_graph,
    render_box_map,
    render_colored_ellipses,
    render_representations,
)
from nucgen_tf.postprocess import decode
from nucgen_tf.trainers.realism_eval import box_shape, seeds_in_boxes


def _rotation(ndim: int, angle_deg: float) -> np.ndarray:
    if ndim == 2:
        a = np.deg2rad(angle_deg)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return Rotation.from_euler("zyx", [angle_deg, angle_deg / 2, 10.0], degrees=True).as_matrix()


def _solid_ellipsoid(shape, center, semi, axes) -> np.ndarray:
    """Pixels whose offset, in the axes' frame, lies inside the ellipsoid (full canvas)."""
    grid = np.stack(np.indices(shape), axis=-1).astype(np.float64) - center
    local = grid @ axes
    return ((local / semi) ** 2).sum(-1) <= 1.0


def _same_ellipse(axes_a, semi_a, axes_b, semi_b) -> float:
    """Largest entry difference of the two quadratic forms R diag(1/a^2) R^T (scale-free)."""
    form_a = axes_a @ np.diag(1.0 / np.asarray(semi_a) ** 2) @ axes_a.T
    form_b = axes_b @ np.diag(1.0 / np.asarray(semi_b) ** 2) @ axes_b.T
    return float(np.abs(form_a - form_b).max() / np.abs(form_a).max())


@pytest.mark.parametrize("ndim", [2, 3])
def test_oriented_boxes_of_a_turned_nucleus_keep_its_axes_and_aspect(ndim):
    shape = (64,) * ndim
    center = np.full(ndim, 31.3)
    semi = np.array([16.0, 7.0, 5.0][:ndim])
    axes = _rotation(ndim, 40.0)
    labels = _solid_ellipsoid(shape, center, semi, axes).astype(np.int32)
    oriented = boxes_from_labels(labels, oriented=True)
    assert oriented.oriented and len(oriented) == 1
    np.testing.assert_allclose(oriented.centers[0], center, atol=0.1)
    np.testing.assert_allclose(np.sort(oriented.extents[0] / 2), np.sort(semi), rtol=0.04)
    assert _same_ellipse(oriented.axes[0], oriented.extents[0] / 2, axes, semi) < 0.08
    # The axis-aligned box of the same nucleus is far rounder than the nucleus.
    _, aligned_aspect = box_shape(boxes_from_labels(labels))
    _, oriented_aspect = box_shape(oriented)
    assert oriented_aspect[0] == pytest.approx(semi.max() / semi.min(), rel=0.05)
    assert aligned_aspect[0] < 0.75 * oriented_aspect[0]


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("angle", [0.0, 25.0, 45.0, 70.0])
def test_turned_box_map_round_trips_through_the_full_quadratic_fit(ndim, angle):
    shape = (96,) * ndim
    centers = np.array([[30.4, 28.0, 40.0], [66.0, 64.6, 50.2]])[:, :ndim]
    extents = np.array([[44.0, 20.0, 16.0], [30.0, 18.0, 26.0]])[:, :ndim]
    axes = np.stack([_rotation(ndim, angle), _rotation(ndim, -angle / 2)])
    boxes = Boxes(centers, extents, axes=axes)
    box_map = render_box_map(boxes, shape)
    found = boxes_from_box_map(box_map, oriented=True)
    assert len(found) == 2 and found.oriented
    order = np.argsort(found.centers[:, 0])
    for i, j in enumerate(order):
        np.testing.assert_allclose(found.centers[j], centers[i], atol=0.05)
        np.testing.assert_allclose(np.sort(found.extents[j]), np.sort(extents[i]), rtol=0.01)
        assert _same_ellipse(found.axes[j], found.extents[j], axes[i], extents[i]) < 0.02


def test_axis_aligned_fit_of_a_turned_map_loses_the_aspect_the_oriented_fit_keeps():
    boxes = Boxes([[48.0, 48.0]], [[48.0, 16.0]], axes=_rotation(2, 45.0)[None])
    box_map = render_box_map(boxes, (96, 96))
    _, aligned = box_shape(boxes_from_box_map(box_map))
    _, oriented = box_shape(boxes_from_box_map(box_map, oriented=True))
    assert oriented[0] == pytest.approx(3.0, rel=0.02)
    assert aligned[0] < 1.2


def test_decode_box_map_splits_touching_turned_ovals_and_keeps_their_axes():
    axes = np.stack([_rotation(2, 30.0), _rotation(2, -30.0)])
    boxes = Boxes([[40.0, 30.0], [40.0, 52.0]], [[40.0, 16.0], [40.0, 16.0]], axes=axes)
    stored = render_box_map(boxes, (80, 80))
    found = decode.decode_box_map(stored, value_range=(0.0, 1.0), oriented=True)
    assert len(found) == 2 and found.oriented
    for j, i in enumerate(np.argsort(found.centers[:, 1])):
        np.testing.assert_allclose(found.centers[i], boxes.centers[j], atol=1.0)
        assert _same_ellipse(found.axes[i], found.extents[i], axes[j], boxes.extents[j]) < 0.15


def test_colored_ellipses_of_oriented_boxes_cover_turned_nuclei():
    shape = (80, 80)
    axes = _rotation(2, 45.0)
    nucleus = _solid_ellipsoid(shape, np.array([40.0, 40.0]), np.array([20.0, 7.0]), axes)
    labels = nucleus.astype(np.int32)

    def iou(oriented: bool) -> float:
        boxes = boxes_from_labels(labels, oriented=oriented)
        drawn = render_colored_ellipses(boxes, np.array([0]), shape).any(-1)
        return float((drawn & nucleus).sum() / (drawn | nucleus).sum())

    assert iou(True) > 0.9
    assert iou(False) < 0.6


def test_turned_parallel_nuclei_are_neighbours_only_by_their_real_gap():
    """Two parallel diagonal nuclei 12 px apart: their axis-aligned ovals overlap, their
    oriented ones do not come within the 3 px color margin."""
    axes = np.stack([_rotation(2, 45.0)] * 2)
    normal = axes[0][:, 1]
    centers = np.array([[50.0, 50.0], [50.0, 50.0]]) + np.outer([-6.0, 6.0], normal)
    oriented = Boxes(centers, [[50.0, 6.0], [50.0, 6.0]], axes=axes)
    assert color_graph(oriented, margin=3.0).number_of_edges() == 0
    # The same nuclei, axis-aligned (their bounding boxes): joined.
    half = oriented.half_widths(oriented.extents / 2)
    assert color_graph(Boxes(centers, 2 * half), margin=3.0).number_of_edges() == 1


def test_seeds_in_boxes_uses_each_box_s_own_axes():
    boxes = Boxes([[50.0, 50.0]], [[40.0, 8.0]], axes=_rotation(2, 45.0)[None])
    along = 50.0 + 15.0 * boxes.axes[0][:, 0]
    across = 50.0 + 15.0 * boxes.axes[0][:, 1]
    inside = seeds_in_boxes(np.stack([along, across]), boxes)
    assert inside[:, 0].tolist() == [True, False]


def test_render_config_oriented_reaches_the_representations():
    axes = _rotation(2, 35.0)
    labels = _solid_ellipsoid((64, 64), np.array([32.0, 32.0]), np.array([18.0, 6.0]), axes)
    labels = labels.astype(np.int32)
    lut = np.array([-1, 0], np.int32)
    maps = {
        oriented: render_representations(
            ("box_map", "ellipses"), RenderConfig(oriented=oriented), labels=labels, lut=lut
        )
        for oriented in (False, True)
    }
    turned = boxes_from_box_map(maps[True]["box_map"][..., 0], oriented=True)
    _, aspect = box_shape(turned)
    assert aspect[0] == pytest.approx(3.0, rel=0.06)
    assert not np.array_equal(maps[True]["ellipses"], maps[False]["ellipses"])


def test_boxes_reject_axes_that_are_not_rotations():
    with pytest.raises(ValueError, match="orthonormal"):
        Boxes([[1.0, 1.0]], [[2.0, 2.0]], axes=[[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="axes"):
        Boxes([[1.0, 1.0]], [[2.0, 2.0]], axes=np.stack([np.eye(2)] * 2))


def test_subset_keeps_the_axes():
    boxes = Boxes([[5.0, 5.0], [20.0, 20.0]], [[4.0, 2.0], [6.0, 3.0]], axes=[np.eye(2), _rotation(2, 30.0)])
    picked = boxes.subset(np.array([False, True]))
    assert picked.ids.tolist() == [2]
    np.testing.assert_allclose(picked.axes[0], _rotation(2, 30.0))
