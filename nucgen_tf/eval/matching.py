"""Overlap tables and one-to-one IoU matching between a true and a predicted label image, any ndim.

Both images are integer label arrays of the same shape ``(M[, N[, ..., P]])``, 0 = background,
any positive ids (they need not be consecutive). The overlap of every (true, pred) label pair is
counted in one vectorized pass over the pixels (compact ids, then one ``np.bincount`` of pair
keys, or ``np.unique`` when a dense table would be larger than the image); only pairs that
actually overlap are kept, so a 3D volume with thousands of nuclei costs no dense
``n_true x n_pred`` IoU matrix.

Matching follows StarDist's ``matching.py``: a true and a predicted instance match when their
IoU is ``>= threshold``, each instance matching at most one other. For thresholds above 0.5
that is unique without any search: two disjoint predictions cannot each cover more than half
of one nucleus' union with them. At exactly 0.5 a tie is possible (a nucleus cut into two
exact halves has IoU 0.5 with both), and below 0.5 real conflicts are common; there the
matching is an optimal assignment (``scipy.optimize.linear_sum_assignment``) that maximises the
number of matched pairs and, among those, their summed IoU, as StarDist does. It is solved
per connected group of conflicting candidates, which are small.

Example:
    >>> y_true = np.zeros((8, 8), np.int32); y_true[:4, :4] = 1
    >>> y_pred = np.zeros((8, 8), np.int32); y_pred[:4, 1:4] = 7
    >>> table = overlap_table(y_true, y_pred)
    >>> float(table.iou[0])
    0.75
    >>> match(table, 0.5).pred_ids.tolist()
    [7]
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csgraph

__all__ = ["Matches", "Overlap", "check_label_pair", "match", "overlap_table"]

# Ids up to this many times the pixel count go through a lookup table (np.bincount); larger ids
# (e.g. hashes or 2**31 - 1 sentinels) through np.unique, which sorts.
_LUT_FACTOR = 4
_LUT_SLACK = 1 << 16


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class Overlap:
    """Per-label areas and the overlap of every intersecting (true, pred) label pair.

    Instances are indexed 0..n-1 in increasing id order; the K pair arrays are sorted by
    (true index, pred index) and hold only pairs with a nonzero intersection.

    Attributes:
        true_ids: (n_true,) int64 label ids of the true image, increasing, 0 excluded.
        pred_ids: (n_pred,) int64 label ids of the prediction.
        true_areas: (n_true,) int64 pixel counts.
        pred_areas: (n_pred,) int64 pixel counts.
        true_index: (K,) int64 index into `true_ids` of each overlapping pair.
        pred_index: (K,) int64 index into `pred_ids`.
        intersections: (K,) int64 shared pixels of each pair.
        iou: (K,) float64 intersection over union of each pair.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_areas: np.ndarray
    pred_areas: np.ndarray
    true_index: np.ndarray
    pred_index: np.ndarray
    intersections: np.ndarray
    iou: np.ndarray

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _readonly(getattr(self, field.name)))

    @property
    def n_true(self) -> int:
        return len(self.true_ids)

    @property
    def n_pred(self) -> int:
        return len(self.pred_ids)

    def iou_matrix(self) -> sparse.csr_array:
        """The (n_true, n_pred) IoU matrix as a sparse array (rows/cols in id order)."""
        return sparse.csr_array(
            (self.iou, (self.true_index, self.pred_index)), shape=(self.n_true, self.n_pred)
        )

    def intersection_matrix(self) -> sparse.csr_array:
        """The (n_true, n_pred) intersection counts (the contingency table without background)."""
        return sparse.csr_array(
            (self.intersections, (self.true_index, self.pred_index)), shape=(self.n_true, self.n_pred)
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Matches:
    """The one-to-one matched pairs of an :class:`Overlap` at one IoU threshold.

    Attributes:
        threshold: pairs have ``iou >= threshold``.
        pairs: (T,) int64 indices into the overlap's pair arrays (``true_index``, ...), increasing.
        true_ids: (T,) int64 matched true label ids.
        pred_ids: (T,) int64 the predicted label id matched to each.
        iou: (T,) float64 their IoU.
    """

    threshold: float
    pairs: np.ndarray
    true_ids: np.ndarray
    pred_ids: np.ndarray
    iou: np.ndarray

    def __post_init__(self):
        for name in ("pairs", "true_ids", "pred_ids", "iou"):
            object.__setattr__(self, name, _readonly(getattr(self, name)))

    def __len__(self) -> int:
        return len(self.pairs)


def check_label_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (true, predicted) label image pair and returns both as arrays.

    Raises:
        ValueError: a non-integer (float, bool) dtype, a 0-d array, different shapes, or
            negative labels.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"`{name}` must be an integer label image (0 = background); cast masks or rounded "
                f"network outputs explicitly. Received: {name}.dtype={y.dtype}"
            )
        if y.ndim == 0:
            raise ValueError(f"`{name}` must have at least one axis. Received: {name}.shape={y.shape}")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and np.issubdtype(y.dtype, np.signedinteger):
            low = int(y.min())
            if low < 0:
                raise ValueError(f"`{name}` labels must be >= 0 (0 = background). Received: min={low}")
    return y_true, y_pred


def _compact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps label ids to 1..n (0 stays background).

    Returns:
        (index (size,) with 0 for background and 1..n for the ids, ids (n,) int64, areas (n,) int64).
    """
    if flat.size == 0:
        empty = np.zeros(0, np.int64)
        return np.zeros(0, np.int32), empty, empty
    high = int(flat.max())
    if high <= _LUT_FACTOR * flat.size + _LUT_SLACK:
        counts = np.bincount(flat.astype(np.intp, copy=False) if flat.dtype == np.uint64 else flat)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(high + 1, np.int32 if len(ids) < np.iinfo(np.int32).max else np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        return lut[flat], ids.astype(np.int64), counts[ids].astype(np.int64)
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if uniq[0] == 0:
        return inverse, uniq[1:].astype(np.int64), counts[1:].astype(np.int64)
    return inverse + 1, uniq.astype(np.int64), counts.astype(np.int64)


def _overlap_table(y_true: np.ndarray, y_pred: np.ndarray, dense_limit: int | None = None) -> Overlap:
    y_true, y_pred = check_label_pair(y_true, y_pred)
    t_index, true_ids, true_areas = _compact(y_true.reshape(-1))
    p_index, pred_ids, pred_areas = _compact(y_pred.reshape(-1))
    n_true, n_pred = len(true_ids), len(pred_ids)
    both = (t_index > 0) & (p_index > 0)
    # Key of a pixel's (true, pred) pair in a row-major n_true x n_pred table.
    keys = (t_index[both].astype(np.int64) - 1) * n_pred + (p_index[both] - 1)
    n_bins = n_true * n_pred
    if dense_limit is None:
        dense_limit = max(_LUT_FACTOR * y_true.size, 1 << 20)
    if n_bins <= dense_limit:
        counts = np.bincount(keys, minlength=n_bins)
        pair_keys = np.flatnonzero(counts)
        intersections = counts[pair_keys]
    else:
        pair_keys, intersections = np.unique(keys, return_counts=True)
    true_index, pred_index = np.divmod(pair_keys.astype(np.int64), max(n_pred, 1))
    intersections = intersections.astype(np.int64)
    union = true_areas[true_index] + pred_areas[pred_index] - intersections
    return Overlap(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_areas=true_areas,
        pred_areas=pred_areas,
        true_index=true_index,
        pred_index=pred_index,
        intersections=intersections,
        iou=intersections / union,
    )


def overlap_table(y_true: np.ndarray, y_pred: np.ndarray) -> Overlap:
    """Counts label areas and pairwise intersections of two label images in one pass.

    Args:
        y_true: (M[, N[, ..., P]]) non-negative integer labels, 0 = background.
        y_pred: predicted labels of the same shape.

    Returns:
        The sparse :class:`Overlap` (only intersecting pairs).

    Raises:
        ValueError: see :func:`check_label_pair`.
    """
    return _overlap_table(y_true, y_pred)


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU `threshold` must be in (0, 1]. Received: threshold={threshold}")
    return threshold


def _assign(candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Maximum-cardinality, then maximum-IoU, one-to-one subset of candidate pairs.

    Args:
        candidates: (C,) pair indices; rows / cols / iou: (C,) their true index, pred index, IoU.

    Returns:
        The chosen pair indices, increasing.
    """
    row_ids, row_of = np.unique(rows, return_inverse=True)
    col_ids, col_of = np.unique(cols, return_inverse=True)
    n_rows, n_cols = len(row_ids), len(col_ids)
    graph = sparse.coo_array(
        (np.ones(len(candidates)), (row_of, n_rows + col_of)), shape=(n_rows + n_cols,) * 2
    )
    _, component = csgraph.connected_components(graph, directed=False)
    edge_component = component[row_of]
    edges_per_component = np.bincount(edge_component)
    simple = edges_per_component[edge_component] == 1  # a lone edge: nothing to decide
    chosen = [candidates[simple]]
    for c in np.flatnonzero(edges_per_component > 1):
        edges = np.flatnonzero(edge_component == c)
        r_ids, r = np.unique(row_of[edges], return_inverse=True)
        c_ids, k = np.unique(col_of[edges], return_inverse=True)
        # Cost -1 per candidate pair dominates the IoU tie-break, which sums to < 1 (StarDist).
        n_match = min(len(r_ids), len(c_ids))
        cost = np.zeros((len(r_ids), len(c_ids)))
        cost[r, k] = -1.0 - iou[edges] / (2.0 * n_match)
        edge_at = np.full(cost.shape, -1, np.int64)
        edge_at[r, k] = edges
        picked = edge_at[linear_sum_assignment(cost)]
        chosen.append(candidates[picked[picked >= 0]])
    return np.sort(np.concatenate(chosen))


def match(overlap: Overlap, threshold: float = 0.5) -> Matches:
    """One-to-one matching of true and predicted instances with ``IoU >= threshold``.

    Above 0.5 the candidate pairs are already one-to-one and are taken as they are. At exactly
    0.5 (an instance cut into two exact halves) and below 0.5 conflicting candidates are
    resolved by an optimal assignment: as many matches as possible, then the largest summed
    IoU, as in StarDist's ``matching.py`` (``scipy.optimize.linear_sum_assignment``).

    Args:
        overlap: from :func:`overlap_table`.
        threshold: IoU threshold in (0, 1].

    Returns:
        The matched pairs.

    Raises:
        ValueError: `threshold` outside (0, 1].
    """
    threshold = _check_threshold(threshold)
    candidates = np.flatnonzero(overlap.iou >= threshold)
    rows, cols = overlap.true_index[candidates], overlap.pred_index[candidates]
    one_to_one = (
        np.bincount(rows, minlength=1).max(initial=0) <= 1
        and np.bincount(cols, minlength=1).max(initial=0) <= 1
    )
    if not one_to_one:
        candidates = _assign(candidates, rows, cols, overlap.iou[candidates])
    return Matches(
        threshold=threshold,
        pairs=candidates.astype(np.int64),
        true_ids=overlap.true_ids[overlap.true_index[candidates]],
        pred_ids=overlap.pred_ids[overlap.pred_index[candidates]],
        iou=overlap.iou[candidates],
    )
