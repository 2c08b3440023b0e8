"""Decode generated stage outputs into boxes (stage 1) and instance labels (stage 2), any ndim.

Generators emit float32 maps in [-1, 1]; every decoder here takes `value_range` (default
(-1, 1)) and maps its input to the stored range [0, 1] first with `to_stored_range`, so a
rendered map (already in [0, 1]) is decoded with `value_range=(0, 1)`.

Stage 1 (`decode_box_map`): the box map draws each nucleus as an Eq. 1 oval of half the box
size, 1.0 at the centre and bv / (1 + bv) = 0.2 on the rim. Components above half the rim
value are nuclei; generated ovals may touch, so a component is split when it holds several
bright centres separated by a clear dip (`split_box_map`), and each piece is fitted by
`geometry.boxes_from_box_map`'s Eq. 1 least squares.

Stage 2 (`decode_colored_mask`): colored mask + boundary class -> labels, using the stage-1
boxes as terminals of the iterative k-terminal cut for same-color blobs the boundary class
failed to separate (Sec. II-B; see `k_terminal_cut`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import feature, measure, segmentation

from nucgen_tf.geometry.boxes import (
    Boxes,
    box_semi_axes,
    boxes_from_box_map,
    default_box_threshold,
    label_box_map,
    oval_volume,
)
from nucgen_tf.geometry.colors import PALETTE, boundary_map, ellipse_owner_map, nearest_palette_index
from nucgen_tf.postprocess.k_terminal_cut import k_terminal_cut

DECODING = "one-nucleus-per-box/1"
"""Version of the stage-2 decoding rule (`decode_colored_mask`), recorded wherever decoded
masks are kept (synthesis settings, experiment settings), so that masks decoded by another
rule (the nearest-palette components before it) are never mixed in or reused."""


def to_stored_range(x: np.ndarray, value_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Map a generated array from `value_range` to the stored range [0, 1] (clipped), float32.

    Args:
        x: any-shape array in `value_range` (generators: (-1, 1); rendered maps: (0, 1)).
        value_range: (low, high) of the input; (-1, 1) gives (x + 1) / 2.
    """
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with high > low. Received: {value_range}")
    x = np.asarray(x, np.float32)
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def _default_min_size(ndim: int) -> int:
    return 2**ndim  # 4 pixels in 2D, 8 voxels in 3D


def _merge_regions(
    regions: np.ndarray, smooth: np.ndarray, n: int, peak_min: float, saddle_ratio: float, min_size: int
) -> np.ndarray:
    """Merge watershed regions unless they are distinct bright centres with a clear dip between.

    Kruskal-style, in descending saddle order (the saddle of two face-adjacent regions is the
    highest min(s_p, s_q) over their contacts, i.e. the pass value of the best path between
    their peaks): regions A, B stay apart only if both peaks are >= peak_min, the saddle is
    < saddle_ratio * min(peak_A, peak_B) and both have >= min_size pixels. Returns the
    (n + 1,) lut region -> group root.
    """
    peaks = np.zeros(n + 1)
    peaks[1:] = ndimage.maximum(smooth, regions, np.arange(1, n + 1))
    sizes = np.bincount(regions.ravel(), minlength=n + 1).astype(np.int64)
    pair_list, value_list = [], []
    for d in range(regions.ndim):
        upper = tuple(slice(1, None) if k == d else slice(None) for k in range(regions.ndim))
        lower = tuple(slice(None, -1) if k == d else slice(None) for k in range(regions.ndim))
        a, b = regions[upper], regions[lower]
        differ = (a != b) & (a > 0) & (b > 0)
        if differ.any():
            pair_list.append(
                np.stack([np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])], 1)
            )
            value_list.append(np.minimum(smooth[upper][differ], smooth[lower][differ]))
    parent = np.arange(n + 1)
    if not pair_list:
        return parent
    pairs = np.concatenate(pair_list).astype(np.int64)
    values = np.concatenate(value_list)
    keys, inverse = np.unique(pairs[:, 0] * (n + 1) + pairs[:, 1], return_inverse=True)
    saddles = np.full(len(keys), -np.inf)
    np.maximum.at(saddles, inverse.reshape(-1), values)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for index in np.argsort(-saddles, kind="stable").tolist():
        a, b = find(int(keys[index] // (n + 1))), find(int(keys[index] % (n + 1)))
        if a == b:
            continue
        low_peak = min(peaks[a], peaks[b])
        distinct = (
            low_peak >= peak_min
            and saddles[index] < saddle_ratio * low_peak
            and min(sizes[a], sizes[b]) >= min_size
        )
        if not distinct:
            parent[b] = a
            peaks[a] = max(peaks[a], peaks[b])
            sizes[a] += sizes[b]
    return np.array([find(k) for k in range(n + 1)])


def split_box_map(
    box_map: np.ndarray,
    bv: float = 0.25,
    threshold: float | None = None,
    min_size: int | None = None,
    smooth_sigma: float = 0.5,
    peak_min: float = 0.5,
    saddle_ratio: float = 0.75,
    min_distance: int | None = None,
) -> np.ndarray:
    """Components of a box map (stored range), with touching ovals split at their saddle.

    Peaks of the slightly smoothed map (`skimage.feature.peak_local_max`, per component)
    seed a watershed of -map inside each component; neighbouring watershed regions are then
    merged back unless both are bright centres (peak >= `peak_min`; an Eq. 1 centre is 1.0)
    and the saddle between them dips below `saddle_ratio` x the lower peak. Two Eq. 1 ovals
    overlapping by a third of their radius meet at ~0.7 of their centre value; noise of sigma
    0.03 on one oval makes extra maxima whose saddles stay within a few percent of the peak.

    Args:
        box_map: (*spatial) float in [0, 1].
        bv: Eq. 1 boundary value (sets the default threshold).
        threshold: foreground cut; default half the rim value, bv / (1 + bv) / 2 (0.1).
        min_size: smallest component or split piece in pixels; default 2**ndim.
        smooth_sigma: Gaussian sigma (pixels) of the map used for peaks and saddles.
        peak_min: smallest peak (smoothed, stored range) that can be its own oval.
        saddle_ratio: regions stay apart when saddle < saddle_ratio * lower peak.
        min_distance: `peak_local_max` spacing; default round(min_size ** (1 / ndim)), the
            side of the smallest allowed oval.

    Returns:
        (*spatial) int32 labels 1..N (0 = background) in raster order of their first pixel.
    """
    box_map = np.asarray(box_map, np.float32)
    ndim = box_map.ndim
    min_size = _default_min_size(ndim) if min_size is None else int(min_size)
    if threshold is None:
        threshold = default_box_threshold(bv)
    components = label_box_map(box_map, bv=bv, threshold=threshold, min_size=max(min_size, 1))
    n_components = int(components.max())
    if n_components == 0:
        return components
    if min_distance is None:
        min_distance = max(1, int(round(max(min_size, 1) ** (1.0 / ndim))))
    smooth = ndimage.gaussian_filter(box_map, smooth_sigma) if smooth_sigma > 0 else box_map
    peaks = feature.peak_local_max(
        smooth, min_distance=min_distance, threshold_abs=threshold, labels=components, exclude_border=False
    )
    markers = np.zeros(box_map.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Every component gets at least its maximum as a marker (plateaus, tiny components).
    has_marker = np.zeros(n_components + 1, bool)
    has_marker[components[tuple(peaks.T)]] = True
    missing = np.nonzero(~has_marker[1:])[0] + 1
    if len(missing):
        positions = ndimage.maximum_position(smooth, components, missing)
        for k, position in enumerate(positions):
            markers[position] = len(peaks) + k + 1
    n_regions = int(markers.max())
    regions = segmentation.watershed(-smooth, markers, mask=components > 0).astype(np.int64)
    roots = _merge_regions(regions, smooth, n_regions, peak_min, saddle_ratio, min_size)
    merged = roots[regions].ravel()
    # Consecutive ids in raster order of each piece's first pixel.
    ids, first = np.unique(merged, return_index=True)
    lut = np.zeros(int(ids.max()) + 1, np.int32)
    foreground_ids = ids[ids > 0][np.argsort(first[ids > 0], kind="stable")]
    lut[foreground_ids] = np.arange(1, len(foreground_ids) + 1, dtype=np.int32)
    return lut[merged].reshape(box_map.shape)


def keep_seeded(components: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, int]:
    """Components holding at least one seed point (rounded), relabelled 1..K in their order.

    Stage 1 is asked for one oval per seed; a component with no seed in it is something the
    generator invented (in the short-trained 3D stage 1, blobs and arcs away from any seed
    were half of all pieces), so synthesis can drop it (`ChainSettings.require_seed`).

    Returns:
        (labels, number of components dropped).
    """
    components = np.asarray(components)
    n = int(components.max(initial=0))
    points = np.asarray(seeds, np.float64).reshape(-1, components.ndim)
    index = np.round(points).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.asarray(components.shape)), axis=1)
    hit = components[tuple(index[inside].T)]
    seeded = np.zeros(n + 1, bool)
    seeded[hit[hit > 0]] = True
    lut = np.zeros(n + 1, np.int32)
    lut[seeded] = np.arange(1, int(seeded.sum()) + 1, dtype=np.int32)
    return lut[components], int(n - seeded.sum())


def decode_box_map(
    box_map: np.ndarray,
    bv: float = 0.25,
    threshold: float | None = None,
    min_size: int | None = None,
    split_touching: bool = True,
    value_range: Sequence[float] = (-1.0, 1.0),
    smooth_sigma: float = 0.5,
    peak_min: float = 0.5,
    saddle_ratio: float = 0.75,
    min_distance: int | None = None,
    seeds: np.ndarray | None = None,
    return_report: bool = False,
    oriented: bool = False,
) -> Boxes | tuple[Boxes, dict]:
    """Stage-1 output -> boxes.

    Args:
        box_map: (*spatial) generated box map in `value_range`.
        bv: Eq. 1 boundary value the generator was trained on.
        threshold: foreground cut in the stored range; default half the rim value,
            bv / (1 + bv) / 2 = 0.1.
        min_size: specks with fewer pixels are dropped; default 2**ndim (4 in 2D, 8 in 3D).
        split_touching: split components holding several bright centres (`split_box_map`);
            without it every connected component is one box.
        value_range: range of `box_map`; (-1, 1) for generator output, (0, 1) for renders.
        smooth_sigma, peak_min, saddle_ratio, min_distance: the splitting rule, see
            `split_box_map`.
        seeds: (N, ndim) seed points of the stage-1 input; when given, only pieces that hold
            a seed become boxes (`keep_seeded`). None = every piece (the paper's rule).
        return_report: also return {"pieces": pieces before the seed rule,
            "dropped_seedless": pieces it dropped}.
        oriented: the generator draws turned ovals (trained on oriented boxes,
            `RenderConfig.oriented`); fit their axes too.

    Returns:
        `Boxes` fitted per component by Eq. 1 least squares (`boxes_from_box_map`), ids 1..N
        in the order of the components (raster order of their first pixel).
    """
    stored = to_stored_range(box_map, value_range)
    ndim = stored.ndim
    min_size = _default_min_size(ndim) if min_size is None else int(min_size)
    if split_touching:
        components = split_box_map(
            stored,
            bv=bv,
            threshold=threshold,
            min_size=min_size,
            smooth_sigma=smooth_sigma,
            peak_min=peak_min,
            saddle_ratio=saddle_ratio,
            min_distance=min_distance,
        )
    else:
        components = label_box_map(stored, bv=bv, threshold=threshold, min_size=max(min_size, 1))
    report = {"pieces": int(components.max(initial=0)), "dropped_seedless": 0}
    if seeds is not None:
        components, report["dropped_seedless"] = keep_seeded(components, seeds)
    boxes = boxes_from_box_map(
        stored, bv=bv, min_size=max(min_size, 1), components=components, oriented=oriented
    )
    boxes = Boxes(boxes.centers, boxes.extents, axes=boxes.axes)
    return (boxes, report) if return_report else boxes


def _match_boxes(
    instances: np.ndarray, boxes: Boxes, instance_class: np.ndarray, box_classes: np.ndarray | None
) -> np.ndarray:
    """(N,) instance of each box (0 = none).

    The instance under the box's centre pixel, else the instance pixel nearest to the centre
    inside the box (boxes off the canvas match nothing). With `box_classes` (1 + palette
    index per box), instances of the box's own color are tried first, then any instance.
    """
    shape = np.asarray(instances.shape)
    owner = np.zeros(len(boxes), np.int64)
    for i, (center, half) in enumerate(zip(boxes.centers, boxes.half_widths(boxes.extents / 2.0))):
        pixel = np.rint(center).astype(np.int64)
        lo = np.maximum(np.minimum(np.ceil(center - half), pixel), 0).astype(np.int64)
        hi = np.minimum(np.maximum(np.floor(center + half), pixel), shape - 1).astype(np.int64)
        if np.any(hi < lo):
            continue
        local = instances[tuple(slice(a, b + 1) for a, b in zip(lo, hi))]
        under = int(instances[tuple(pixel)]) if np.all((pixel >= 0) & (pixel < shape)) else 0
        for color in [None] if box_classes is None else [int(box_classes[i]), None]:
            if under and (color is None or instance_class[under] == color):
                owner[i] = under
                break
            candidate = local > 0 if color is None else (local > 0) & (instance_class[local] == color)
            coords = np.stack(np.nonzero(candidate), axis=1)
            if len(coords):
                owner[i] = local[tuple(coords[int(np.argmin(((coords + lo - center) ** 2).sum(1)))])]
                break
    return owner


def _has_interior(labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1,) bool: label has a pixel whose face neighbours all share its label (survives
    one face erosion; the canvas edge does not erode, as in `boundary_map`)."""
    interior = (labels > 0) & ~boundary_map(labels, 1)
    return np.bincount(labels[interior], minlength=n + 1)[: n + 1] > 0


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N in increasing order of the old ids (0 stays 0)."""
    ids = np.unique(labels)
    lut = np.zeros(int(ids.max(initial=0)) + 1, np.int32)
    ids = ids[ids > 0]
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]


def _majority(values: np.ndarray, groups: np.ndarray, n: int, minlength: int) -> np.ndarray:
    """(n + 1,) most frequent non-zero `values` entry per group id 1..n (0 = none)."""
    keep = (groups > 0) & (values > 0)
    if not keep.any():
        return np.zeros(n + 1, np.int64)
    pairs = groups[keep].astype(np.int64) * minlength + values[keep]
    keys, counts = np.unique(pairs, return_counts=True)
    order = np.lexsort((-counts, keys // minlength))  # per group, the largest count first
    keys = keys[order]
    first = np.unique(keys // minlength, return_index=True)[1]
    best = np.zeros(n + 1, np.int64)
    best[keys[first] // minlength] = keys[first] % minlength
    return best


def _flood_by_class(
    labels: np.ndarray, todo: np.ndarray, classes: np.ndarray, label_class: np.ndarray
) -> np.ndarray:
    """Give each `todo` pixel to the nucleus of its own palette color that it is joined to.

    A generated mask's rim and boundary pixels belong to the nucleus next to them. A pixel
    joined to a nucleus of its own color by a path of such pixels goes to it (a geodesic
    flood from each color's nuclei, so a thin tip of a concave nucleus stays with it; a
    rendered mask never gives two nuclei within the color margin the same color).
    """
    out = labels.copy()
    flat = np.zeros(labels.shape, np.uint8)
    for k in np.unique(classes[todo]).tolist():
        if k == 0:
            continue
        markers = np.where(label_class[labels] == k, labels, 0)
        if not markers.any():
            continue
        region = (markers > 0) | (todo & (classes == k) & (out == 0))
        flooded = segmentation.watershed(flat, markers, mask=region)
        take = region & (out == 0)
        out[take] = flooded[take]
    return out


def fill_enclosed_holes(labels: np.ndarray) -> np.ndarray:
    """Background pockets enclosed by a single label become that label (any ndim).

    A pocket bordered by several labels (a gap inside a clump) is left as it is.
    """
    pockets = ndimage.binary_fill_holes(labels > 0) & (labels == 0)
    if not pockets.any():
        return labels
    pieces, n = ndimage.label(pockets)
    out = labels.copy()
    for index, window in enumerate(ndimage.find_objects(pieces), start=1):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in window)
        piece = pieces[grown] == index
        rim = ndimage.binary_dilation(piece) & ~piece
        around = np.unique(labels[grown][rim])
        if len(around) == 1 and around[0] > 0:
            out[grown][piece] = around[0]
    return out


def decode_colored_mask(
    mask: np.ndarray,
    boxes: Boxes,
    value_range: Sequence[float] = (-1.0, 1.0),
    boundary_threshold: float = 0.5,
    boundary_width: int = 1,
    min_size: int | None = None,
    keep_unmatched: bool = True,
    box_colors: np.ndarray | None = None,
    sigma: float = 0.2,
    backend: str = "scipy",
    max_cut_work: float | None = 2e4,
    cut_prior_weight: float = 0.5,
    min_added_fraction: float = 0.25,
    return_report: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Stage-2 output (colored mask + boundary class) and stage-1 boxes -> one nucleus per box.

    Stage 2 gives shapes to the stage-1 boxes (Sec. II-B): every box becomes one nucleus, and
    color only tells touching nuclei apart where the boundary class did not. A generator
    paints blended colors (a red oval comes back gray with a magenta crescent), so color is
    never allowed to split a nucleus by itself.

    1. Foreground = pixels whose nearest color is not black, or boundary class; its *cores*
       (foreground minus boundary class) split into face-connected components. Cores smaller
       than `min_size` are treated like boundary pixels.
    2. Each box belongs to the core under its centre pixel, else to the core pixel nearest its
       centre inside the box (with `box_colors`, cores of the box's own color first).
    3. A core holding one box is that box's nucleus; a core holding several is partitioned
       among them by `k_terminal_cut` (box centres as terminals, the box-map ovals as seeds,
       edge weights from the mask's color differences).
    4. A core holding no box is ONE added nucleus when it is nucleus-sized (>= `min_added_fraction`
       x the median box oval, at least `min_size`), has an interior pixel and does not lie
       mostly inside the oval of a box whose nucleus it touches (the generator may add nuclei;
       image and mask stay aligned because the image is painted from the final labels).
       Otherwise it is a fringe or a fragment: it joins the nucleus it touches (within
       boundary_width + 1 px; the one whose box oval holds most of it, else one of its own
       color, else the longest contact), or is dropped when it touches none.
    5. Boundary pixels and dissolved specks go to the nearest nucleus within
       boundary_width + 1 px, preferring one of their own color. Foreground still unassigned
       becomes the nucleus of an unmatched box whose centre it holds (tiny nuclei whose core
       vanished under their boundary), else an added nucleus when nucleus-sized, else
       background.
    6. Background holes enclosed by one nucleus are filled with it (a generator paints
       dark specks inside nuclei; real masks have no holes); nuclei below `min_size` are
       dropped; ids are made consecutive 1..N.

    For a mask rendered from labels (`render_colored_mask`) with their true boxes this
    returns the same partition (for nuclei of at least `min_size` pixels; a label made of
    disconnected pieces comes back as several nuclei or loses its box-less pieces).

    Args:
        mask: (*spatial, 4) RGB + boundary class in `value_range`.
        boxes: stage-1 boxes on the same canvas (`boxes.ndim == mask.ndim - 1`).
        value_range: range of `mask`; (-1, 1) for generator output, (0, 1) for renders.
        boundary_threshold: boundary class cut in the stored range.
        boundary_width: the width the boundary class was trained with.
        min_size: smallest nucleus and smallest core in pixels; default 4 * ndim (8 in 2D,
            12 in 3D).
        keep_unmatched: keep nucleus-sized cores that hold no box (step 4) as added nuclei.
        box_colors: optional (N,) palette index of each box (as passed to
            `render_colored_ellipses`); improves step 2 for concave nuclei whose box centre
            lies in a neighbour.
        sigma: color scale of the cut's edge capacities (see `k_terminal_cut`).
        backend: max-flow backend of the cut, "scipy" or "networkx".
        max_cut_work: `k_terminal_cut(max_work=...)`: cores whose cut would exceed this many
            pixel-cuts are split by the seeded-watershed approximation instead (2e4: two
            nuclei up to 20k px, three up to 5k, four up to 2.5k; on the bundled generators'
            masks this kept decoding within 1.4x of the palette-component decoder it
            replaced, with the same per-nucleus statistics as 2e5); None = always cut.
        cut_prior_weight: `k_terminal_cut(prior_weight=...)`, the multiplicative-Voronoi
            shape prior of the cut (0 = pure min cut).
        min_added_fraction: a box-less core is an added nucleus from this fraction of the
            median box oval on (0.25: ~150 px for BBBC039's ~600-px nuclei).
        return_report: also return the counts dict.

    Returns:
        (*spatial) int32 labels 1..N, or (labels, report) with report = {"n_components":
        cores found in step 1, "n_cut": cores split in step 3, "n_watershed": of those,
        split by the watershed approximation, "n_unmatched_boxes": boxes that got no
        nucleus, "n_unmatched_components": box-less cores kept as added nuclei (or dropped
        without `keep_unmatched`), "n_joined": box-less fragments joined to a neighbour,
        "n_dropped": box-less fragments and stray pieces of >= min_size px dropped,
        "n_instances": final count}.
    """
    mask = np.asarray(mask)
    if mask.ndim < 2 or mask.shape[-1] != 4:
        raise ValueError(
            f"`mask` must have shape (*spatial, 4) (RGB + boundary). Received: shape={mask.shape}"
        )
    ndim = mask.ndim - 1
    if boxes.ndim != ndim:
        raise ValueError(
            f"`boxes` must have ndim={ndim} like the mask. Received: boxes.ndim={boxes.ndim}, "
            f"mask.shape={mask.shape}"
        )
    if boundary_width < 1:
        raise ValueError(f"`boundary_width` must be >= 1. Received: boundary_width={boundary_width}")
    if not min_added_fraction >= 0:
        raise ValueError(f"`min_added_fraction` must be >= 0. Received: {min_added_fraction}")
    box_classes = None
    if box_colors is not None:
        box_colors = np.asarray(box_colors, np.int64).reshape(-1)
        if box_colors.shape != (len(boxes),) or np.any(box_colors < 0) or np.any(box_colors >= len(PALETTE)):
            raise ValueError(
                f"`box_colors` must be ({len(boxes)},) palette indices in [0, {len(PALETTE)}). "
                f"Received: shape={box_colors.shape}"
            )
        box_classes = box_colors + 1
    min_size = 4 * ndim if min_size is None else int(min_size)
    n_palette = len(PALETTE) + 1
    stored = to_stored_range(mask, value_range)
    rgb = stored[..., :3]
    boundary = stored[..., 3] > boundary_threshold
    classes = nearest_palette_index(rgb).astype(np.int64)
    foreground = (classes > 0) | boundary

    # 1. Cores.
    cores = measure.label(foreground & ~boundary, background=0, connectivity=1)
    n_cores = int(cores.max(initial=0))
    core_sizes = np.bincount(cores.ravel(), minlength=n_cores + 1)
    core_class = _majority(classes, cores, n_cores, n_palette)

    # 2-3. Boxes -> cores; cores with several boxes are cut.
    owner = _match_boxes(cores, boxes, core_class, box_classes)
    per_core = np.bincount(owner[owner > 0], minlength=n_cores + 1)
    labels = np.zeros(cores.shape, np.int32)
    label_box = [-1]  # box index per label (-1: added nucleus)
    n_cut = n_fallback = 0
    objects = ndimage.find_objects(cores)

    def window_of(core: int, grow: int) -> tuple[slice, ...]:
        return tuple(
            slice(max(s.start - grow, 0), min(s.stop + grow, size))
            for s, size in zip(objects[core - 1], cores.shape)
        )

    for core in range(1, n_cores + 1):
        members = np.nonzero(owner == core)[0]
        if len(members) == 0:
            continue
        window = window_of(core, 1)
        if len(members) == 1:
            labels[window][cores[window] == core] = len(label_box)
            label_box.append(int(members[0]))
            continue
        origin = np.array([s.start for s in window])
        parts, costs = k_terminal_cut(
            cores[window] == core,
            rgb[window],
            boxes.centers[members] - origin,
            sigma=sigma,
            # Turned cores become circles of their shortest semi-axis (the cut's seeds are
            # axis-aligned).
            seed_semi_axes=(
                box_semi_axes(boxes.extents[members]).min(axis=1)
                if boxes.oriented
                else box_semi_axes(boxes.extents[members])
            ),
            backend=backend,
            max_work=max_cut_work,
            return_costs=True,
            prior_weight=cut_prior_weight,
        )
        n_cut += 1
        n_fallback += costs is None
        local = labels[window]
        for value in np.unique(parts[parts > 0]).tolist():  # terminal k has label k + 1
            local[parts == value] = len(label_box)
            label_box.append(int(members[value - 1]))

    # 4. Box-less cores: one added nucleus, or a fragment that joins its neighbour.
    ovals = ellipse_owner_map(boxes, cores.shape)
    median_oval = float(np.median(oval_volume(boxes.extents))) if len(boxes) else 0.0
    min_added = max(float(min_size), min_added_fraction * median_oval)
    interior = _has_interior(cores, n_cores)
    reach = boundary_width + 1

    def neighbours(core: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Labels within `reach` of the core, their contact counts, and the core's home box + 1."""
        window = window_of(core, reach)
        piece = cores[window] == core
        grown = ndimage.binary_dilation(piece, iterations=reach) & ~piece
        near, contact = np.unique(labels[window][grown], return_counts=True)
        home = np.bincount(ovals[window][piece], minlength=2)
        home[0] = 0
        return near[near > 0], contact[near > 0], int(np.argmax(home)) if home.any() else 0

    n_unmatched_components = n_joined = n_dropped = 0
    fragments = []
    for core in np.nonzero(per_core[1:] == 0)[0] + 1:
        if core_sizes[core] < min_size:
            continue  # a speck: its pixels are handed out in step 5
        near, _, home = neighbours(core)
        touches_home = home > 0 and any(label_box[k] == home - 1 for k in near.tolist())
        if core_sizes[core] >= min_added and interior[core] and not touches_home:
            n_unmatched_components += 1
            window = window_of(core, 0)
            if keep_unmatched:
                labels[window][cores[window] == core] = len(label_box)
                label_box.append(-1)
            else:
                foreground[window] &= cores[window] != core
            continue
        fragments.append(int(core))
    # Fragments join in rounds, so that a chain of fragments reaches its nucleus.
    while fragments:
        label_class = _majority(classes, labels, len(label_box) - 1, n_palette)
        left = []
        for core in fragments:
            near, contact, home = neighbours(core)
            if not len(near):
                left.append(core)
                continue
            # Own box's oval first, then own color, then the longest contact.
            big = int(core_sizes[core]) + int(contact.sum())
            at_home = np.asarray([label_box[k] == home - 1 for k in near.tolist()]) & (home > 0)
            score = contact + (label_class[near] == core_class[core]) * big + at_home * 2 * big
            window = window_of(core, 0)
            labels[window][cores[window] == core] = near[int(np.argmax(score))]
            n_joined += 1
        if len(left) == len(fragments):
            break
        fragments = left
    for core in fragments:  # touches no nucleus: dropped with its own rim
        n_dropped += 1
        window = window_of(core, boundary_width)
        full = ndimage.generate_binary_structure(ndim, ndim)
        piece = ndimage.binary_dilation(cores[window] == core, full, iterations=boundary_width)
        foreground[window] &= ~(piece & (labels[window] == 0))

    # 5. Boundary pixels and specks -> nuclei: through their own color, then to an unmatched
    # box whose centre they hold (a tiny nucleus whose core vanished), then the nearest.
    label_class = _majority(classes, labels, len(label_box) - 1, n_palette)
    labels = _flood_by_class(labels, foreground & (labels == 0), classes, label_class)
    leftover = foreground & (labels == 0)
    matched = {label_box[k] for k in range(1, len(label_box))}
    waiting = [i for i in range(len(boxes)) if i not in matched]
    if leftover.any() and waiting:
        pieces = measure.label(np.where(leftover, classes, 0), background=0, connectivity=1)
        for i in waiting:
            pixel = tuple(np.rint(boxes.centers[i]).astype(np.int64))
            if all(0 <= p < n for p, n in zip(pixel, labels.shape)) and pieces[pixel] > 0:
                piece = pieces == pieces[pixel]
                labels[piece] = len(label_box)
                label_box.append(i)
                pieces[piece] = 0
        leftover = foreground & (labels == 0)
    if leftover.any():
        grown = segmentation.expand_labels(labels, distance=reach)
        labels = np.where(leftover, grown, labels).astype(np.int32)
        leftover = foreground & (labels == 0)
    if leftover.any():
        pieces = measure.label(leftover, background=0, connectivity=1)
        piece_sizes = np.bincount(pieces.ravel())
        piece_interior = _has_interior(pieces, len(piece_sizes) - 1)
        added = (piece_sizes >= min_added) & piece_interior
        added[0] = False
        n_dropped += int(np.sum((piece_sizes[1:] >= min_size) & ~added[1:]))  # specks not counted
        for piece in np.nonzero(added)[0].tolist():
            n_unmatched_components += 1
            if keep_unmatched:
                labels[pieces == piece] = len(label_box)
                label_box.append(-1)

    # 6. Holes filled, specks out, consecutive ids.
    labels = fill_enclosed_holes(labels)
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_size)[labels] & (labels > 0)] = 0
    boxed = {label_box[k] for k in np.unique(labels[labels > 0]).tolist() if label_box[k] >= 0}
    labels = _relabel(labels)
    if not return_report:
        return labels
    report = {
        "n_components": n_cores,
        "n_cut": n_cut,
        "n_watershed": n_fallback,
        "n_unmatched_boxes": len(boxes) - len(boxed),
        "n_unmatched_components": n_unmatched_components,
        "n_joined": n_joined,
        "n_dropped": n_dropped,
        "n_instances": int(labels.max(initial=0)),
    }
    return labels, report
