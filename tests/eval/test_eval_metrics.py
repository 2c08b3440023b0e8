"""Hand-computed scores of small label images; 3D cases are the 2D ones extruded over 2 slices,
so every pixel count doubles and every ratio stays the same."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nucgen_tf.eval import DSB_THRESHOLDS, Counts, Scores, pool, score

NDIMS = [2, 3]


def lift(labels: np.ndarray, ndim: int) -> np.ndarray:
    """2D labels as they are, or extruded over 2 Z slices."""
    return labels if ndim == 2 else np.stack([labels, labels])


def depth(ndim: int) -> int:
    return 1 if ndim == 2 else 2


def canvas() -> np.ndarray:
    return np.zeros((20, 40), np.int32)


@pytest.mark.parametrize("ndim", NDIMS)
def test_perfect_match_with_other_ids(ndim):
    truth, pred = canvas(), canvas()
    truth[2:12, 2:12], truth[5:9, 20:30] = 1, 2
    pred[2:12, 2:12], pred[5:9, 20:30] = 7, 3
    s = score(lift(truth, ndim), lift(pred, ndim))
    area = (100 + 40) * depth(ndim)
    assert s.pixel == Counts(area, 0, 0) and s.instance == Counts(area, 0, 0)
    assert s.objects == (Counts(2, 0, 0),) * 10
    assert (s.pixel_f1, s.instance_f1, s.object_f1, s.mean_ap) == (1.0, 1.0, 1.0, 1.0)
    assert (s.n_true, s.n_pred, s.n_images) == (2, 2, 1)


@pytest.mark.parametrize("ndim", NDIMS)
def test_one_instance_split_in_two(ndim):
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10] = 1  # 100 px
    pred[0:10, 0:6] = 1  # 60 px, IoU 0.6 -> matched
    pred[0:10, 6:10] = 2  # 40 px, IoU 0.4 -> false positive
    s = score(lift(truth, ndim), lift(pred, ndim))
    d = depth(ndim)
    assert s.pixel == Counts(100 * d, 0, 0) and s.pixel_f1 == 1.0
    # Only the matched half's 60 px are instance TPs: F1 = 120 / (120 + 40 + 40).
    assert s.instance == Counts(60 * d, 40 * d, 40 * d)
    assert s.instance_f1 == pytest.approx(0.6)
    assert s.instance_matched == s.instance  # no neighbouring truth: both readings agree
    assert s.objects_at(0.5) == Counts(1, 1, 0) and s.object_f1 == pytest.approx(2 / 3)
    # AP_t = 1 / (1 + 1 + 0) while t <= 0.6, then 0 / (0 + 2 + 1).
    assert s.ap == pytest.approx((0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0))
    assert s.mean_ap == pytest.approx(0.15)


@pytest.mark.parametrize("ndim", NDIMS)
def test_split_into_exact_halves_matches_only_one(ndim):
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10] = 1
    pred[0:10, 0:5], pred[0:10, 5:10] = 1, 2  # both IoU exactly 0.5: a tie, one match only
    s = score(lift(truth, ndim), lift(pred, ndim))
    d = depth(ndim)
    assert s.objects_at(0.5) == Counts(1, 1, 0)
    assert s.instance == Counts(50 * d, 50 * d, 50 * d) and s.instance_f1 == pytest.approx(0.5)


@pytest.mark.parametrize("ndim", NDIMS)
def test_two_instances_merged_into_one(ndim):
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10] = 1  # 100 px
    truth[0:10, 10:16] = 2  # 60 px, touching
    pred[0:10, 0:16] = 5  # 160 px: IoU 100/160 = 0.625 with 1, 60/160 = 0.375 with 2
    s = score(lift(truth, ndim), lift(pred, ndim))
    d = depth(ndim)
    assert s.pixel == Counts(160 * d, 0, 0)
    assert s.objects_at(0.5) == Counts(1, 0, 1) and s.object_f1 == pytest.approx(2 / 3)
    # The paper's wording: every pixel of the correctly detected (merged) instance that lies on
    # true foreground is a TP, so the merge costs nothing at the pixel level...
    assert s.instance == Counts(160 * d, 0, 0) and s.instance_f1 == 1.0
    # ...while the strict reading counts only the matched pair's 100 px: 200 / (200 + 60 + 60).
    assert s.instance_matched == Counts(100 * d, 60 * d, 60 * d)
    assert s.instance_matched.f1 == pytest.approx(0.625)
    assert s.ap == pytest.approx((0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0))  # 0.625 >= 0.6, < 0.65


@pytest.mark.parametrize("ndim", NDIMS)
@pytest.mark.parametrize(
    "shift, iou, matched_until",
    [(6, 15 / 27, 0.55), (7, 0.5, 0.5), (8, 13 / 29, None)],  # just over, exactly, just under 0.5
)
def test_shifted_instance(ndim, shift, iou, matched_until):
    truth, pred = canvas(), canvas()
    truth[0:4, 0:21] = 1  # 84 px, 21 wide
    pred[0:4, shift : 21 + shift] = 9
    s = score(lift(truth, ndim), lift(pred, ndim))
    d, inter = depth(ndim), 4 * (21 - shift)
    assert (inter / (84 + 84 - inter)) == pytest.approx(iou)
    assert s.pixel == Counts(inter * d, (84 - inter) * d, (84 - inter) * d)
    if matched_until is None:
        assert s.objects_at(0.5) == Counts(0, 1, 1) and s.object_f1 == 0.0
        assert s.instance == Counts(0, 84 * d, 84 * d) and s.instance_f1 == 0.0
        assert s.mean_ap == 0.0
    else:
        assert s.objects_at(0.5) == Counts(1, 0, 0) and s.object_f1 == 1.0
        assert s.instance == s.pixel
        expected = tuple(1.0 if t <= matched_until else 0.0 for t in DSB_THRESHOLDS)
        assert s.ap == expected


@pytest.mark.parametrize("ndim", NDIMS)
def test_empty_prediction(ndim):
    truth = canvas()
    truth[0:10, 0:10], truth[12:15, 20:30] = 1, 2
    s = score(lift(truth, ndim), lift(canvas(), ndim))
    d = depth(ndim)
    assert s.pixel == Counts(0, 0, 130 * d) and s.instance == Counts(0, 0, 130 * d)
    assert s.objects == (Counts(0, 0, 2),) * 10
    assert (s.pixel_f1, s.instance_f1, s.object_f1, s.mean_ap) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("ndim", NDIMS)
def test_empty_truth(ndim):
    pred = canvas()
    pred[3:6, 3:6] = 4
    s = score(lift(canvas(), ndim), lift(pred, ndim))
    assert s.pixel == Counts(0, 9 * depth(ndim), 0) and s.objects_at(0.5) == Counts(0, 1, 0)
    assert (s.pixel_f1, s.instance_f1, s.object_f1, s.mean_ap, s.pixel.precision) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("ndim", NDIMS)
def test_both_empty_scores_zero_and_pools_to_nothing(ndim):
    # StarDist's convention: every ratio is 0 when TP = 0, 0/0 included.
    empty = score(lift(canvas(), ndim), lift(canvas(), ndim))
    assert empty.pixel == empty.instance == Counts(0, 0, 0) and empty.objects == (Counts(),) * 10
    assert (empty.pixel_f1, empty.instance_f1, empty.object_f1, empty.mean_ap) == (0, 0, 0, 0)
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10], pred[0:10, 0:6] = 1, 1
    alone = score(lift(truth, ndim), lift(pred, ndim))
    pooled = pool([alone, empty])
    assert pooled.n_images == 2
    assert dataclasses.replace(pooled, n_images=1) == alone


@pytest.mark.parametrize("ndim", NDIMS)
def test_non_consecutive_and_huge_ids(ndim):
    truth, pred = canvas().astype(np.int64), canvas().astype(np.int64)
    truth[0:10, 0:10], truth[0:10, 20:30] = 5, 2**40  # 2**40 takes the np.unique path
    pred[0:10, 0:8], pred[0:10, 22:30] = 2**31 - 1, 3  # IoU 0.8 each
    s = score(lift(truth, ndim), lift(pred, ndim))
    assert s.objects_at(0.8) == Counts(2, 0, 0) and s.objects_at(0.85) == Counts(0, 2, 2)
    assert s.pixel == Counts(160 * depth(ndim), 0, 40 * depth(ndim))


def test_pooled_equals_summed_counts():
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10] = 1
    pred[0:10, 0:6], pred[0:10, 6:10] = 1, 2  # split: pixel 100/0/0, instance 60/40/40, obj 1/1/0
    a = score(truth, pred)
    truth_b, pred_b = canvas(), canvas()
    truth_b[0:10, 0:10], truth_b[15:18, 30:33] = 1, 2  # 100 + 9 px
    pred_b[0:10, 0:10] = 4  # perfect on 1, misses 2
    b = score(truth_b, pred_b)  # pixel 100/0/9, instance 100/0/9, obj@0.5 1/0/1
    pooled = pool([a, b])
    assert pooled == a + b
    assert pooled.pixel == Counts(200, 0, 9) and pooled.pixel_f1 == pytest.approx(400 / 409)
    assert pooled.instance == Counts(160, 40, 49) and pooled.instance_f1 == pytest.approx(320 / 409)
    assert pooled.objects_at(0.5) == Counts(2, 1, 1) and pooled.object_f1 == pytest.approx(4 / 6)
    # AP pooled per threshold: t <= 0.6 -> 2 / (2 + 1 + 1); above -> b's 1 / (1 + 1 + 1 + 1 + 1).
    assert pooled.ap == pytest.approx((0.5,) * 3 + (0.2,) * 7)
    assert (pooled.n_images, pooled.n_true, pooled.n_pred) == (2, 3, 3)
    # Pooled is not the mean of per-image ratios.
    assert pooled.pixel_f1 != pytest.approx((a.pixel_f1 + b.pixel_f1) / 2)


def test_custom_thresholds_and_to_dict():
    truth, pred = canvas(), canvas()
    truth[0:10, 0:10] = 1
    pred[0:10, 0:6], pred[0:10, 6:10] = 1, 2  # IoUs 0.6 and 0.4
    s = score(truth, pred, thresholds=(0.3, 0.5))
    # At 0.3 both halves qualify for the one nucleus: the assignment keeps one pair.
    assert s.objects == (Counts(1, 1, 0), Counts(1, 1, 0))
    d = s.to_dict()
    assert d["objects"][0]["threshold"] == 0.3 and d["objects"][1]["ap"] == 0.5
    assert d["instance"] == {"tp": 60, "fp": 40, "fn": 40, "precision": 0.6, "recall": 0.6, "f1": 0.6}
    assert d["object_f1"] == pytest.approx(2 / 3) and d["mean_ap"] == 0.5
    without_half = score(truth, pred, thresholds=(0.7,))
    assert "object_f1" not in without_half.to_dict()
    with pytest.raises(ValueError, match=r"No object counts at IoU 0.5"):
        _ = without_half.object_f1


def test_pool_errors():
    s = score(canvas(), canvas())
    other = score(canvas(), canvas(), thresholds=(0.5,))
    with pytest.raises(ValueError, match="different IoU thresholds"):
        pool([s, other])
    with pytest.raises(ValueError, match="empty list"):
        pool([])


@pytest.mark.parametrize(
    "thresholds",
    [(), (0.0,), (0.5, 1.2), (0.7, 0.5), (0.5, 0.5)],
    ids=["none", "zero", "over1", "down", "dup"],
)
def test_bad_thresholds(thresholds):
    with pytest.raises(ValueError, match="`thresholds` must be increasing IoU values"):
        score(canvas(), canvas(), thresholds=thresholds)


def test_counts_and_scores_validate():
    with pytest.raises(ValueError, match=r"`fp` must be an int >= 0. Received: fp=-1"):
        Counts(1, -1, 0)
    with pytest.raises(ValueError, match="`tp` must be an int"):
        Counts(0.5, 0, 0)
    with pytest.raises(ValueError, match="one Counts per threshold"):
        Scores(Counts(), Counts(), Counts(), objects=(Counts(),), thresholds=(0.5, 0.6))


def test_touching_nuclei_scored_on_their_own():
    """Two touching nuclei merged by the prediction, a false blob beside them, and a lone
    nucleus found: the touching figures see the merge and the blob, not the lone nucleus."""
    y_true = np.zeros((30, 30), np.int32)
    y_true[2:8, 2:6] = 1  # 24 px, touches 2
    y_true[2:8, 6:10] = 2  # 24 px
    y_true[20:26, 20:26] = 3  # 36 px, alone
    y_pred = np.zeros_like(y_true)
    y_pred[2:8, 2:10] = 5  # the merge, 45 px once the blob takes 3: IoU 21/48 with 1, 24/45 with 2
    y_pred[7:10, 2:5] = 6  # a 9-px blob, 3 px on nucleus 1 (its owner), the rest on background
    y_pred[20:26, 20:26] = 7
    s = score(y_true, y_pred)
    assert s.n_touching == 2
    # Objects: nucleus 2 matched, nucleus 1 missed, the blob a false positive.
    assert s.touching_objects == Counts(tp=1, fp=1, fn=1)
    # Pixels: only the matched pair's 24 shared px are true; the merge's and the blob's others are not.
    assert s.touching_instance == Counts(tp=24, fp=45 + 9 - 24, fn=48 - 24)
    # The lone nucleus counts only in the totals.
    assert s.objects_at(0.5) == Counts(tp=2, fp=1, fn=1) and s.n_true == 3
    pooled = pool([s, s])
    assert pooled.touching_objects == Counts(2, 2, 2) and pooled.n_touching == 4
    d = s.to_dict()
    assert d["touching_object_f1"] == pytest.approx(0.5)
    assert d["instance_matched_f1"] == pytest.approx(s.instance_matched.f1)


def test_touching_flags_length_is_checked():
    from nucgen_tf.eval import overlap_table, scores_from_overlap

    y = np.zeros((8, 8), np.int32)
    y[1:3, 1:3] = 1
    overlap = overlap_table(y, y)
    with pytest.raises(ValueError, match="one flag per true instance"):
        scores_from_overlap(overlap, touching=np.zeros(2, bool))
    assert scores_from_overlap(overlap).n_touching == 0
