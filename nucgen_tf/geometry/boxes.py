"""Boxes of nuclei and the paper's one-layer box map (Eq. 1), for any ndim.

Stage 1 learns a mapping from seed points to a *box map*: every nucleus is drawn as an
axis-aligned oval/ellipsoid centred on its bounding box, with semi-axes a quarter of the
box size (so the oval is half as large as the nucleus and neighbouring ovals stay apart)
and an intensity that falls from 1 at the centre to bv / (1 + bv) on the rim (Eq. 1):

    I(x) = (1 - q(x) + bv) / (1 + bv),   q(x) = sum_d ((x_d - c_d) / a_d)^2 <= 1.

`boxes_from_box_map` inverts the map: because q is a quadratic polynomial of the pixel
coordinates, every component of a rendered map gives back its centre and semi-axes by
linear least squares, exactly on clean maps and robustly on generated ones.

Oriented boxes (`Boxes.axes`, from `boxes_from_labels(..., oriented=True)`) turn every oval
along its nucleus' principal axes: an axis-aligned bounding box of a diagonal, elongated
nucleus is near-square, so axis-aligned ovals teach the later stages round nuclei. With
orientation, q is a full quadratic form, and `boxes_from_box_map(..., oriented=True)` fits it
with its cross terms.

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
        axes: optional (N, ndim, ndim) float64 rotations whose columns are each box's own
            axes (unit vectors in array-axis order); `extents` are then the sizes along them.
            None = axis-aligned (every rotation the identity).
    """

    centers: np.ndarray
    extents: np.ndarray
    ids: np.ndarray | None = None
    axes: np.ndarray | None = None

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
        axes = None
        if self.axes is not None:
            ndim = centers.shape[1]
            axes = np.array(self.axes, dtype=np.float64).reshape(-1, ndim, ndim)
            if axes.shape[0] != len(centers):
                raise ValueError(
                    f"`axes` must have shape (N, ndim, ndim) = ({len(centers)}, {ndim}, {ndim}). "
                    f"Received: {np.shape(self.axes)}"
                )
            gram = np.einsum("nij,nik->njk", axes, axes)
            if not np.allclose(gram, np.eye(ndim), atol=1e-6):
                raise ValueError("`axes` must hold orthonormal columns (rotations).")
        for name, value in (("centers", centers), ("extents", extents), ("ids", ids), ("axes", axes)):
            if value is not None:
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def ndim(self) -> int:
        return self.centers.shape[1]

    def __len__(self) -> int:
        return self.centers.shape[0]

    @property
    def oriented(self) -> bool:
        return self.axes is not None

    def subset(self, index) -> Boxes:
        """The boxes selected by `index` (a mask or indices), orientation kept."""
        axes = None if self.axes is None else self.axes[index]
        return Boxes(self.centers[index], self.extents[index], self.ids[index], axes)

    def half_widths(self, semi_axes: np.ndarray) -> np.ndarray:
        """(N, ndim) half-extent along each array axis of ovals with these semi-axes."""
        return _half_widths(np.asarray(semi_axes, np.float64), self.axes)

    def local_offsets(self, points: np.ndarray) -> np.ndarray:
        """(P, N, ndim) offsets of P points from every box centre, in each box's own axes."""
        offset = np.asarray(points, np.float64)[:, None, :] - self.centers[None, :, :]
        if self.axes is None:
            return offset
        return np.einsum("pnd,ndk->pnk", offset, self.axes)

    @classmethod
    def empty(cls, ndim: int) -> Boxes:
        """No boxes, but a known ndim (so empty patches still render)."""
        if ndim < 1:
            raise ValueError(f"`ndim` must be >= 1. Received: ndim={ndim}")
        return cls(np.zeros((0, ndim)), np.ones((0, ndim)), np.zeros((0,), np.int64))


def boxes_from_labels(labels: np.ndarray, oriented: bool = False) -> Boxes:
    """Bounding boxes of every instance of a label mask.

    Args:
        labels: (*spatial) integer mask, 0 = background; ids need not be consecutive.
        oriented: boxes along each instance's principal axes (`oriented_boxes_from_labels`)
            instead of axis-aligned bounding boxes.

    Returns:
        `Boxes` with centre (min + max) / 2 and extent max - min + 1 per axis, ids = label values,
        in increasing id order.
    """
    if oriented:
        return oriented_boxes_from_labels(labels)
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


def _moment_axes(coords: np.ndarray, n_axes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (columns) and semi-axes of the uniform ellipsoid with these pixels' spread.

    A uniform ellipsoid in n dimensions has variance a^2 / (n + 2) along each of its axes;
    pixels sample it with unit cells (Sheppard's correction: + 1/12 per axis), so
    a_k = sqrt((n + 2) lambda_k) with lambda_k the eigenvalues of covariance + I / 12.
    Axes come in the order of the array axes they are closest to, each pointing to +.
    """
    ndim = coords.shape[1]
    n = ndim if n_axes is None else n_axes
    cov = np.cov(coords, rowvar=False, bias=True).reshape(ndim, ndim) if len(coords) > 1 else np.zeros((ndim, ndim))
    values, vectors = np.linalg.eigh(cov + np.eye(ndim) / 12.0)
    return _ordered_axes(vectors, np.sqrt((n + 2) * np.clip(values, 1.0 / 12.0, None)))


def _ordered_axes(vectors: np.ndarray, semi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns reordered so column d is the axis closest to array axis d (when unambiguous),
    each pointing to + along that array axis: axis-aligned ovals come back as the identity."""
    ndim = vectors.shape[0]
    dominant = np.argmax(np.abs(vectors), axis=0)
    if len(set(dominant.tolist())) == ndim:
        order = np.argsort(dominant, kind="stable")
        vectors, semi, dominant = vectors[:, order], semi[order], dominant[order]
    signs = np.sign(vectors[dominant, np.arange(ndim)])
    return vectors * np.where(signs == 0, 1.0, signs), semi


def oriented_boxes_from_labels(labels: np.ndarray) -> Boxes:
    """Boxes along each instance's principal axes, sized as its moment-matched ellipsoid.

    Centre = centroid; axes = eigenvectors of the pixel covariance; extents = 2 a_k with
    a_k the semi-axes of the uniform ellipsoid of the same spread (`_moment_axes`), so an
    elongated nucleus at 45 degrees keeps its aspect ratio (its axis-aligned box is square).
    """
    labels = np.asarray(labels)
    axis_aligned = boxes_from_labels(labels)
    if len(axis_aligned) == 0:
        return axis_aligned
    objects = ndimage.find_objects(labels)
    centers, extents, axes = [], [], []
    for label in axis_aligned.ids.tolist():
        window = objects[label - 1]
        local = np.nonzero(labels[window] == label)
        coords = np.stack(local, axis=1).astype(np.float64) + [s.start for s in window]
        vectors, semi = _moment_axes(coords)
        centers.append(coords.mean(axis=0))
        extents.append(2.0 * semi)
        axes.append(vectors)
    return Boxes(np.asarray(centers), np.asarray(extents), axis_aligned.ids, np.asarray(axes))


def _validate_shape(shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or min(shape, default=0) < 1:
        raise ValueError(
            f"`shape` must be {ndim} positive ints to match the boxes' ndim={ndim}. Received: shape={shape}"
        )
    return shape


def _half_widths(semi_axes: np.ndarray, axes: np.ndarray | None) -> np.ndarray:
    """(..., ndim) half-extent along each array axis of ovals with semi-axes (..., ndim) along
    the columns of `axes` (..., ndim, ndim); None = the array axes."""
    if axes is None:
        return semi_axes
    return np.sqrt(np.einsum("...dk,...k->...d", axes**2, semi_axes**2))


def ellipse_q(
    lo: Sequence[int], hi: Sequence[int], center: np.ndarray, semi: np.ndarray, axes: np.ndarray | None = None
) -> np.ndarray:
    """q = sum_k (y_k / a_k)^2 of one oval at the integer pixels of the window [lo, hi].

    y = the pixel's offset from `center` in the oval's own axes (columns of `axes`; None =
    the array axes). Returns an array of the window's shape, broadcast from per-axis terms.
    """
    ndim = len(lo)
    views = [(1,) * d + (-1,) + (1,) * (ndim - d - 1) for d in range(ndim)]
    offsets = [(np.arange(lo[d], hi[d] + 1) - center[d]).reshape(views[d]) for d in range(ndim)]
    if axes is None:
        return sum((offsets[d] / semi[d]) ** 2 for d in range(ndim))
    q = 0.0
    for k in range(ndim):
        along = sum(offsets[d] * axes[d, k] for d in range(ndim))
        q = q + (along / semi[k]) ** 2
    return q


def _ellipse_windows(
    centers: np.ndarray,
    semi_axes: np.ndarray,
    shape: Sequence[int],
    at_least_one: bool = True,
    axes: np.ndarray | None = None,
) -> Iterator[tuple[int, tuple[slice, ...], np.ndarray]]:
    """Yield (index, window, q) for every oval that meets the canvas.

    q = sum_k (y_k / a_k)^2 (`ellipse_q`; y in the oval's own axes when `axes`, (N, ndim, ndim),
    is given) is evaluated at integer pixel centres of the oval's bounding window only
    (clipped to the canvas). With `at_least_one`, an oval whose centre lies on the canvas but
    covers no pixel centre (e.g. a = 0.5 centred on a pixel corner) gets q = 1 (its rim) at its
    nearest pixel, so that no nucleus silently vanishes.

    The shared kernel of the box map, the colored ellipse map and the color graph.
    """
    shape_arr = np.asarray(shape)
    half = _half_widths(semi_axes, axes)
    lo = np.maximum(np.ceil(centers - half), 0).astype(np.int64)
    hi = np.minimum(np.floor(centers + half), shape_arr - 1).astype(np.int64)
    inside = np.all((np.round(centers) >= 0) & (np.round(centers) <= shape_arr - 1), axis=1)
    for i, (lo_i, hi_i, c_i, a_i) in enumerate(zip(lo.tolist(), hi.tolist(), centers, semi_axes)):
        if any(h < low for low, h in zip(lo_i, hi_i)):
            continue
        q = ellipse_q(lo_i, hi_i, c_i, a_i, None if axes is None else axes[i])
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
    for _, window, q in _ellipse_windows(boxes.centers, box_semi_axes(boxes.extents), shape, axes=boxes.axes):
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


def _implausible_oval(
    center: np.ndarray, half: np.ndarray, lo: np.ndarray, hi: np.ndarray, cut: np.ndarray
) -> bool:
    """A fitted oval that is no Eq. 1 fit of its component: centre outside the component's box
    (+0.5 px), or wider than the component on an axis (the component, cut at half the rim
    value, holds its whole oval), except where the canvas edge cuts it."""
    box_size = hi - lo + 1
    widest = np.where(cut, 2.0 * box_size, _MAX_OVAL_TO_COMPONENT * box_size) + 2.0
    return bool(np.any(center < lo - 0.5) or np.any(center > hi + 0.5) or np.any(2.0 * half > widest))


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
    if _implausible_oval(center, semi, lo, hi, cut):
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


def _fit_oriented_oval(
    coords: np.ndarray, values: np.ndarray, bv: float, lo: np.ndarray, hi: np.ndarray, cut: np.ndarray
):
    """Least-squares fit of an oriented Eq. 1 oval (full quadratic form); None when ill-posed.

    q = 1 + bv - v (1 + bv) = x^T U x + w^T x + k with U symmetric positive definite; the
    centre is -U^-1 w / 2 and U = R diag(1 / a^2) R^T gives the axes R and semi-axes a. The
    same sanity checks as `_fit_oval` (centre inside the component's box, oval not wider than
    the component). Needs >= 3 pixel rows on every axis.
    """
    n, ndim = coords.shape
    if np.any(_rows(lo, hi) < 3):
        return None
    pairs = [(i, j) for i in range(ndim) for j in range(i, ndim)]
    n_params = len(pairs) + ndim + 1
    if n < n_params:
        return None
    origin = (lo + hi) / 2.0
    x = coords - origin
    design = np.concatenate(
        [np.stack([x[:, i] * x[:, j] for i, j in pairs], axis=1), x, np.ones((n, 1))], axis=1
    )
    target = 1.0 + bv - values * (1.0 + bv)
    solution, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < n_params:
        return None
    quadratic = np.zeros((ndim, ndim))
    for (i, j), value in zip(pairs, solution[: len(pairs)]):
        quadratic[i, j] = quadratic[j, i] = value if i == j else value / 2.0
    eigenvalues, vectors = np.linalg.eigh(quadratic)
    if np.any(eigenvalues <= 0):
        return None
    linear = solution[len(pairs) : len(pairs) + ndim]
    center = -0.5 * np.linalg.solve(quadratic, linear) + origin
    semi = 1.0 / np.sqrt(eigenvalues)
    vectors, semi = _ordered_axes(vectors, semi)
    if _implausible_oval(center, _half_widths(semi, vectors), lo, hi, cut):
        return None
    return center, semi, vectors


def boxes_from_box_map(
    box_map: np.ndarray,
    bv: float = 0.25,
    threshold: float | None = None,
    min_size: int = 1,
    components: np.ndarray | None = None,
    oriented: bool = False,
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
        oriented: fit turned ovals (a map rendered from oriented boxes): the full quadratic
            form with cross terms (`_fit_oriented_oval`), falling back to the pixel moments'
            principal axes; components thinner than 3 rows on an axis stay axis-aligned.

    Returns:
        `Boxes` with ids = component labels (1..N for `label_box_map`); with `oriented`, with
        axes.
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
    centers, extents, ids, axes = [], [], [], []
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
        vectors = np.eye(ndim)
        if oriented and np.all(_rows(lo, hi) >= 3):
            fit = _fit_oriented_oval(coords, values, bv, lo, hi, cut)
            if fit is None:
                weights = np.clip(values, 1e-6, None)
                vectors, semi = _moment_axes(coords)
                center = (coords * weights[:, None]).sum(0) / weights.sum()
            else:
                center, semi, vectors = fit
        else:
            fit = _fit_oval(coords, values, bv, lo, hi, cut)
            center, semi = fit if fit is not None else _moment_oval(coords, values, lo, hi)
        centers.append(center)
        extents.append(4.0 * np.maximum(semi, _MIN_SEMI_AXIS))
        ids.append(label)
        axes.append(vectors)
    if not ids:
        return Boxes.empty(ndim)
    return Boxes(np.asarray(centers), np.asarray(extents), np.asarray(ids), np.asarray(axes) if oriented else None)
