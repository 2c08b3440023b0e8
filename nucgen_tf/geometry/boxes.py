"""Boxes of nuclei and the paper's one-layer box map (Eq. 1), for any ndim.

Stage 1 learns a mapping from seed points to a *box map*: every nucleus is drawn as an
axis-aligned oval/ellipsoid centred on its bounding box, with semi-axes a quarter of the
box size (so the oval is half as large as the nucleus and neighbouring ovals stay apart)
and an intensity that falls from 1 at the centre to bv / (1 + bv) on the rim (Eq. 1):

    I(x) = (1 - q(x) + bv) / (1 + bv),   q(x) = sum_d ((x_d - c_d) / a_d)^2 <= 1.

`boxes_from_box_map` inverts the map: because q is a quadratic polynomial of the pixel
coordinates, every component of a rendered map gives back its centre and semi-axes by
linear least squares, exactly on clean maps and robustly on generated ones.

Every renderer here touches only the window around each nucleus, never a full-canvas
array per nucleus, so it stays cheap on 2048 x 2048 synthesis canvases with thousands of
nuclei.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

_MIN_SEMI_AXIS = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class Boxes:
    """Axis-aligned bounding boxes of N nuclei in array-axis order.

    Arrays are copied, converted and made read-only on construction, so a `Boxes` can be
    shared between renderers without defensive copies.

    Attributes:
        centers: (N, ndim) float64 box centres in pixel indices, (min + max) / 2 per axis.
        extents: (N, ndim) float64 full box sizes in pixels, max - min + 1 per axis (> 0).
        ids: (N,) int64 instance ids (the label values they came from); default 1..N.
    """

    centers: np.ndarray
    extents: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self):
        centers = np.array(self.centers, dtype=np.float64, ndmin=2)
        extents = np.array(self.extents, dtype=np.float64, ndmin=2)
        if centers.ndim != 2 or centers.shape != extents.shape:
            raise ValueError(
                "`centers` and `extents` must both have shape (N, ndim). Received: "
                f"centers.shape={centers.shape}, extents.shape={extents.shape}"
            )
        if centers.shape[1] < 1:
            raise ValueError(f"Boxes need ndim >= 1. Received: centers.shape={centers.shape}")
        if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(extents))):
            raise ValueError("`centers` and `extents` must be finite. Received non-finite values.")
        if np.any(extents <= 0):
            raise ValueError(f"`extents` must be > 0. Received: min extent={extents.min()}")
        if self.ids is None:
            ids = np.arange(1, len(centers) + 1, dtype=np.int64)
        else:
            ids = np.array(self.ids, dtype=np.int64).reshape(-1)
        if ids.shape != (len(centers),):
            raise ValueError(
                f"`ids` must have shape (N,) = ({len(centers)},). Received: ids.shape={ids.shape}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"`ids` must be unique. Received: ids={ids.tolist()}")
        for name, value in (("centers", centers), ("extents", extents), ("ids", ids)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def ndim(self) -> int:
        return self.centers.shape[1]

    def __len__(self) -> int:
        return self.centers.shape[0]

    @classmethod
    def empty(cls, ndim: int) -> Boxes:
        """No boxes, but a known ndim (so empty patches still render)."""
        if ndim < 1:
            raise ValueError(f"`ndim` must be >= 1. Received: ndim={ndim}")
        return cls(np.zeros((0, ndim)), np.ones((0, ndim)), np.zeros((0,), np.int64))


def boxes_from_labels(labels: np.ndarray) -> Boxes:
    """Bounding boxes of every instance of a label mask.

    Args:
        labels: (*spatial) integer mask, 0 = background; ids need not be consecutive.

    Returns:
        `Boxes` with centre (min + max) / 2 and extent max - min + 1 per axis, ids = label values,
        in increasing id order.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be an integer array. Received: dtype={labels.dtype}")
    if labels.ndim < 1:
        raise ValueError(f"`labels` must have ndim >= 1. Received: shape={labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"`labels` must be >= 0. Received: min={labels.min()}")
    if labels.size == 0 or labels.max() == 0:
        return Boxes.empty(labels.ndim)
    objects = ndimage.find_objects(labels)
    ids, starts, stops = [], [], []
    for index, window in enumerate(objects):
        if window is None:
            continue
        ids.append(index + 1)
        starts.append([s.start for s in window])
        stops.append([s.stop for s in window])
    starts = np.asarray(starts, np.float64)
    stops = np.asarray(stops, np.float64)
    return Boxes(centers=(starts + stops - 1) / 2, extents=stops - starts, ids=np.asarray(ids))


def _validate_shape(shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or min(shape, default=0) < 1:
        raise ValueError(
            f"`shape` must be {ndim} positive ints to match the boxes' ndim={ndim}. Received: shape={shape}"
        )
    return shape


def _ellipse_windows(
    centers: np.ndarray, semi_axes: np.ndarray, shape: Sequence[int], at_least_one: bool = True
) -> Iterator[tuple[int, tuple[slice, ...], np.ndarray]]:
    """Yield (index, window, q) for every axis-aligned ellipse that meets the canvas.

    q = sum_d ((x_d - c_d) / a_d)^2 is evaluated at integer pixel centres of the ellipse's
    bounding window only (clipped to the canvas). With `at_least_one`, an ellipse whose centre
    lies on the canvas but covers no pixel centre (e.g. a = 0.5 centred on a pixel corner)
    gets q = 1 (its rim) at its nearest pixel, so that no nucleus silently vanishes.

    The shared kernel of the box map, the colored ellipse map and the color graph.
    """
    shape_arr = np.asarray(shape)
    ndim = len(shape)
    lo = np.maximum(np.ceil(centers - semi_axes), 0).astype(np.int64)
    hi = np.minimum(np.floor(centers + semi_axes), shape_arr - 1).astype(np.int64)
    inside = np.all((np.round(centers) >= 0) & (np.round(centers) <= shape_arr - 1), axis=1)
    views = [(1,) * d + (-1,) + (1,) * (ndim - d - 1) for d in range(ndim)]
    for i, (lo_i, hi_i, c_i, a_i) in enumerate(zip(lo.tolist(), hi.tolist(), centers, semi_axes)):
        if any(h < low for low, h in zip(lo_i, hi_i)):
            continue
        q = None
        for d in range(ndim):
            t = ((np.arange(lo_i[d], hi_i[d] + 1) - c_i[d]) / a_i[d]) ** 2
            q = t.reshape(views[d]) if q is None else q + t.reshape(views[d])
        if at_least_one and inside[i]:
            flat = int(np.argmin(q))
            if q.flat[flat] > 1:
                q = q.copy()
                q.flat[flat] = 1.0
        yield i, tuple(slice(low, h + 1) for low, h in zip(lo_i, hi_i)), q


def box_semi_axes(extents: np.ndarray) -> np.ndarray:
    """Eq. 1 semi-axes of the box-map ovals: a quarter of the box size, floored at 0.5 px."""
    return np.maximum(np.asarray(extents, np.float64) / 4.0, _MIN_SEMI_AXIS)


def oval_volume(extents: np.ndarray) -> np.ndarray:
    """(N,) volume in pixels of each box's full-size oval (semi-axes max(extents / 2, 0.5)), any ndim."""
    from scipy import special

    extents = np.asarray(extents, np.float64).reshape(len(extents), -1)
    ndim = extents.shape[1]
    unit_ball = np.pi ** (ndim / 2) / special.gamma(ndim / 2 + 1)
    return unit_ball * np.prod(np.maximum(extents / 2.0, _MIN_SEMI_AXIS), axis=1)


def render_box_map(boxes: Boxes, shape: Sequence[int], bv: float = 0.25) -> np.ndarray:
    """Render the stage-1 box map (Eq. 1 of the paper).

    Args:
        boxes: N boxes with `boxes.ndim == len(shape)`.
        shape: spatial canvas shape (Y, X) or (Z, Y, X).
        bv: boundary value; the rim has intensity bv / (1 + bv) (0.2 for bv = 0.25).

    Returns:
        (*shape) float32 in [0, 1]: per box an oval with semi-axes max(extents / 4, 0.5) and
        intensity (1 - q + bv) / (1 + bv) where q <= 1 (1.0 at the centre), 0 outside;
        overlapping ovals take the max.
    """
    if bv <= 0:
        raise ValueError(f"`bv` must be > 0. Received: bv={bv}")
    shape = _validate_shape(shape, boxes.ndim)
    out = np.zeros(shape, np.float32)
    for _, window, q in _ellipse_windows(boxes.centers, box_semi_axes(boxes.extents), shape):
        value = np.where(q <= 1.0, (1.0 + bv - q) / (1.0 + bv), 0.0)
        np.maximum(out[window], value, out=out[window], casting="unsafe")
    return out


def default_box_threshold(bv: float = 0.25) -> float:
    """Half the rim value: separates ovals from background with margin on both sides."""
    return bv / (1.0 + bv) / 2.0


def label_box_map(
    box_map: np.ndarray, bv: float = 0.25, threshold: float | None = None, min_size: int = 1
) -> np.ndarray:
    """Connected components (face connectivity) of a box map above `threshold`.

    Separate from `boxes_from_box_map` so that a smarter splitter of touching ovals can
    replace this step and hand its components to `boxes_from_box_map(components=...)`.

    Args:
        box_map: (*spatial) float map, stored range [0, 1].
        bv: Eq. 1 boundary value, used for the default threshold.
        threshold: foreground cut; default half the rim value, bv / (1 + bv) / 2.
        min_size: components with fewer pixels are dropped.

    Returns:
        (*spatial) int32 labels 1..N in raster order of first appearance, 0 = background.
    """
    box_map = np.asarray(box_map)
    if threshold is None:
        threshold = default_box_threshold(bv)
    structure = ndimage.generate_binary_structure(box_map.ndim, 1)
    components, n = ndimage.label(box_map > threshold, structure=structure)
    if n and min_size > 1:
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        keep = sizes >= min_size
        keep[0] = False
        lut = np.zeros(n + 1, np.int32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        components = lut[components]
    return components.astype(np.int32, copy=False)


def _rows(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(ndim,) pixel rows per axis of a connected component (its box size), capped at 3.

    3 rows are enough for a quadratic; a face-connected component covers every row of its box.
    """
    return np.minimum(hi - lo + 1, 3).astype(np.int64)


def _thin_semi_axes(distinct: np.ndarray) -> np.ndarray:
    """Default semi-axes on axes where the oval is only 1 or 2 pixels thick.

    A quadratic cannot be fitted through so few rows. One row on its own axis means
    a in [0.5, 1) (box extent 1-3 px), so a = 0.5 (extent 2) is within 1 px; two rows,
    a = 0.75 (extent 3), refined by `_fit_oval` from the fitted constant.
    """
    return np.where(distinct == 1, 0.5, 0.75)


# Widest fitted oval, per axis, as a multiple of its component's size (components cut at
# half the rim value are ~6 % wider than their exact Eq. 1 oval).
_MAX_OVAL_TO_COMPONENT = 1.25


def _fit_oval(
    coords: np.ndarray, values: np.ndarray, bv: float, lo: np.ndarray, hi: np.ndarray, cut: np.ndarray
):
    """Least-squares fit of Eq. 1 to one component; None when ill-posed.

    q = 1 + bv - v (1 + bv) = sum_d u_d x_d^2 + w_d x_d + k is linear in (u, w, k), with
    u_d = 1 / a_d^2 and c_d = -w_d / (2 u_d). Only axes with >= 3 pixel rows get the quadratic
    term; a 2-row axis gets a linear term only (any function of 2 rows is linear) and a 1-row
    axis none, so thin ovals still fit exactly on their other axes. Coordinates are centred on
    the component's box for conditioning.
    """
    n, ndim = coords.shape
    distinct = _rows(lo, hi)
    full = distinct >= 3
    linear = distinct >= 2
    n_params = int(full.sum() + linear.sum() + 1)
    if n < n_params:
        return None
    origin = (lo + hi) / 2.0
    x = coords - origin
    design = np.concatenate([x[:, full] ** 2, x[:, linear], np.ones((n, 1))], axis=1)
    target = 1.0 + bv - values * (1.0 + bv)
    solution, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < n_params:
        return None
    n_full = int(full.sum())
    u = solution[:n_full]
    w_linear = solution[n_full : n_full + int(linear.sum())]
    w = np.zeros(ndim)
    w[linear] = w_linear
    if np.any(u <= 0):
        return None
    weights = np.clip(values, 1e-6, None)
    center = (coords * weights[:, None]).sum(0) / weights.sum()
    semi = _thin_semi_axes(distinct)
    center[full] = -w[full] / (2.0 * u) + origin[full]
    semi[full] = 1.0 / np.sqrt(u)
    two_rows = distinct == 2
    if two_rows.any():
        # Rows at +-0.5 from a centred 2-row axis add u_d / 4 to every pixel: that is what is
        # left of the fitted constant after the full axes' u_d c_d^2; shared equally when
        # several axes are 2 rows thick, kept within the range a 2-row oval allows.
        leftover = solution[-1] - float(np.sum(w[full] ** 2 / (4.0 * u)))
        if leftover > 0:
            share = 4.0 * leftover / int(two_rows.sum())
            semi[two_rows] = np.clip(1.0 / np.sqrt(share), 0.5, 1.5)
    box_size = hi - lo + 1
    # The component (cut at half the rim value) holds its whole oval, so an oval wider than
    # the component is a bad fit (a generated blob that is not Eq. 1-shaped), except on axes
    # where the canvas edge cuts the component.
    widest = np.where(cut, 2.0 * box_size, _MAX_OVAL_TO_COMPONENT * box_size) + 2.0
    if np.any(center < lo - 0.5) or np.any(center > hi + 0.5) or np.any(2.0 * semi > widest):
        return None
    return center, semi


def _moment_oval(
    coords: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Centre = intensity-weighted centroid; semi-axes from the unweighted spread.

    A uniform ellipsoid in n dimensions has var_d = a_d^2 / (n + 2); the pixel set {q <= 1}
    covers it with unit cells, each adding 1/12 of variance lost by point sampling
    (Sheppard's correction), hence a_d = sqrt((n + 2) (var_d + 1/12)), with n the number of
    axes at least 3 pixels thick (thinner axes use `_thin_semi_axes`).
    """
    distinct = _rows(lo, hi)
    full = distinct >= 3
    weights = np.clip(values, 1e-6, None)
    center = (coords * weights[:, None]).sum(0) / weights.sum()
    semi = _thin_semi_axes(distinct)
    var = coords[:, full].var(axis=0)
    semi[full] = np.sqrt((int(full.sum()) + 2) * (var + 1.0 / 12.0))
    return center, semi


def boxes_from_box_map(
    box_map: np.ndarray,
    bv: float = 0.25,
    threshold: float | None = None,
    min_size: int = 1,
    components: np.ndarray | None = None,
) -> Boxes:
    """Recover boxes from a (rendered or generated) box map by inverting Eq. 1.

    Each component is fitted by linear least squares on q = 1 + bv - v (1 + bv) (extents =
    4 a). On rendered maps this is exact (to ~1e-6) for every box at least 5 px on each axis.
    On axes where the component is only 1 or 2 pixels thick no quadratic can be fitted: the
    centre there is the intensity-weighted mean and a comes from the fitted constant (2 rows)
    or is 0.5 (1 row). Boxes thinner than 5 px render as such thin ovals and lose information
    (a 24 x 2 box centred between pixels renders as 2 rim pixels), so they come back only
    roughly; boxes of at most 4 px on every axis come back within 2 px (1 px when square).

    The fit falls back to moments (intensity-weighted centroid, a_d = sqrt((n + 2)
    (var_d + 1/12)) from the pixel spread) when it is ill-posed: fewer pixels than unknowns
    or a rank-deficient design, any u_d <= 0 (not a bowl), a fitted centre outside the
    component's bounding box (+0.5 px), or a fitted oval wider than 1.25 x the component
    (+2 px) on an axis where the component is inside the canvas (twice, where the edge cuts
    it; a generated blob that is not Eq. 1-shaped can fit a far wider bowl). An oval cut by
    the canvas edge keeps the fitted (extrapolated) centre as long as it stays in the
    component's box. Touching ovals form one component here; split them first
    and pass `components`.

    Args:
        box_map: (*spatial) float map in [0, 1].
        bv: Eq. 1 boundary value the map was rendered with.
        threshold: foreground cut for `label_box_map` (default bv / (1 + bv) / 2).
        min_size: components with fewer pixels are dropped.
        components: optional precomputed (*spatial) int labels (e.g. from a splitter of
            touching ovals); replaces `label_box_map`. Each label is fitted on its own pixels.

    Returns:
        `Boxes` with ids = component labels (1..N for `label_box_map`).
    """
    box_map = np.asarray(box_map, np.float64)
    ndim = box_map.ndim
    if components is None:
        components = label_box_map(box_map, bv=bv, threshold=threshold, min_size=min_size)
    else:
        components = np.asarray(components)
        if components.shape != box_map.shape:
            raise ValueError(
                "`components` must match the box map's shape. Received: "
                f"components.shape={components.shape}, box_map.shape={box_map.shape}"
            )
    centers, extents, ids = [], [], []
    for index, window in enumerate(ndimage.find_objects(components)):
        if window is None:
            continue
        label = index + 1
        member = components[window] == label
        local = np.nonzero(member)
        if len(local[0]) < min_size:
            continue
        lo = np.array([s.start for s in window], np.float64)
        hi = np.array([s.stop - 1 for s in window], np.float64)
        coords = np.stack(local, axis=1).astype(np.float64) + lo
        values = box_map[window][member]
        cut = (lo <= 0) | (hi >= np.asarray(box_map.shape) - 1)
        fit = _fit_oval(coords, values, bv, lo, hi, cut)
        center, semi = fit if fit is not None else _moment_oval(coords, values, lo, hi)
        centers.append(center)
        extents.append(4.0 * np.maximum(semi, _MIN_SEMI_AXIS))
        ids.append(label)
    if not ids:
        return Boxes.empty(ndim)
    return Boxes(np.asarray(centers), np.asarray(extents), np.asarray(ids))
