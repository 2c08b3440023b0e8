"""Tests for nucgen_tf.postprocess.decode: box maps -> boxes, colored masks -> labels."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from nucgen_tf import phantoms
from nucgen_tf.geometry import (
    PALETTE,
    Boxes,
    assign_colors,
    boxes_from_labels,
    color_graph,
    color_lookup,
    color_lut,
    render_box_map,
    render_colored_mask,
)
from nucgen_tf.postprocess import decode_box_map, decode_colored_mask, split_box_map, to_stored_range
from tests.helpers import separated_boxes


def _generated(stored: np.ndarray) -> np.ndarray:
    """A stored-range map as a generator emits it, in [-1, 1]."""
    return (2.0 * stored - 1.0).astype(np.float32)


def _match(expected: Boxes, found: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """Centre and extent errors of each expected box vs its nearest found box (one-to-one)."""
    assert len(found) == len(expected)
    distance = np.linalg.norm(expected.centers[:, None] - found.centers[None], axis=-1)
    nearest = distance.argmin(1)
    assert len(np.unique(nearest)) == len(expected), "two boxes matched the same decoded box"
    return (
        np.abs(found.centers[nearest] - expected.centers),
        np.abs(found.extents[nearest] - expected.extents),
    )


def _separated_boxes(ndim: int, rng: np.random.Generator, cells: int = 3):
    return separated_boxes(ndim, rng, cell=20, cells=cells, min_extent=6)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a > 0, b > 0):
        return False
    keys = np.unique(a[a > 0].astype(np.int64) * (1 << 20) + b[b > 0])
    return len(keys) == len(np.unique(keys >> 20)) == len(np.unique(keys & ((1 << 20) - 1)))


def _best_ious(truth: np.ndarray, found: np.ndarray) -> list[float]:
    ious = []
    for label in range(1, int(truth.max()) + 1):
        mine = truth == label
        values, counts = np.unique(found[mine], return_counts=True)
        best = values[np.argmax(counts)]
        other = found == best if best else np.zeros_like(mine)
        ious.append(float((mine & other).sum() / (mine | other).sum()))
    return ious


def _balls(shape, centers, radius) -> np.ndarray:
    """Overlapping equal balls split at their contact (power diagram), labels 1..K."""
    grid = np.indices(shape, dtype=np.float64)
    distance = np.stack([sum((grid[d] - c[d]) ** 2 for d in range(len(shape))) for c in centers])
    return np.where((distance <= radius**2).any(0), distance.argmin(0) + 1, 0).astype(np.int32)


def _colored(labels: np.ndarray, width: int = 1):
    boxes = boxes_from_labels(labels)
    colors = assign_colors(color_graph(boxes, labels, 3.0))
    mask = render_colored_mask(labels, color_lut(colors, int(labels.max()) + 1), width)
    return mask, boxes, color_lookup(boxes, colors)


# ---------------------------------------------------------------------------- value range


def test_to_stored_range_maps_generator_output_to_unit_range():
    x = np.array([-1.0, 0.0, 1.0, 1.5, -3.0], np.float32)
    np.testing.assert_allclose(to_stored_range(x), [0.0, 0.5, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(to_stored_range(x, (0, 1)), [0.0, 0.0, 1.0, 1.0, 0.0])


def test_to_stored_range_rejects_an_empty_range():
    with pytest.raises(ValueError, match="value_range"):
        to_stored_range(np.zeros(3), (1, 1))


# ---------------------------------------------------------------------------- stage 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_box_map_round_trips_clean_separated_maps_exactly(ndim):
    boxes, shape = _separated_boxes(ndim, np.random.default_rng(ndim), cells=3 if ndim == 2 else 2)
    found = decode_box_map(_generated(render_box_map(boxes, shape)))
    center_error, extent_error = _match(boxes, found)
    assert center_error.max() < 1e-3 and extent_error.max() < 1e-3
    np.testing.assert_array_equal(found.ids, np.arange(1, len(boxes) + 1))


@pytest.mark.parametrize(
    "centers, extents",
    [
        ([[20, 20], [20, 28.5]], [[20, 20], [18, 22]]),  # side by side, ovals overlap by 1.5 px
        ([[20, 20], [20, 27]], [[20, 20], [18, 22]]),  # overlap by 3 px
        ([[20, 20], [26, 27]], [[24, 20], [18, 22]]),  # diagonal neighbours
        ([[20, 15], [20, 24], [27, 20]], [[18, 18], [18, 18], [16, 20]]),  # three in a clump
    ],
)
def test_decode_box_map_splits_touching_ovals(centers, extents):
    boxes = Boxes(np.asarray(centers, float), np.asarray(extents, float))
    stored = render_box_map(boxes, (40, 48))
    assert ndimage.label(stored > 0.1)[1] == 1, "the ovals must touch for this test to mean anything"
    center_error, extent_error = _match(boxes, decode_box_map(_generated(stored)))
    assert center_error.max() <= 1.5 and extent_error.max() <= 1.5
    assert len(decode_box_map(_generated(stored), split_touching=False)) == 1


def test_decode_box_map_splits_touching_ellipsoids_3d():
    boxes = Boxes(
        np.array([[10, 20, 20], [10, 20, 28], [12, 26, 24]], float),
        np.array([[14, 20, 20], [12, 18, 22], [12, 14, 14]], float),
    )
    stored = render_box_map(boxes, (20, 40, 44))
    assert ndimage.label(stored > 0.1)[1] == 1
    center_error, extent_error = _match(boxes, decode_box_map(_generated(stored)))
    assert center_error.max() <= 1.5 and extent_error.max() <= 1.5


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_box_map_keeps_a_noisy_oval_whole(ndim):
    shape = (40, 48) if ndim == 2 else (24, 32, 36)
    center = np.asarray(shape, float) / 2 + 0.3
    extents = np.array([24.0, 30.0] if ndim == 2 else [14.0, 20.0, 24.0])
    boxes = Boxes(center[None], extents[None])
    for seed in range(3):
        noisy = render_box_map(boxes, shape) + np.random.default_rng(seed).normal(0, 0.03, shape)
        found = decode_box_map(_generated(noisy))
        center_error, extent_error = _match(boxes, found)
        assert center_error.max() < 0.5 and extent_error.max() < 1.5


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_box_map_drops_specks(ndim):
    shape = (32,) * ndim
    boxes = Boxes(np.full((1, ndim), 15.0), np.full((1, ndim), 16.0))
    stored = render_box_map(boxes, shape)
    stored[(2,) * ndim] = 0.9  # a one-pixel speck
    stored[(28,) * ndim] = 0.9
    stored[(28,) * (ndim - 1) + (29,)] = 0.9  # a two-pixel speck
    found = decode_box_map(_generated(stored))
    assert len(found) == 1
    assert len(decode_box_map(_generated(stored), min_size=1)) == 3


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_box_map_with_seeds_keeps_only_seeded_pieces(ndim):
    boxes = Boxes(np.array([[10.0] * ndim, [30.0] * ndim]), np.full((2, ndim), 12.0))
    stored = render_box_map(boxes, (40,) * ndim)
    assert len(decode_box_map(_generated(stored))) == 2  # the paper's rule: every piece
    seeds = np.array([[29.6] * ndim, [-5.0] * ndim])  # one in the second oval, one off the canvas
    found, report = decode_box_map(_generated(stored), seeds=seeds, return_report=True)
    assert report == {"pieces": 2, "dropped_seedless": 1}
    center_error, extent_error = _match(Boxes(boxes.centers[1:], boxes.extents[1:]), found)
    assert center_error.max() < 1e-3 and extent_error.max() < 1e-3
    assert len(decode_box_map(_generated(stored), seeds=np.zeros((0, ndim)))) == 0


def test_decode_box_map_of_an_empty_map_is_empty():
    found = decode_box_map(np.full((16, 16, 16), -1.0, np.float32))
    assert len(found) == 0 and found.ndim == 3


def test_split_box_map_returns_consecutive_labels():
    boxes = Boxes(
        np.array([[20, 20], [20, 27], [8, 40]], float), np.array([[20, 20], [18, 22], [8, 8]], float)
    )
    labels = split_box_map(render_box_map(boxes, (40, 48)))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(labels), [0, 1, 2, 3])
    assert labels[8, 40] == 1  # the small oval's first pixel comes first in raster order
    assert labels[20, 20] != labels[20, 27]


# ---------------------------------------------------------------------------- stage 2


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("width", [1, 2])
def test_decode_colored_mask_round_trips_rendered_masks(ndim, width):
    shape = (96, 96) if ndim == 2 else (24, 48, 48)
    _, labels = phantoms.example(ndim=ndim, shape=shape, seed=1, kind="crowded")
    labels = labels.astype(np.int32)
    mask, boxes, _ = _colored(labels, width)
    decoded, report = decode_colored_mask(_generated(mask), boxes, boundary_width=width, return_report=True)
    assert _same_partition(decoded, labels)
    assert decoded.dtype == np.int32 and decoded.max() == len(boxes)
    assert report == {
        "n_components": len(boxes),
        "n_cut": 0,
        "n_watershed": 0,
        "n_unmatched_boxes": 0,
        "n_unmatched_components": 0,
        "n_joined": 0,
        "n_dropped": 0,
        "n_instances": len(boxes),
    }


def test_decode_colored_mask_round_trips_touching_discs_with_value_range_0_1():
    labels = _balls((40, 64), [(20, 12), (20, 25), (20, 38), (12, 52)], 7.0)
    mask, boxes, _ = _colored(labels)
    assert _same_partition(decode_colored_mask(mask, boxes, value_range=(0, 1)), labels)


@pytest.mark.parametrize(
    "shape, centers, radius",
    [
        ((40, 60), [(20, 17), (20, 30)], 8.0),
        ((40, 60), [(20, 12), (20, 25), (20, 38)], 8.0),
        ((50, 50), [(18, 16), (18, 31), (31, 24)], 8.0),
        ((24, 24, 40), [(12, 12, 12), (12, 12, 24)], 7.0),
        ((20, 30, 30), [(10, 10, 9), (10, 10, 20), (10, 20, 15)], 6.0),
    ],
)
def test_decode_colored_mask_cuts_same_color_touching_nuclei(shape, centers, radius):
    labels = _balls(shape, centers, radius)
    mask = np.zeros(shape + (4,), np.float32)
    mask[labels > 0, :3] = PALETTE[2]  # one color, no boundary: only the boxes tell them apart
    decoded, report = decode_colored_mask(_generated(mask), boxes_from_labels(labels), return_report=True)
    assert decoded.max() == len(centers)
    assert min(_best_ious(labels, decoded)) >= 0.9
    assert report["n_components"] == 1 and report["n_cut"] == 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_decode_colored_mask_survives_a_generator_like_blur(ndim):
    shape = (96, 96) if ndim == 2 else (24, 48, 48)
    _, labels = phantoms.example(ndim=ndim, shape=shape, seed=0, kind="crowded")
    labels = labels.astype(np.int32)
    mask, boxes, _ = _colored(labels)
    blurred = np.stack([ndimage.gaussian_filter(mask[..., c], 0.7) for c in range(4)], axis=-1)
    decoded = decode_colored_mask(_generated(blurred), boxes)
    assert decoded.max() == labels.max()
    assert np.median(_best_ious(labels, decoded)) >= 0.9


def test_decode_colored_mask_reports_watershed_splits_over_the_cut_budget():
    labels = _balls((40, 60), [(20, 12), (20, 25), (20, 38)], 8.0)
    mask = np.zeros((40, 60, 4), np.float32)
    mask[labels > 0, :3] = PALETTE[4]
    decoded, report = decode_colored_mask(
        mask, boxes_from_labels(labels), value_range=(0, 1), max_cut_work=0, return_report=True
    )
    assert report["n_cut"] == 1 and report["n_watershed"] == 1
    assert min(_best_ious(labels, decoded)) >= 0.9


def test_box_colors_keep_a_concave_nucleus_from_cutting_its_neighbour():
    """A C-shaped nucleus wraps a disc; its box centre falls inside the disc."""
    grid = np.indices((40, 40), dtype=np.float64)
    radius = np.hypot(grid[0] - 20, grid[1] - 20)
    labels = np.zeros((40, 40), np.int32)
    labels[radius <= 6] = 1
    labels[(radius >= 8) & (radius <= 12) & (grid[1] <= 24)] = 2
    mask, boxes, colors = _colored(labels)
    center = tuple(np.round(boxes.centers[1]).astype(int))
    assert labels[center] == 1, "the C's box centre must lie in the disc for this test"
    without, report = decode_colored_mask(mask, boxes, value_range=(0, 1), return_report=True)
    assert report["n_cut"] == 1 and without.max() == 3  # the disc is wrongly cut in two
    decoded = decode_colored_mask(mask, boxes, value_range=(0, 1), box_colors=colors)
    assert _same_partition(decoded, labels)


def test_unmatched_components_and_boxes():
    labels = _balls((40, 64), [(20, 12), (20, 40)], 7.0)
    mask, boxes, _ = _colored(labels)
    only_first = Boxes(boxes.centers[:1], boxes.extents[:1])
    kept, report = decode_colored_mask(mask, only_first, value_range=(0, 1), return_report=True)
    assert _same_partition(kept, labels)
    assert report["n_unmatched_components"] == 1 and report["n_instances"] == 2
    dropped = decode_colored_mask(mask, only_first, value_range=(0, 1), keep_unmatched=False)
    assert _same_partition(dropped, np.where(labels == 1, 1, 0))
    extra = Boxes(np.vstack([boxes.centers, [[5.0, 60.0]]]), np.vstack([boxes.extents, [[4.0, 4.0]]]))
    _, report = decode_colored_mask(mask, extra, value_range=(0, 1), return_report=True)
    assert report["n_unmatched_boxes"] == 1 and report["n_instances"] == 2


def test_decode_colored_mask_drops_specks():
    labels = _balls((40, 40), [(20, 20)], 7.0)
    labels[2:4, 2:4] = 2  # 4 px: below the 2D floor of 8
    mask, boxes, _ = _colored(labels)
    decoded = decode_colored_mask(mask, boxes, value_range=(0, 1))
    assert _same_partition(decoded, np.where(labels == 1, 1, 0))


def test_decode_colored_mask_rejects_three_channels():
    with pytest.raises(ValueError, match="shape"):
        decode_colored_mask(np.zeros((8, 8, 3)), Boxes.empty(2))


def test_decode_colored_mask_rejects_boxes_of_another_ndim():
    with pytest.raises(ValueError, match="ndim"):
        decode_colored_mask(np.zeros((8, 8, 4)), Boxes.empty(3))


def test_decode_colored_mask_rejects_bad_box_colors():
    with pytest.raises(ValueError, match="box_colors"):
        decode_colored_mask(np.zeros((8, 8, 4)), Boxes([[2.0, 2.0]], [[3.0, 3.0]]), box_colors=[99])


# ---------------------------------------------------------------------------- one nucleus per box


def _generator_like(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Boxes, np.ndarray]:
    """A colored mask as the short-trained stage 2 paints it: grayed, shifted, blurred, no boundary.

    The bundled generator turns a red oval into a gray disc with a magenta crescent, blurs
    every edge and never lifts the boundary class above 0.5; decoding by nearest palette
    color shattered such nuclei into 2-9 pieces.
    """
    mask, boxes, colors = _colored(labels)
    rgb = 0.55 * mask[..., :3] + 0.45 * 0.4  # toward gray
    grid = np.indices(labels.shape, dtype=np.float64)
    for label, (center, extent) in enumerate(zip(boxes.centers, boxes.extents), start=1):
        side = rng.normal(size=labels.ndim)
        reach = sum((grid[d] - center[d]) * side[d] / max(extent[d], 1.0) for d in range(labels.ndim))
        crescent = (labels == label) & (reach > 0.25 * np.linalg.norm(side))
        rgb[crescent] += rng.uniform(-0.35, 0.35, size=3)  # a crescent of another hue
    rgb = np.stack([ndimage.gaussian_filter(rgb[..., c], 1.0) for c in range(3)], axis=-1)
    boundary = 0.45 * ndimage.gaussian_filter(mask[..., 3], 1.0)
    generated = np.concatenate([rgb, boundary[..., None]], axis=-1)
    generated += rng.normal(0.0, 0.03, generated.shape)
    return np.clip(generated, 0.0, 1.0).astype(np.float32), boxes, colors


def _real_crop(bbbc039_train: pathlib.Path, shape=(160, 200)) -> np.ndarray:
    path = sorted((bbbc039_train / "masks").glob("*.tif"))[3]
    labels = tifffile.imread(path)[: shape[0], : shape[1]].astype(np.int32)
    labels = relabel_sequential(labels)[0]
    sizes = np.bincount(labels.ravel())
    return relabel_sequential(np.where(sizes[labels] >= 30, labels, 0))[0].astype(np.int32)


def _assert_whole(labels: np.ndarray, decoded: np.ndarray, boxes: Boxes, report: dict) -> None:
    """One decoded nucleus per true one, each true nucleus almost entirely in its best label.

    IoU is not asked for: the blur moves every outline by about a pixel, which costs small
    3D nuclei a third of their IoU without splitting anything.
    """
    matched_boxes = len(boxes) - report["n_unmatched_boxes"]
    assert decoded.max() / matched_boxes <= 1.05, "more than one nucleus per box"
    assert decoded.max() == labels.max()
    shares = []
    for label in range(1, int(labels.max()) + 1):
        found = decoded[(labels == label) & (decoded > 0)]
        shares.append(np.bincount(found).max() / max(len(found), 1))
    assert min(shares) >= 0.8, sorted(shares)[:5]
    assert np.median(shares) >= 0.95


@pytest.mark.parametrize("ndim", [2, 3])
def test_generator_like_blended_masks_decode_to_whole_nuclei(ndim):
    shape = (128, 128) if ndim == 2 else (24, 64, 64)
    _, labels = phantoms.example(ndim=ndim, shape=shape, seed=2, kind="crowded")
    labels = labels.astype(np.int32)
    mask, boxes, colors = _generator_like(labels, np.random.default_rng(ndim))
    decoded, report = decode_colored_mask(
        mask, boxes, value_range=(0, 1), box_colors=colors, return_report=True
    )
    _assert_whole(labels, decoded, boxes, report)


def test_generator_like_blended_real_masks_decode_to_whole_nuclei(bbbc039_train):
    labels = _real_crop(bbbc039_train)
    mask, boxes, colors = _generator_like(labels, np.random.default_rng(0))
    decoded, report = decode_colored_mask(
        mask, boxes, value_range=(0, 1), box_colors=colors, return_report=True
    )
    _assert_whole(labels, decoded, boxes, report)


def test_real_masks_round_trip_exactly(bbbc039_train):
    """Every real nucleus of at least min_size px comes back as itself (thin tips, tiny nuclei)."""
    for path in sorted((bbbc039_train / "masks").glob("*.tif"))[:4]:
        labels = tifffile.imread(path).astype(np.int32)
        sizes = np.bincount(labels.ravel())
        labels = relabel_sequential(np.where(sizes[labels] >= 8, labels, 0))[0].astype(np.int32)
        mask, boxes, colors = _colored(labels)
        decoded = decode_colored_mask(mask, boxes, value_range=(0, 1), box_colors=colors)
        assert _same_partition(decoded, labels), path.name


def test_a_boxless_nucleus_sized_core_is_one_added_nucleus_and_a_fragment_joins_its_box():
    labels = _balls((48, 80), [(24, 14), (24, 40), (24, 64)], 9.0)
    mask, boxes, colors = _colored(labels)
    # A spurious boundary line through the middle nucleus: its right half holds no box centre.
    mask[:, 42, 3] = np.maximum(mask[:, 42, 3], labels[:, 42] == 2)
    keep = [0, 1]  # the third nucleus gets no box: the generator added it
    decoded, report = decode_colored_mask(
        mask, Boxes(boxes.centers[keep], boxes.extents[keep]), value_range=(0, 1),
        box_colors=colors[keep], return_report=True,
    )  # fmt: skip
    assert _same_partition(decoded, labels)
    assert report["n_unmatched_components"] == 1 and report["n_joined"] == 1
    dropped = decode_colored_mask(
        mask, Boxes(boxes.centers[keep], boxes.extents[keep]), value_range=(0, 1),
        box_colors=colors[keep], keep_unmatched=False,
    )  # fmt: skip
    assert _same_partition(dropped, np.where(labels < 3, labels, 0))


def test_a_small_boxless_fringe_is_dropped_when_it_touches_no_nucleus():
    labels = _balls((40, 64), [(20, 14)], 8.0)
    labels[18:23, 50:55] = 2  # 25 px, below a quarter of the box oval (~57 px)
    mask, boxes, colors = _colored(labels)
    first = Boxes(boxes.centers[:1], boxes.extents[:1])
    decoded, report = decode_colored_mask(
        mask, first, value_range=(0, 1), box_colors=colors[:1], return_report=True
    )
    assert _same_partition(decoded, np.where(labels == 1, 1, 0))
    assert report["n_dropped"] == 1


def test_holes_inside_a_nucleus_are_filled_but_gaps_between_nuclei_are_not():
    labels = _balls((40, 64), [(20, 14), (20, 44)], 9.0)
    mask, boxes, colors = _colored(labels)
    mask[19:22, 13:16, :3] = 0.0  # a dark speck painted inside the first nucleus
    decoded = decode_colored_mask(mask, boxes, value_range=(0, 1), box_colors=colors)
    assert _same_partition(decoded, labels)
    from nucgen_tf.postprocess.decode import fill_enclosed_holes

    ring = np.zeros((12, 12), np.int32)
    ring[2:10, 2:10] = 1
    ring[2:10, 6:10] = 2
    ring[5:7, 5:7] = 0  # a pocket bordered by both labels stays background
    np.testing.assert_array_equal(fill_enclosed_holes(ring), ring)
    ring[5:7, 5:7] = 0
    ring[3:9, 3:9][ring[3:9, 3:9] == 2] = 1
    ring[5:7, 5:7] = 0
    assert fill_enclosed_holes(ring)[5, 5] == 1
