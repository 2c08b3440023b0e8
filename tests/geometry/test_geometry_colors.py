"""Tests for nucgen_tf.geometry.colors: graph coloring, colored renders and their decoding."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from nucgen_tf.geometry import (
    PALETTE,
    Boxes,
    assign_colors,
    boundary_map,
    boxes_from_labels,
    color_graph,
    color_lookup,
    color_lut,
    labels_from_colored_mask,
    nearest_palette_index,
    render_colored_ellipses,
    render_colored_mask,
    render_stage2_pair,
)


def _ball(shape, center, radius) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    return sum((grid[d] - center[d]) ** 2 for d in range(len(shape))) <= radius**2


def _paint(shape, centers, radius) -> np.ndarray:
    """Labels 1..N of balls; later balls overwrite earlier ones (so overlapping balls touch)."""
    labels = np.zeros(shape, np.int32)
    for k, center in enumerate(centers):
        labels[_ball(shape, center, radius)] = k + 1
    return labels


def _touching_scene(ndim: int) -> np.ndarray:
    """Balls 1-2 overlap (touching after painting), 3 is 2 px from 2, 4 is far away."""
    if ndim == 2:
        return _paint((40, 48), [(12, 10), (12, 19), (12, 32), (32, 40)], 5)
    return _paint((24, 28, 36), [(8, 8, 8), (8, 8, 17), (8, 8, 28), (18, 20, 30)], 4)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label masks are equal up to a permutation of the labels."""
    if not np.array_equal(a > 0, b > 0):
        return False
    keys = np.unique(a[a > 0].astype(np.int64) * (1 << 20) + b[b > 0])
    return len(keys) == len(np.unique(keys >> 20)) == len(np.unique(keys & ((1 << 20) - 1)))


def _render_mask(labels: np.ndarray, margin: float = 3.0, width: int = 1) -> np.ndarray:
    boxes = boxes_from_labels(labels)
    colors = assign_colors(color_graph(boxes, labels, margin))
    return render_colored_mask(labels, color_lut(colors, int(labels.max()) + 1), width)


def test_palette_is_fixed_read_only_and_separated():
    assert PALETTE.shape == (12, 3) and PALETTE.dtype == np.float32
    assert PALETTE.min() >= 0 and PALETTE.max() <= 1
    with pytest.raises(ValueError):
        PALETTE[0, 0] = 0.5
    with_black = np.concatenate([np.zeros((1, 3)), PALETTE])
    distance = np.linalg.norm(with_black[:, None] - with_black[None], axis=-1) + np.eye(13) * 9
    assert distance[:8, :8].min() >= 1.0  # black + the 7 cube corners
    assert distance.min() >= np.sqrt(0.5) - 1e-6
    np.testing.assert_array_equal(np.sort(PALETTE[:7].sum(1)), [1, 1, 1, 2, 2, 2, 3])


@pytest.mark.parametrize("ndim", [2, 3])
def test_touching_and_near_nuclei_get_different_colors(ndim):
    labels = _touching_scene(ndim)
    assert labels.max() == 4
    graph = color_graph(boxes_from_labels(labels), labels, margin=3.0)
    assert sorted(graph.nodes) == [1, 2, 3, 4]
    assert graph.has_edge(1, 2)  # touching
    assert graph.has_edge(2, 3)  # 2 px gap < margin
    assert not graph.has_edge(1, 3) and graph.degree(4) == 0
    colors = assign_colors(graph)
    assert colors[1] != colors[2] and colors[2] != colors[3]


@pytest.mark.parametrize("ndim", [2, 3])
def test_margin_zero_still_separates_touching_masks(ndim):
    labels = _touching_scene(ndim)
    # Shrink the boxes to points so only the mask test can create edges.
    boxes = boxes_from_labels(labels)
    points = Boxes(boxes.centers, np.ones_like(boxes.extents), boxes.ids)
    graph = color_graph(points, labels, margin=0.0)
    assert sorted(graph.edges) == [(1, 2)]


def test_ellipses_within_margin_are_joined_without_masks():
    # Full-size ovals (semi-axes 5) 2 px apart: joined at margin 3, not at margin 1.
    boxes = Boxes([[10.0, 10.0], [10.0, 23.0]], [[11.0, 11.0], [11.0, 11.0]])
    assert color_graph(boxes, margin=3.0).has_edge(1, 2)
    assert not color_graph(boxes, margin=1.0).has_edge(1, 2)


def test_color_graph_rejects_labels_without_boxes():
    labels = _touching_scene(2)
    boxes = boxes_from_labels(np.where(labels == 4, 0, labels))
    with pytest.raises(ValueError, match="missing ids=\\[4\\]"):
        color_graph(boxes, labels)


def test_assign_colors_is_proper_and_small():
    graph = nx.grid_2d_graph(6, 6)  # bipartite
    colors = assign_colors(nx.convert_node_labels_to_integers(graph))
    assert max(colors.values()) == 1
    planar = nx.convert_node_labels_to_integers(nx.triangular_lattice_graph(5, 8))
    colors = assign_colors(planar)
    assert all(colors[a] != colors[b] for a, b in planar.edges)
    assert max(colors.values()) + 1 <= 4


def test_assign_colors_too_many_colors_names_the_count():
    with pytest.raises(ValueError, match="needs 13 colors"):
        assign_colors(nx.complete_graph(13))


def test_assign_colors_respects_n_colors():
    with pytest.raises(ValueError, match="n_colors=2"):
        assign_colors(nx.cycle_graph(5), n_colors=2)


def test_assign_colors_random_palette_choice():
    graph = nx.path_graph(10)
    colors = [assign_colors(graph, rng=np.random.default_rng(k)) for k in range(20)]
    assert all(c[a] != c[b] for c in colors for a, b in graph.edges)
    used = {v for c in colors for v in c.values()}
    assert len(used) > 2 and max(used) < 7  # two classes, drawn from the 7 best colors


@pytest.mark.parametrize("ndim", [2, 3])
def test_same_nucleus_same_color_in_ellipses_and_mask(ndim):
    labels = _touching_scene(ndim)
    ellipses, mask = render_stage2_pair(labels)
    assert ellipses.shape == labels.shape + (3,) and mask.shape == labels.shape + (4,)
    assert ellipses.dtype == mask.dtype == np.float32
    boxes = boxes_from_labels(labels)
    for center, label in zip(boxes.centers, boxes.ids):
        pixel = tuple(np.round(center).astype(int))
        assert labels[pixel] == label
        np.testing.assert_array_equal(ellipses[pixel], mask[pixel][:3])
        assert mask[pixel][:3].max() > 0
    assert np.all(mask[labels == 0] == 0)


def test_colored_ellipses_overlap_goes_to_smallest_q():
    boxes = Boxes([[10.0, 10.0], [10.0, 16.0]], [[13.0, 13.0], [9.0, 9.0]])
    image = render_colored_ellipses(boxes, np.array([0, 1]), (21, 27))
    np.testing.assert_array_equal(image[10, 13], PALETTE[0])  # q1 = 0.25 < q2 = 0.56
    np.testing.assert_array_equal(image[10, 15], PALETTE[1])  # q1 = 0.69 > q2 = 0.05
    assert np.all(image[0, 0] == 0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_boundary_map_known_values(ndim):
    labels = np.zeros((8,) * ndim, np.int32)
    labels[(slice(2, 6),) * ndim] = 1
    boundary = boundary_map(labels)
    inner = np.zeros_like(boundary)
    inner[(slice(3, 5),) * ndim] = True
    np.testing.assert_array_equal(boundary, (labels > 0) & ~inner)
    assert boundary_map(labels, width=2).sum() == 4**ndim


def test_boundary_map_touching_and_canvas_edge():
    labels = np.zeros((5, 8), np.int32)
    labels[:, :4] = 1  # touches the canvas edge on three sides
    labels[:, 4:6] = 2
    boundary = boundary_map(labels)
    np.testing.assert_array_equal(boundary[:, 3], True)  # next to label 2
    np.testing.assert_array_equal(boundary[:, :3], False)  # canvas edge is no boundary
    np.testing.assert_array_equal(boundary[:, 4:6], True)  # 2 px wide: all boundary


def test_render_colored_mask_requires_colors_for_every_label():
    labels = np.array([[0, 1, 2]], np.int32)
    with pytest.raises(ValueError, match="no color for labels \\[2\\]"):
        render_colored_mask(labels, np.array([-1, 3, -1]))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("width", [1, 2])
def test_decode_render_round_trip_hand_built(ndim, width):
    labels = _touching_scene(ndim)
    mask = _render_mask(labels, width=width)
    decoded = labels_from_colored_mask(mask, boundary_width=width)
    assert decoded.dtype == np.int32 and decoded.max() == labels.max()
    assert _same_partition(decoded, labels)
    assert _same_partition(labels_from_colored_mask(mask, use_boundary=False), labels)


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_keeps_a_nucleus_with_a_thin_neck_whole(ndim):
    """Two lobes joined by a 2 px neck: the rendered boundary cuts the core, yet one instance."""
    shape = (24, 40) if ndim == 2 else (12, 24, 40)
    center = [s // 2 for s in shape]
    labels = (_ball(shape, center[:-1] + [10], 6) | _ball(shape, center[:-1] + [28], 6)).astype(np.int32)
    neck = tuple(slice(c, c + 2) for c in center[:-1]) + (slice(10, 29),)
    labels[neck] = 1
    mask = _render_mask(labels)
    core = (labels > 0) & (mask[..., 3] == 0)
    assert ndimage.label(core)[1] == 2  # the boundary really cuts it
    decoded = labels_from_colored_mask(mask)
    assert decoded.max() == 1 and _same_partition(decoded, labels)


def test_decode_splits_same_color_nuclei_along_a_drawn_boundary():
    """A generated mask may give two touching nuclei one color: the boundary class separates them."""
    labels = _paint((30, 40), [(15, 12), (15, 25)], 8)
    mask = render_colored_mask(labels, np.array([-1, 0, 0]))  # same color for both
    assert labels_from_colored_mask(mask, use_boundary=False).max() == 1
    decoded = labels_from_colored_mask(mask)
    assert _same_partition(decoded, labels)


def test_decode_splits_along_a_one_pixel_line():
    """Only one side of the contact marked (a 1 px line through the blob) still separates."""
    labels = _paint((30, 40), [(15, 12), (15, 25)], 8)
    mask = render_colored_mask(labels, np.array([-1, 0, 0]))
    line = boundary_map(labels) & (labels == 2) & ~boundary_map((labels > 0).astype(np.int32))
    assert line.sum() >= 8
    mask[..., 3] = boundary_map((labels > 0).astype(np.int32)) | line
    decoded = labels_from_colored_mask(mask)
    assert decoded.max() == 2
    for label in (1, 2):
        overlap = np.bincount(decoded[labels == label]).max()
        assert overlap >= (labels == label).sum() - line.sum()


def test_decode_is_robust_to_color_noise():
    labels = _touching_scene(2)
    mask = _render_mask(labels)
    noisy = mask + np.random.default_rng(0).normal(scale=0.08, size=mask.shape).astype(np.float32)
    assert _same_partition(labels_from_colored_mask(noisy), labels)


def test_decode_min_size_and_bad_shape():
    mask = np.zeros((6, 6, 3), np.float32)
    mask[1, 1] = PALETTE[0]
    mask[3:6, 3:6] = PALETTE[1]
    assert labels_from_colored_mask(mask).max() == 2
    assert labels_from_colored_mask(mask, min_size=2).max() == 1
    with pytest.raises(ValueError, match="shape"):
        labels_from_colored_mask(np.zeros((6, 6, 2)))


def test_nearest_palette_index():
    rgb = np.stack([np.zeros(3), PALETTE[4] * 0.9, np.full(3, 0.1), PALETTE[9]])[None].astype(np.float32)
    np.testing.assert_array_equal(nearest_palette_index(rgb), [[0, 5, 0, 10]])


def test_color_lookup_aligned_with_ids():
    boxes = Boxes(np.zeros((3, 2)), np.ones((3, 2)), ids=[7, 2, 5])
    np.testing.assert_array_equal(color_lookup(boxes, {2: 1, 5: 0, 7: 3}), [3, 1, 0])
    with pytest.raises(ValueError, match="missing ids=\\[5\\]"):
        color_lookup(boxes, {2: 1, 7: 3})


def test_real_bbbc039_masks_round_trip_exactly(bbbc039_train):
    """Every instance of the 20 BBBC039 train masks comes back exactly from its colored mask."""
    files = sorted((bbbc039_train / "masks").glob("*.tif"))
    assert len(files) == 20
    n_instances = n_exact = 0
    for path in files:
        labels = tifffile.imread(path).astype(np.int32)
        decoded = labels_from_colored_mask(_render_mask(labels))
        keys, counts = np.unique(labels.astype(np.int64) * (1 << 20) + decoded, return_counts=True)
        sizes = np.bincount(labels.ravel())
        decoded_sizes = np.bincount(decoded.ravel())
        for a, b, count in zip(keys >> 20, keys & ((1 << 20) - 1), counts):
            if a > 0 and b > 0 and count == sizes[a] == decoded_sizes[b]:
                n_exact += 1
        n_instances += int((sizes[1:] > 0).sum())
    assert n_instances > 2000
    assert n_exact == n_instances, f"{n_exact} of {n_instances} instances round-trip exactly"
