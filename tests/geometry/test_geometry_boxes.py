"""Tests for nucgen_tf.geometry.boxes: Eq. 1 box maps and their inversion."""

from __future__ import annotations

import numpy as np
import pytest

from nucgen_tf.geometry import (
    Boxes,
    boxes_from_box_map,
    boxes_from_labels,
    label_box_map,
    render_box_map,
)
from tests.helpers import separated_boxes


def _reference_box_map(boxes: Boxes, shape, bv=0.25) -> np.ndarray:
    """Full-canvas NumPy reference of Eq. 1 (no windows)."""
    grid = np.indices(shape, dtype=np.float64)
    out = np.zeros(shape)
    for center, extent in zip(boxes.centers, boxes.extents):
        semi = np.maximum(extent / 4, 0.5)
        q = sum(((grid[d] - center[d]) / semi[d]) ** 2 for d in range(len(shape)))
        out = np.maximum(out, np.where(q <= 1, (1 - q + bv) / (1 + bv), 0))
    return out


def _random_separated_boxes(ndim: int, rng: np.random.Generator):
    """Extents >= 5: thinner boxes render as ovals 1-2 pixels thick, which loses their size
    (documented in `boxes_from_box_map`); `test_tiny_boxes_*` cover them."""
    return separated_boxes(ndim, rng, cell=24, cells=3, min_extent=5)


def _match(expected: Boxes, found: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """Centre and extent errors of each expected box vs its nearest found box."""
    distance = np.linalg.norm(expected.centers[:, None] - found.centers[None], axis=-1)
    nearest = distance.argmin(1)
    assert len(np.unique(nearest)) == len(expected), "two boxes matched the same component"
    return (
        np.abs(found.centers[nearest] - expected.centers),
        np.abs(found.extents[nearest] - expected.extents),
    )


def test_boxes_defaults_and_read_only():
    boxes = Boxes([[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [1.0, 3.0]])
    assert boxes.ndim == 2 and len(boxes) == 2
    np.testing.assert_array_equal(boxes.ids, [1, 2])
    assert boxes.centers.dtype == np.float64 and boxes.ids.dtype == np.int64
    with pytest.raises(ValueError):
        boxes.centers[0, 0] = 5.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_boxes_empty(ndim):
    boxes = Boxes.empty(ndim)
    assert len(boxes) == 0 and boxes.ndim == ndim
    assert render_box_map(boxes, (4,) * ndim).sum() == 0


def test_boxes_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        Boxes(np.zeros((2, 2)), np.ones((2, 3)))


def test_boxes_rejects_non_positive_extents():
    with pytest.raises(ValueError, match="extents"):
        Boxes(np.zeros((1, 2)), np.array([[1.0, 0.0]]))


def test_boxes_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="unique"):
        Boxes(np.zeros((2, 2)), np.ones((2, 2)), ids=[3, 3])


@pytest.mark.parametrize("ndim", [2, 3])
def test_boxes_from_labels_known_values(ndim):
    labels = np.zeros((12,) * ndim, np.int32)
    labels[(slice(2, 5),) + (slice(3, 9),) * (ndim - 1)] = 1  # extent 3 x 6 (x 6)
    labels[(7,) * ndim] = 3  # id 2 missing on purpose; a single pixel
    boxes = boxes_from_labels(labels)
    np.testing.assert_array_equal(boxes.ids, [1, 3])
    np.testing.assert_allclose(boxes.centers, [[3.0] + [5.5] * (ndim - 1), [7.0] * ndim])
    np.testing.assert_allclose(boxes.extents, [[3.0] + [6.0] * (ndim - 1), [1.0] * ndim])


def test_boxes_from_labels_empty():
    boxes = boxes_from_labels(np.zeros((5, 6), np.int32))
    assert len(boxes) == 0 and boxes.ndim == 2


@pytest.mark.parametrize("ndim", [2, 3])
def test_eq1_centre_rim_and_outside(ndim):
    extents = [16.0, 8.0, 12.0][:ndim]
    center = [10.0, 12.0, 14.0][:ndim]
    shape = (24, 28, 30)[:ndim]
    box_map = render_box_map(Boxes([center], [extents]), shape)
    assert box_map.dtype == np.float32 and box_map.shape == shape
    c = tuple(int(v) for v in center)
    assert box_map[c] == pytest.approx(1.0, abs=1e-6)
    for axis in range(ndim):
        semi = extents[axis] / 4
        rim = list(c)
        rim[axis] += int(semi)
        outside = list(c)
        outside[axis] += int(semi) + 1
        assert box_map[tuple(rim)] == pytest.approx(0.2, abs=1e-6)
        assert box_map[tuple(outside)] == 0.0
    assert box_map.max() == pytest.approx(1.0)
    assert box_map[box_map > 0].min() >= 0.2 - 1e-6


@pytest.mark.parametrize("ndim", [2, 3])
def test_render_matches_full_canvas_reference(ndim):
    rng = np.random.default_rng(1)
    shape = (20, 24, 22)[:ndim]
    # Overlapping, off-grid and canvas-crossing boxes.
    centers = rng.uniform(-2, np.asarray(shape) + 2, size=(6, ndim))
    extents = rng.uniform(3, 20, size=(6, ndim))
    boxes = Boxes(centers, extents)
    np.testing.assert_allclose(render_box_map(boxes, shape), _reference_box_map(boxes, shape), atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiny_boxes_still_render(ndim):
    one = render_box_map(Boxes([[3.0] * ndim], [[1.0] * ndim]), (7,) * ndim)
    assert np.count_nonzero(one) == 1 and one[(3,) * ndim] == pytest.approx(1.0)
    # Extent 2 centred on a pixel corner: no pixel centre inside, the nearest gets the rim value.
    corner = render_box_map(Boxes([[3.5] * ndim], [[2.0] * ndim]), (7,) * ndim)
    assert np.count_nonzero(corner) >= 1
    assert corner.max() == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip_boxes_map_boxes(ndim, seed):
    rng = np.random.default_rng(seed)
    boxes, shape = _random_separated_boxes(ndim, rng)
    found = boxes_from_box_map(render_box_map(boxes, shape))
    assert len(found) == len(boxes)
    assert len(np.unique(boxes.extents % 2)) == 2 and np.ptp(boxes.extents, axis=1).max() >= 5
    center_error, extent_error = _match(boxes, found)
    # Well within the 1 px contract: the least-squares inversion of Eq. 1 is exact.
    assert center_error.max() < 1e-5
    assert extent_error.max() < 1e-5


@pytest.mark.parametrize("ndim", [2, 3])
def test_round_trip_through_labels(ndim):
    """labels -> boxes -> map -> boxes gives the label boxes back (anisotropic, odd and even)."""
    labels = np.zeros((30,) * ndim, np.int32)
    labels[(slice(2, 13),) + (slice(3, 9),) * (ndim - 1)] = 1  # 11 x 6
    labels[(slice(16, 28),) + (slice(14, 29),) * (ndim - 1)] = 2  # 12 x 15
    expected = boxes_from_labels(labels)
    found = boxes_from_box_map(render_box_map(expected, labels.shape))
    np.testing.assert_allclose(found.centers, expected.centers, atol=1e-5)
    np.testing.assert_allclose(found.extents, expected.extents, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiny_boxes_round_trip_within_1_px(ndim):
    """Square extent-1..4 boxes still come back within 1 px (anisotropic tiny ones within 2)."""
    centers = [[4.0] * ndim, [14.5] * ndim, [24.0] * ndim, [34.5] * ndim]
    extents = [[1.0] * ndim, [2.0] * ndim, [3.0] * ndim, [4.0] * ndim]
    boxes = Boxes(centers, extents)
    found = boxes_from_box_map(render_box_map(boxes, (40,) * ndim))
    assert len(found) == 4
    center_error, extent_error = _match(boxes, found)
    assert center_error.max() <= 1.0 and extent_error.max() <= 1.0
    thin = Boxes([[20.5] * ndim], [[4.0] * (ndim - 1) + [2.0]])  # renders a single rim pixel
    found = boxes_from_box_map(render_box_map(thin, (40,) * ndim))
    assert len(found) == 1
    assert np.abs(found.centers - thin.centers).max() <= 2.0
    assert np.abs(found.extents - thin.extents).max() <= 2.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_noisy_map_recovers_within_1_5_px(ndim):
    rng = np.random.default_rng(7)
    boxes, shape = _random_separated_boxes(ndim, rng)
    noisy = render_box_map(boxes, shape) + rng.normal(scale=0.02, size=shape)
    found = boxes_from_box_map(np.clip(noisy, 0, 1))
    assert len(found) == len(boxes)
    center_error, extent_error = _match(boxes, found)
    assert center_error.max() <= 1.5
    assert extent_error.max() <= 1.5


def test_precomputed_components_give_the_same_boxes():
    rng = np.random.default_rng(3)
    boxes, shape = _random_separated_boxes(2, rng)
    box_map = render_box_map(boxes, shape)
    components = label_box_map(box_map)
    assert components.dtype == np.int32 and components.max() == len(boxes)
    default = boxes_from_box_map(box_map)
    given = boxes_from_box_map(box_map, components=components)
    np.testing.assert_array_equal(default.centers, given.centers)
    np.testing.assert_array_equal(default.ids, given.ids)


def test_min_size_drops_specks():
    box_map = np.zeros((10, 10), np.float32)
    box_map[2, 2] = 0.9
    box_map[5:8, 5:8] = 0.5
    assert len(boxes_from_box_map(box_map)) == 2
    assert len(boxes_from_box_map(box_map, min_size=2)) == 1


def test_render_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        render_box_map(Boxes([[1.0, 1.0]], [[2.0, 2.0]]), (8, 8, 8))


def _bowl(shape, center, radius: float, curvature: float) -> np.ndarray:
    """A bright disc/ball whose values fall only by `curvature` from centre to rim, then drop to 0:
    a generated blob that is not Eq. 1-shaped (Eq. 1 falls from 1.0 to 0.2)."""
    r2 = sum((g - c) ** 2 for g, c in zip(np.indices(shape, dtype=np.float64), center)) / radius**2
    return np.where(r2 <= 1.0, 0.9 - curvature * r2, 0.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_flat_blob_is_not_fitted_wider_than_itself(ndim):
    # Least squares would put an oval 1.6x wider than the blob under it (a box 6.5 x the radius);
    # the box must stay about twice the blob (oval = the blob), as for an Eq. 1 map.
    shape = (48,) * ndim
    found = boxes_from_box_map(_bowl(shape, (24.0,) * ndim, radius=8.0, curvature=0.3))
    assert len(found) == 1
    np.testing.assert_allclose(found.extents[0], 32.0, atol=3.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_an_oval_cut_by_the_canvas_edge_is_still_fitted_whole(ndim):
    shape = (40,) * ndim
    center = np.full(ndim, 20.0)
    center[0] = 3.0  # the box reaches 11 px past the edge on axis 0
    boxes = Boxes(center[None], np.full((1, ndim), 28.0))
    found = boxes_from_box_map(render_box_map(boxes, shape))
    center_error, extent_error = _match(boxes, found)
    assert center_error.max() < 1e-3 and extent_error.max() < 1e-3
