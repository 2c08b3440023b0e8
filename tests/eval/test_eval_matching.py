"""Overlap table and matching against brute-force references on random label images."""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest

from nucgen_tf.eval import check_label_pair, match, overlap_table, score
from nucgen_tf.eval.matching import _overlap_table

SHAPES = {2: (24, 24), 3: (6, 12, 12)}


def random_boxes(rng: np.random.Generator, shape: tuple[int, ...], n: int, max_id: int) -> np.ndarray:
    """n boxes painted over each other with random distinct ids below max_id (some get hidden)."""
    labels = np.zeros(shape, np.int64)
    for label in rng.choice(np.arange(1, max_id), size=n, replace=False):
        start = [rng.integers(0, s - 1) for s in shape]
        stop = [b + rng.integers(2, max(3, s // 2)) for b, s in zip(start, shape)]
        labels[tuple(slice(b, e) for b, e in zip(start, stop))] = label
    return labels


def perturbed(rng: np.random.Generator, truth: np.ndarray, max_id: int) -> np.ndarray:
    """The truth shifted by up to 2 px, relabelled, plus a few spurious boxes: many partial overlaps."""
    shift = rng.integers(-2, 3, size=truth.ndim)
    pred = np.roll(truth, shift, axis=tuple(range(truth.ndim)))
    ids = np.unique(pred)
    lut = dict(zip(ids, [0, *rng.choice(np.arange(1, max_id), size=len(ids) - 1, replace=False)]))
    pred = np.vectorize(lut.get, otypes=[np.int64])(pred)
    extra = random_boxes(rng, truth.shape, 3, max_id)
    return np.where(extra > 0, extra, pred)


def brute_force_table(truth: np.ndarray, pred: np.ndarray) -> dict[tuple[int, int], tuple[int, float]]:
    table = {}
    for t in np.unique(truth[truth > 0]):
        for p in np.unique(pred[pred > 0]):
            a, b = truth == t, pred == p
            inter = int((a & b).sum())
            if inter:
                table[int(t), int(p)] = (inter, inter / (a | b).sum())
    return table


def random_pairs(ndim: int, n_pairs: int):
    rng = np.random.default_rng(ndim)
    for k in range(n_pairs):
        max_id = 30 if k % 2 else 10**6  # small ids: lookup table; huge: the np.unique path
        truth = random_boxes(rng, SHAPES[ndim], int(rng.integers(0, 12)), max_id)
        yield truth, perturbed(rng, truth, max_id)


@pytest.mark.parametrize("ndim", [2, 3])
def test_overlap_table_matches_brute_force(ndim):
    for truth, pred in random_pairs(ndim, 12):
        table = overlap_table(truth, pred)
        expected = brute_force_table(truth, pred)
        got = {
            (int(table.true_ids[i]), int(table.pred_ids[j])): (int(n), float(iou))
            for i, j, n, iou in zip(table.true_index, table.pred_index, table.intersections, table.iou)
        }
        assert got.keys() == expected.keys()
        for key, (inter, iou) in expected.items():
            assert got[key][0] == inter and got[key][1] == pytest.approx(iou, abs=1e-12)
        assert table.true_ids.tolist() == sorted(np.unique(truth[truth > 0]).tolist())
        assert table.true_areas.tolist() == [int((truth == t).sum()) for t in table.true_ids]
        assert table.pred_areas.tolist() == [int((pred == p).sum()) for p in table.pred_ids]
        dense = table.iou_matrix().toarray()
        for (t, p), (_, iou) in expected.items():
            i, j = np.searchsorted(table.true_ids, t), np.searchsorted(table.pred_ids, p)
            assert dense[i, j] == pytest.approx(iou)
        assert np.count_nonzero(dense) == len(expected)
        assert table.intersection_matrix().sum() == sum(n for n, _ in expected.values())


@pytest.mark.parametrize("ndim", [2, 3])
def test_sparse_and_dense_contingency_paths_agree(ndim):
    for truth, pred in random_pairs(ndim, 6):
        dense, sorted_path = _overlap_table(truth, pred), _overlap_table(truth, pred, dense_limit=0)
        for name in ("true_index", "pred_index", "intersections", "iou"):
            np.testing.assert_array_equal(getattr(dense, name), getattr(sorted_path, name))


@pytest.mark.parametrize("ndim", [2, 3])
def test_matching_and_object_f1_match_brute_force(ndim):
    """Matched pairs are one-to-one, as many as a maximum bipartite matching finds, with the
    largest IoU sum among those (networkx's max-weight max-cardinality matching)."""
    n_conflicts = 0
    for truth, pred in random_pairs(ndim, 12):
        expected = brute_force_table(truth, pred)
        table = overlap_table(truth, pred)
        for threshold in (0.1, 0.3, 0.5, 0.7):
            graph = nx.Graph()
            edges = [(("t", t), ("p", p), iou) for (t, p), (_, iou) in expected.items() if iou >= threshold]
            graph.add_weighted_edges_from(edges)
            reference = nx.max_weight_matching(graph, maxcardinality=True)
            matches = match(table, threshold)
            assert len(matches) == len(reference)
            assert len(set(matches.true_ids.tolist())) == len(set(matches.pred_ids.tolist())) == len(matches)
            assert np.all(matches.iou >= threshold)
            for t, p, iou in zip(matches.true_ids, matches.pred_ids, matches.iou):
                assert expected[int(t), int(p)][1] == pytest.approx(iou)
            best = sum(graph.edges[e]["weight"] for e in reference)
            assert matches.iou.sum() == pytest.approx(best)
            n_conflicts += len(edges) > len(reference)
            if threshold == 0.5:
                s = score(truth, pred)
                n_true, n_pred = len(np.unique(truth)) - 1, len(np.unique(pred)) - 1
                tp = len(reference)
                assert (s.objects_at(0.5).tp, s.objects_at(0.5).fp, s.objects_at(0.5).fn) == (
                    tp, n_pred - tp, n_true - tp,
                )  # fmt: skip
                f1 = 2 * tp / (n_true + n_pred) if tp else 0.0
                assert s.object_f1 == pytest.approx(f1)
    assert n_conflicts > 3  # the random cases do exercise the assignment


def test_low_threshold_assignment_prefers_more_matches_over_higher_iou():
    # t1 overlaps p1 strongly and p2 weakly; t2 overlaps only p1. Greedy by IoU would pair
    # t1-p1 and leave t2 alone; the optimal assignment pairs t1-p2 and t2-p1.
    truth, pred = np.zeros((10, 30), np.int32), np.zeros((10, 30), np.int32)
    truth[:, 0:10], truth[:, 10:14] = 1, 2
    pred[:, 2:14], pred[:, 0:2] = 1, 2  # p1 covers t1 cols 2-9 and all of t2; p2 cols 0-1
    table = overlap_table(truth, pred)
    # IoU(t1, p1) = 80/140, IoU(t1, p2) = 20/100, IoU(t2, p1) = 40/120
    matches = match(table, 0.2)
    assert sorted(zip(matches.true_ids.tolist(), matches.pred_ids.tolist())) == [(1, 2), (2, 1)]
    assert [(1, 1)] == list(zip(match(table, 0.5).true_ids.tolist(), match(table, 0.5).pred_ids.tolist()))


def test_overlap_of_empty_images():
    table = overlap_table(np.zeros((4, 5), np.uint16), np.zeros((4, 5), np.int32))
    assert table.n_true == table.n_pred == 0 and table.iou.shape == (0,)
    assert table.iou_matrix().shape == (0, 0) and len(match(table, 0.5)) == 0
    one_sided = overlap_table(np.ones((4, 5), np.uint8), np.zeros((4, 5), np.int64))
    assert (one_sided.n_true, one_sided.n_pred, one_sided.true_areas.tolist()) == (1, 0, [20])


def test_overlap_arrays_are_read_only():
    table = overlap_table(np.ones((3, 3), np.int32), np.ones((3, 3), np.int32))
    with pytest.raises(ValueError, match="read-only"):
        table.iou[0] = 0.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_shape_mismatch_names_both_shapes(ndim):
    a, b = np.zeros(SHAPES[ndim], np.int32), np.zeros(SHAPES[ndim][:-1] + (5,), np.int32)
    expected = re.escape(f"y_true.shape={a.shape}, y_pred.shape={b.shape}")
    with pytest.raises(ValueError, match=expected):
        score(a, b)


@pytest.mark.parametrize(
    "y_pred, message",
    [
        (np.zeros((4, 4), np.float32), r"`y_pred` must be an integer label image.*dtype=float32"),
        (np.zeros((4, 4), bool), r"`y_pred` must be an integer label image.*dtype=bool"),
        (np.full((4, 4), -1, np.int16), r"`y_pred` labels must be >= 0.*min=-1"),
        (np.int32(3), r"`y_pred` must have at least one axis"),
    ],
    ids=["float", "bool", "negative", "scalar"],
)
def test_bad_labels(y_pred, message):
    y_true = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match=message):
        check_label_pair(y_true, y_pred)


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_bad_threshold(threshold):
    table = overlap_table(np.ones((3, 3), np.int32), np.ones((3, 3), np.int32))
    with pytest.raises(ValueError, match=r"threshold` must be in \(0, 1\]"):
        match(table, threshold)
