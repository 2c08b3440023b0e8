"""Segmentation scores of the paper and of the DSB/StarDist literature, per image and pooled.

Four figures come out of one :func:`overlap_table` per image:

* **pixel F1** (the paper's "Pixel Seg" / "Voxel Seg"): foreground against background.
* **instance F1** (the paper's "Instance Seg"), Sec. III: "For pixel/voxel-level
  segmentation, detected pixels/voxels are true positives if they correspond to some ground
  truth pixels/voxels. In instance-level segmentation, only the true positive pixels/voxels
  inside the correct detected instances (intersection over union (IOU) with a ground truth
  instance is >= 0.5) are taken as true positives." So TP = predicted pixels that lie on true
  foreground *and* belong to a predicted instance matched one-to-one at IoU >= 0.5; FP =
  predicted foreground pixels - TP; FN = true foreground pixels - TP.
  Read literally, a matched instance's pixels on a *neighbouring* true nucleus are TPs too, so
  a merge of a nucleus with a smaller neighbour (IoU still >= 0.5 with the larger) costs
  nothing. :attr:`Scores.instance_matched` holds the stricter reading, TP = intersection of
  each matched pair only, for comparison; the headline figure follows the paper's wording.
* **object F1** at IoU 0.5: TP = matched pairs, FP = unmatched predictions, FN = unmatched
  true instances.
* **on touching nuclei alone** (the clumps the paper is about): the matched-pair instance
  counts and the object counts at IoU 0.5, restricted to the true nuclei that touch another
  one (:func:`nucgen_tf.eval.touching.touching_flags`) and to the predictions whose largest
  overlap is with one of them (:attr:`Scores.touching_instance`, :attr:`Scores.touching_objects`).
* **average precision** in the DSB 2018 / StarDist sense, AP_t = TP / (TP + FP + FN) at IoU
  threshold t, reported per t in 0.5:0.05:0.95 and as their mean.

Results are :class:`Scores`, frozen dataclasses of integer :class:`Counts`; pooling over a data
set adds counts (``a + b`` or :func:`pool`) and recomputes the ratios, which is how the pooled
figures are defined (not a mean of per-image ratios).

Convention for empty images (StarDist's): every ratio is 0 when TP = 0, also when both
images are empty (0/0). An image with nothing in either adds no counts to a pool, so the
convention only matters for that image's own line.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import numpy as np

from nucgen_tf.eval.matching import Matches, Overlap, match, overlap_table
from nucgen_tf.eval.touching import touching_flags

__all__ = ["DSB_THRESHOLDS", "F1_FIGURES", "PAPER_IOU", "Counts", "Scores", "pool", "score", "scores_from_overlap"]

# The F1 figures of `Scores` that tables report, in their column order (property names).
F1_FIGURES = (
    "pixel_f1",
    "instance_f1",
    "instance_matched_f1",
    "object_f1",
    "touching_instance_f1",
    "touching_object_f1",
)
# IoU at which an instance counts as correctly detected, in the paper and for object F1.
PAPER_IOU = 0.5
# 0.5, 0.55, ..., 0.95; round() gives the double nearest each decimal, which is also what an
# exact rational IoU such as 11/20 evaluates to, so IoU == threshold compares as >=.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _ratio(numerator: int, denominator: int, tp: int) -> float:
    return numerator / denominator if tp > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Counts:
    """True positive, false positive and false negative counts (pixels or instances).

    Ratios are 0 when ``tp == 0`` (StarDist's convention, also for 0/0).
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self):
        for name in ("tp", "fp", "fn"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0. Received: {name}={value!r}")
            object.__setattr__(self, name, int(value))

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, self.tp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, self.tp)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self.tp)

    @property
    def accuracy(self) -> float:
        """TP / (TP + FP + FN): the DSB 2018 "average precision" at one IoU threshold."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, self.tp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    values = tuple(float(t) for t in thresholds)
    if (
        not values
        or any(not 0.0 < t <= 1.0 for t in values)
        or any(a >= b for a, b in zip(values, values[1:]))
    ):
        raise ValueError(
            "`thresholds` must be increasing IoU values in (0, 1], at least one. "
            f"Received: thresholds={values}"
        )
    return values


@dataclasses.dataclass(frozen=True)
class Scores:
    """All counts of one image, or of a pool of images; figures are derived from them.

    Attributes:
        pixel: foreground pixel/voxel counts (the paper's pixel/voxel F1).
        instance: the paper's instance-level pixel counts (see the module docstring).
        instance_matched: the stricter variant, TP = intersections of matched pairs only.
        objects: instance counts per IoU threshold, aligned with `thresholds`.
        thresholds: the IoU thresholds of `objects`, increasing.
        n_images: images pooled into these counts.
        n_true: true instances.
        n_pred: predicted instances.
        touching_instance: `instance_matched` counts on touching true nuclei only.
        touching_objects: object counts at IoU 0.5 on touching true nuclei only.
        n_touching: true instances that touch another one.
    """

    pixel: Counts
    instance: Counts
    instance_matched: Counts
    objects: tuple[Counts, ...]
    thresholds: tuple[float, ...] = DSB_THRESHOLDS
    n_images: int = 1
    n_true: int = 0
    n_pred: int = 0
    touching_instance: Counts = Counts()
    touching_objects: Counts = Counts()
    n_touching: int = 0

    def __post_init__(self):
        object.__setattr__(self, "thresholds", _check_thresholds(self.thresholds))
        object.__setattr__(self, "objects", tuple(self.objects))
        if len(self.objects) != len(self.thresholds):
            raise ValueError(
                "`objects` needs one Counts per threshold. "
                f"Received: {len(self.objects)} counts for thresholds={self.thresholds}"
            )

    def __add__(self, other: Scores) -> Scores:
        if not isinstance(other, Scores):
            return NotImplemented
        if other.thresholds != self.thresholds:
            raise ValueError(
                "Cannot pool scores computed at different IoU thresholds. "
                f"Received: thresholds={self.thresholds} and {other.thresholds}"
            )
        return Scores(
            pixel=self.pixel + other.pixel,
            instance=self.instance + other.instance,
            instance_matched=self.instance_matched + other.instance_matched,
            objects=tuple(a + b for a, b in zip(self.objects, other.objects)),
            thresholds=self.thresholds,
            n_images=self.n_images + other.n_images,
            n_true=self.n_true + other.n_true,
            n_pred=self.n_pred + other.n_pred,
            touching_instance=self.touching_instance + other.touching_instance,
            touching_objects=self.touching_objects + other.touching_objects,
            n_touching=self.n_touching + other.n_touching,
        )

    def objects_at(self, threshold: float) -> Counts:
        """Object counts at one of `thresholds`."""
        for t, counts in zip(self.thresholds, self.objects):
            if t == threshold:
                return counts
        raise ValueError(f"No object counts at IoU {threshold}. Received: thresholds={self.thresholds}")

    @property
    def pixel_f1(self) -> float:
        return self.pixel.f1

    @property
    def instance_f1(self) -> float:
        return self.instance.f1

    @property
    def object_f1(self) -> float:
        """Object F1 at IoU 0.5 (needs 0.5 among `thresholds`)."""
        return self.objects_at(PAPER_IOU).f1

    @property
    def instance_matched_f1(self) -> float:
        """Instance F1 in the stricter reading (TP = intersections of matched pairs)."""
        return self.instance_matched.f1

    @property
    def touching_instance_f1(self) -> float:
        return self.touching_instance.f1

    @property
    def touching_object_f1(self) -> float:
        return self.touching_objects.f1

    @property
    def ap(self) -> tuple[float, ...]:
        """AP_t = TP / (TP + FP + FN) per threshold t."""
        return tuple(c.accuracy for c in self.objects)

    @property
    def mean_ap(self) -> float:
        return float(np.mean(self.ap))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready figures and counts."""
        out: dict[str, Any] = {
            "n_images": self.n_images,
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "pixel": self.pixel.to_dict(),
            "instance": self.instance.to_dict(),
            "instance_matched": self.instance_matched.to_dict(),
            "objects": [
                {"threshold": t, **c.to_dict(), "ap": c.accuracy}
                for t, c in zip(self.thresholds, self.objects)
            ],
            "pixel_f1": self.pixel_f1,
            "instance_f1": self.instance_f1,
            "mean_ap": self.mean_ap,
            "instance_matched_f1": self.instance_matched_f1,
            "n_touching": self.n_touching,
            "touching_instance": self.touching_instance.to_dict(),
            "touching_objects": self.touching_objects.to_dict(),
            "touching_instance_f1": self.touching_instance_f1,
            "touching_object_f1": self.touching_object_f1,
        }
        if PAPER_IOU in self.thresholds:
            out["object_f1"] = self.object_f1
        return out


def _touching_counts(overlap: Overlap, matched: Matches, touching: np.ndarray) -> tuple[Counts, Counts]:
    """Matched-pair instance counts and object counts restricted to the touching true nuclei
    and to the predictions whose largest overlap is with one of them."""
    touching = np.asarray(touching, bool)
    # Each prediction's owner: the true nucleus it overlaps most (last of its pairs by size).
    order = np.lexsort((overlap.intersections, overlap.pred_index))
    preds = overlap.pred_index[order]
    last = np.r_[preds[1:] != preds[:-1], True] if len(preds) else np.zeros(0, bool)
    owner = np.full(overlap.n_pred, -1, np.int64)
    owner[preds[last]] = overlap.true_index[order][last]
    kept_pred = owner >= 0
    kept_pred[kept_pred] = touching[owner[kept_pred]]
    on_touching = touching[overlap.true_index[matched.pairs]]
    tp_pixels = int(overlap.intersections[matched.pairs][on_touching].sum())
    pred_pixels = int(overlap.pred_areas[kept_pred].sum())
    true_pixels = int(overlap.true_areas[touching].sum())
    tp = int(np.count_nonzero(on_touching))
    instance = Counts(tp_pixels, pred_pixels - tp_pixels, true_pixels - tp_pixels)
    objects = Counts(tp, int(np.count_nonzero(kept_pred)) - tp, int(np.count_nonzero(touching)) - tp)
    return instance, objects


def scores_from_overlap(
    overlap: Overlap, thresholds: Iterable[float] = DSB_THRESHOLDS, touching: np.ndarray | None = None
) -> Scores:
    """The :class:`Scores` of one image from its overlap table (see :func:`score`).

    Args:
        overlap: the image's overlap table.
        thresholds: IoU thresholds of the object counts.
        touching: (n_true,) bool per true instance (in `overlap.true_ids` order), True where it
            touches another; None leaves the touching counts at zero.
    """
    thresholds = _check_thresholds(thresholds)
    pixel_tp = int(overlap.intersections.sum())
    true_fg, pred_fg = int(overlap.true_areas.sum()), int(overlap.pred_areas.sum())
    matched = match(overlap, PAPER_IOU)
    # Pixels of each predicted instance that lie on true foreground (any true instance).
    on_truth = np.zeros(overlap.n_pred, np.int64)
    np.add.at(on_truth, overlap.pred_index, overlap.intersections)
    instance_tp = int(on_truth[overlap.pred_index[matched.pairs]].sum())
    strict_tp = int(overlap.intersections[matched.pairs].sum())
    objects = []
    for t in thresholds:
        tp = len(matched) if t == PAPER_IOU else len(match(overlap, t))
        objects.append(Counts(tp, overlap.n_pred - tp, overlap.n_true - tp))
    if touching is None:
        touching_instance, touching_objects, n_touching = Counts(), Counts(), 0
    else:
        if len(touching) != overlap.n_true:
            raise ValueError(
                f"`touching` needs one flag per true instance. Received: {len(touching)} for {overlap.n_true}"
            )
        touching_instance, touching_objects = _touching_counts(overlap, matched, touching)
        n_touching = int(np.count_nonzero(touching))
    return Scores(
        pixel=Counts(pixel_tp, pred_fg - pixel_tp, true_fg - pixel_tp),
        instance=Counts(instance_tp, pred_fg - instance_tp, true_fg - instance_tp),
        instance_matched=Counts(strict_tp, pred_fg - strict_tp, true_fg - strict_tp),
        objects=tuple(objects),
        thresholds=thresholds,
        n_images=1,
        n_true=overlap.n_true,
        n_pred=overlap.n_pred,
        touching_instance=touching_instance,
        touching_objects=touching_objects,
        n_touching=n_touching,
    )


def score(y_true: np.ndarray, y_pred: np.ndarray, thresholds: Iterable[float] = DSB_THRESHOLDS) -> Scores:
    """Pixel F1, the paper's instance F1, object F1 and AP of one predicted label image.

    Args:
        y_true: (M[, N[, ..., P]]) integer labels, 0 = background, any ids.
        y_pred: predicted labels of the same shape.
        thresholds: IoU thresholds for object counts / AP, increasing, in (0, 1]; the default
            0.5:0.05:0.95 is the DSB / StarDist set. Keep 0.5 in it for `object_f1`.

    Returns:
        The image's :class:`Scores` (``n_images == 1``).

    Raises:
        ValueError: different shapes, non-integer or negative labels, bad thresholds.

    Example:
        >>> y_true = np.zeros((10, 10), np.int32); y_true[:, :5] = 1; y_true[:, 5:] = 2
        >>> y_pred = (y_true > 0).astype(np.int32)  # the two nuclei merged into one
        >>> s = score(y_true, y_pred)
        >>> s.pixel_f1, round(s.object_f1, 3)
        (1.0, 0.667)
    """
    overlap = overlap_table(y_true, y_pred)
    return scores_from_overlap(overlap, thresholds, touching_flags(y_true, overlap.true_ids))


def pool(scores: Iterable[Scores]) -> Scores:
    """Pools per-image scores of a data set by adding their counts.

    Raises:
        ValueError: no scores, or scores at different thresholds.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("Cannot pool an empty list of scores. Received: scores=[]")
    return functools.reduce(lambda a, b: a + b, scores)
