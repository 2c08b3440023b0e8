"""Graph-colored ellipse maps and colored masks with a boundary class (stage 2), any ndim.

Stage 2 maps full-size colored ovals (one per box) to colored instance masks plus a
boundary channel. Colors only have to tell *neighbouring* nuclei apart, so they come from a
greedy coloring of a graph whose edges join nuclei that touch or nearly touch (masks within
`margin` px, or full-size ovals within `margin` px); the same nucleus gets the same color in
its oval and in its mask. Decoding a colored mask back to instances needs only the nearest
palette color, connected components and, for generated masks where one color spreads over
two touching nuclei, the boundary channel.

Distances here are in pixels ("within margin" = at most `margin` background pixels between
the two shapes, i.e. pixel-centre distance <= margin + 1), evaluated inside each nucleus's
window only.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import networkx as nx
import numpy as np
from scipy import ndimage, spatial
from skimage import measure

from nucgen_tf.geometry.boxes import Boxes, _ellipse_windows, _validate_shape, ellipse_q

_MIN_SEMI_AXIS = 0.5
N_PRIMARY = 7


def _make_palette() -> np.ndarray:
    primaries = [
        (1, 0, 0), (0, 1, 0), (0, 0, 1),  # red, green, blue
        (1, 1, 0), (1, 0, 1), (0, 1, 1),  # yellow, magenta, cyan
        (1, 1, 1),  # white
    ]
    # Five half-intensity mixes: the 5-subset of {0, .5, 1}^3 that maximises the smallest
    # distance to black, the primaries and each other (sqrt(0.5) ~ 0.71 vs >= 1 above).
    extras = [(0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0), (0.5, 0.5, 1), (0.5, 1, 0.5)]
    palette = np.asarray(primaries + extras, np.float32)
    palette.setflags(write=False)
    return palette


PALETTE = _make_palette()
"""(12, 3) float32 RGB in [0, 1], read-only.

The 7 non-black corners of the RGB cube come first (pairwise distance >= 1, distance to the
black background >= 1); a coloring that needs at most 7 colors uses only these. The 5
half-intensity extras, for dense (mostly 3D) graphs, are only sqrt(0.5) ~ 0.71 from their
nearest neighbour (and from black), so a generator must reproduce them more precisely.
"""


def _palette_with_background() -> np.ndarray:
    table = np.concatenate([np.zeros((1, 3), np.float32), PALETTE])
    table.setflags(write=False)
    return table


def _check_margin(margin: float) -> None:
    if not margin >= 0:
        raise ValueError(f"`margin` must be >= 0. Received: margin={margin}")


def _candidate_pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose integer windows [lo, hi] overlap on every axis."""
    n = len(lo)
    rows_all, cols_all = [], []
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        overlap = np.all(
            (lo[start:stop, None, :] <= hi[None, :, :]) & (lo[None, :, :] <= hi[start:stop, None, :]), axis=-1
        )
        rows, cols = np.nonzero(overlap)
        rows += start
        keep = rows < cols
        rows_all.append(rows[keep])
        cols_all.append(cols[keep])
    if not rows_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows_all), np.concatenate(cols_all)


def _ellipse_pairs(boxes: Boxes, reach: float) -> list[tuple[int, int]]:
    """Index pairs whose full-size ovals come within `reach` (pixel-centre distance).

    Each oval is inflated by reach / 2 per semi-axis (so two ovals with a gap of `reach`
    just meet). Pairs are accepted when their inscribed circles overlap, rejected when their
    circumscribed circles (or windows) do not, and otherwise tested at the pixel centres of
    the shared window.
    """
    if len(boxes) < 2:
        return []
    semi = np.maximum(boxes.extents / 2.0, _MIN_SEMI_AXIS) + reach / 2.0
    half = boxes.half_widths(semi)
    lo = np.ceil(boxes.centers - half)
    hi = np.floor(boxes.centers + half)
    rows, cols = _candidate_pairs(lo, hi)
    distance = np.linalg.norm(boxes.centers[rows] - boxes.centers[cols], axis=1)
    sure = distance <= semi[rows].min(1) + semi[cols].min(1)
    maybe = ~sure & (distance <= semi[rows].max(1) + semi[cols].max(1))
    edges = list(zip(rows[sure].tolist(), cols[sure].tolist()))
    axes = boxes.axes
    for i, j in zip(rows[maybe].tolist(), cols[maybe].tolist()):
        w_lo = np.maximum(lo[i], lo[j])
        w_hi = np.minimum(hi[i], hi[j])
        q_i = ellipse_q(w_lo, w_hi, boxes.centers[i], semi[i], None if axes is None else axes[i])
        q_j = ellipse_q(w_lo, w_hi, boxes.centers[j], semi[j], None if axes is None else axes[j])
        if np.any((q_i <= 1.0) & (q_j <= 1.0)):
            edges.append((i, j))
    return edges


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Label pairs (a < b) with face-adjacent pixels, in one pass per axis."""
    pairs = set()
    for d in range(labels.ndim):
        upper = tuple(slice(1, None) if k == d else slice(None) for k in range(labels.ndim))
        lower = tuple(slice(None, -1) if k == d else slice(None) for k in range(labels.ndim))
        a, b = labels[upper], labels[lower]
        differ = (a != b) & (a != 0) & (b != 0)
        if differ.any():
            a, b = a[differ], b[differ]
            found = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
            pairs.update(map(tuple, found.tolist()))
    return pairs


def _mask_pairs(labels: np.ndarray, reach: float) -> set[tuple[int, int]]:
    """Label pairs (a < b) whose pixels come within `reach` (Euclidean, pixel centres).

    Touching pairs come from one face-adjacency pass. For the other pairs, the closest
    pixels of two disjoint masks always have a face-neighbour outside their own mask inside
    the canvas (a step towards the other mask), i.e. they are inner-boundary pixels; so
    only boundary pixels are compared, only for pairs whose boundary windows grown by
    `reach` overlap, and only the points inside the other's grown window (A's points near
    B's window, then B's points near those).
    """
    pairs = _touching_pairs(labels)
    boundary = boundary_map(labels)
    owner = labels[boundary]
    if not len(owner):
        return pairs
    coords = np.stack(np.nonzero(boundary), axis=1).astype(np.float64)
    order = np.argsort(owner, kind="stable")
    owner, coords = owner[order], coords[order]
    ids, starts = np.unique(owner, return_index=True)
    stops = np.append(starts[1:], len(owner))
    lo = np.minimum.reduceat(coords, starts, axis=0)
    hi = np.maximum.reduceat(coords, starts, axis=0)
    rows, cols = _candidate_pairs(lo - reach, hi + reach)
    for a, b in zip(rows.tolist(), cols.tolist()):
        key = (int(ids[a]), int(ids[b]))
        if key in pairs:
            continue
        points_a = coords[starts[a] : stops[a]]
        points_a = points_a[np.all((points_a >= lo[b] - reach) & (points_a <= hi[b] + reach), 1)]
        if not len(points_a):
            continue
        points_b = coords[starts[b] : stops[b]]
        low, high = points_a.min(0) - reach, points_a.max(0) + reach
        points_b = points_b[np.all((points_b >= low) & (points_b <= high), 1)]
        if not len(points_b):
            continue
        if len(points_a) * len(points_b) <= 1 << 14:
            near = ((points_a[:, None, :] - points_b[None, :, :]) ** 2).sum(-1).min() <= reach**2
        else:
            distance, _ = spatial.cKDTree(points_b).query(points_a, distance_upper_bound=reach + 1e-9)
            near = bool(np.any(np.isfinite(distance)))
        if near:
            pairs.add(key)
    return pairs


def color_graph(boxes: Boxes, labels: np.ndarray | None = None, margin: float = 3.0) -> nx.Graph:
    """The graph whose proper coloring keeps neighbouring nuclei apart.

    Args:
        boxes: one box per nucleus; nodes are `boxes.ids`.
        labels: optional (*spatial) int mask whose label values are among `boxes.ids`; adds an
            edge between masks with at most `margin` pixels between them (so touching masks are
            always joined).
        margin: gap in pixels below which two nuclei must differ in color.

    Returns:
        Undirected graph: nodes = box ids (int), edges = masks within margin OR full-size ovals
        (semi-axes extents / 2) within margin.
    """
    _check_margin(margin)
    reach = margin + 1.0
    ids = [int(i) for i in boxes.ids]
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    graph.add_edges_from((ids[i], ids[j]) for i, j in _ellipse_pairs(boxes, reach))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != boxes.ndim:
            raise ValueError(
                f"`labels` must have ndim={boxes.ndim} like the boxes. Received: labels.shape={labels.shape}"
            )
        present = np.nonzero(np.bincount(labels.ravel()))[0] if labels.size else np.zeros(0, int)
        missing = sorted(set(present[present > 0].tolist()) - set(ids))
        if missing:
            raise ValueError(f"`labels` has ids without a box. Received: missing ids={missing[:10]}")
        graph.add_edges_from(_mask_pairs(labels, reach))
    return graph


def _dsatur(graph: nx.Graph) -> dict:
    """DSATUR greedy coloring (Brelaz 1979) with a lazy heap, O((n + m) log n).

    Same rule as `networkx.greedy_color(strategy="DSATUR")` (most distinct neighbour colors
    first, ties by degree, then node order), whose quadratic node scan takes seconds on a
    2,000-nucleus synthesis canvas.
    """
    order = {node: k for k, node in enumerate(graph.nodes)}
    seen: dict = {node: set() for node in graph.nodes}
    coloring: dict = {}
    heap = [(0, -graph.degree(node), order[node], node) for node in graph.nodes]
    heapq.heapify(heap)
    while heap:
        saturation, _, _, node = heapq.heappop(heap)
        if node in coloring or -saturation != len(seen[node]):
            continue
        color = 0
        while color in seen[node]:
            color += 1
        coloring[node] = color
        for other in graph.neighbors(node):
            if other not in coloring and color not in seen[other]:
                seen[other].add(color)
                heapq.heappush(heap, (-len(seen[other]), -graph.degree(other), order[other], other))
    return coloring


def assign_colors(
    graph: nx.Graph, n_colors: int = len(PALETTE), rng: np.random.Generator | None = None
) -> dict[int, int]:
    """Greedy DSATUR proper coloring of `graph` with palette indices.

    Args:
        graph: from `color_graph`.
        n_colors: palette size available.
        rng: optional; when given, the color classes are mapped to a random choice of palette
            entries (from the 7 best-separated ones whenever that suffices), so that a network
            does not learn a fixed color order. Without it, classes 0, 1, ... map to PALETTE
            rows 0, 1, ... (deterministic).

    Returns:
        {node id: palette index}.

    Raises:
        ValueError: the greedy coloring needs more than `n_colors` colors.
    """
    if n_colors < 1:
        raise ValueError(f"`n_colors` must be >= 1. Received: n_colors={n_colors}")
    coloring = _dsatur(graph)
    used = max(coloring.values()) + 1 if coloring else 0
    if used > n_colors:
        raise ValueError(
            f"The color graph needs {used} colors (greedy DSATUR) but only n_colors={n_colors} are "
            "available; lower the color margin or the nucleus density."
        )
    mapping = np.arange(max(used, 1))
    if rng is not None and used:
        pool = min(N_PRIMARY, n_colors) if used <= N_PRIMARY else n_colors
        mapping = rng.permutation(pool)[:used]
    return {int(node): int(mapping[c]) for node, c in coloring.items()}


def color_lookup(boxes: Boxes, colors: dict[int, int]) -> np.ndarray:
    """(N,) int64 palette index per box, aligned with `boxes.ids`."""
    missing = [int(i) for i in boxes.ids if int(i) not in colors]
    if missing:
        raise ValueError(f"`colors` has no entry for some box ids. Received: missing ids={missing[:10]}")
    return np.asarray([colors[int(i)] for i in boxes.ids], np.int64)


def color_lut(colors: dict[int, int], size: int | None = None) -> np.ndarray:
    """A label-id -> palette-index table for `render_colored_mask` (-1 = no color)."""
    size = max(colors, default=0) + 1 if size is None else size
    lut = np.full(size, -1, np.int64)
    for label, color in colors.items():
        if label >= size:
            raise ValueError(f"Label id {label} does not fit a lut of size={size}.")
        lut[label] = color
    return lut


def ellipse_owner_map(boxes: Boxes, shape: Sequence[int]) -> np.ndarray:
    """Which box's full-size oval covers each pixel: (*shape) int32, 1 + box index, 0 outside.

    Ovals have semi-axes max(extents / 2, 0.5); a pixel inside several takes the one with the
    smallest normalised distance q. The stage-2 input draws exactly these ovals, and the
    stage-2 decoder asks it which box a box-less piece of a generated mask grew from.
    """
    shape = _validate_shape(shape, boxes.ndim)
    best = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int32)
    semi = np.maximum(boxes.extents / 2.0, _MIN_SEMI_AXIS)
    for i, window, q in _ellipse_windows(boxes.centers, semi, shape, axes=boxes.axes):
        best_w = best[window]
        better = (q <= 1.0) & (q < best_w)
        np.copyto(best_w, q, where=better, casting="unsafe")
        np.copyto(owner[window], i + 1, where=better, casting="unsafe")
    return owner


def render_colored_ellipses(boxes: Boxes, color_index: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Render the stage-2 box domain: full-size ovals filled with palette colors.

    Args:
        boxes: N boxes.
        color_index: (N,) palette index per box (e.g. from `color_lookup`).
        shape: spatial canvas shape.

    Returns:
        (*shape, 3) float32 RGB: per box an oval with semi-axes max(extents / 2, 0.5); a pixel
        inside several ovals takes the one with the smallest normalised distance q
        (`ellipse_owner_map`); 0 outside.
    """
    shape = _validate_shape(shape, boxes.ndim)
    color_index = np.asarray(color_index, np.int64).reshape(-1)
    if color_index.shape != (len(boxes),):
        raise ValueError(
            f"`color_index` must have shape ({len(boxes)},). Received: color_index.shape={color_index.shape}"
        )
    if len(color_index) and (color_index.min() < 0 or color_index.max() >= len(PALETTE)):
        raise ValueError(
            f"`color_index` must be in [0, {len(PALETTE)}). Received: min={color_index.min()}, "
            f"max={color_index.max()}"
        )
    lut = np.concatenate([[0], color_index + 1]).astype(np.uint8)
    index = lut[ellipse_owner_map(boxes, shape)]
    return np.take(_palette_with_background(), index, axis=0)


def boundary_map(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Inner boundary of every instance, `width` pixels wide.

    A pixel of instance l is boundary when it lies within `width` face-steps of a pixel that
    is not l (another label or background). The canvas edge is not a boundary: a nucleus cut
    by a patch border has no boundary there, so cropping never invents boundaries.

    Args:
        labels: (*spatial) int mask.
        width: number of inward face-dilations.

    Returns:
        (*spatial) bool.
    """
    if width < 1:
        raise ValueError(f"`width` must be >= 1. Received: width={width}")
    labels = np.asarray(labels)
    ndim = labels.ndim
    foreground = labels != 0
    same = []
    for d in range(ndim):
        upper = tuple(slice(1, None) if k == d else slice(None) for k in range(ndim))
        lower = tuple(slice(None, -1) if k == d else slice(None) for k in range(ndim))
        same.append((upper, lower, labels[upper] == labels[lower]))
    core = foreground
    for _ in range(width):
        eroded = core.copy()
        for upper, lower, equal in same:
            eroded[lower] &= equal & core[upper]
            eroded[upper] &= equal & core[lower]
        core = eroded
    return foreground & ~core


def render_colored_mask(
    labels: np.ndarray, color_of_label: np.ndarray, boundary_width: int = 1
) -> np.ndarray:
    """Render the stage-2 mask domain: palette color per instance plus a boundary channel.

    Args:
        labels: (*spatial) int mask, 0 = background.
        color_of_label: lut indexed by label id -> palette index (e.g. `color_lut(colors)`);
            entries of absent labels are ignored.
        boundary_width: width of the inner boundary class.

    Returns:
        (*spatial, 4) float32: RGB of the instance's palette color (0 on background) and the
        boundary channel (1 on `boundary_map(labels, boundary_width)`).
    """
    labels = np.asarray(labels)
    lut = np.asarray(color_of_label, np.int64).reshape(-1)
    top = int(labels.max()) if labels.size else 0
    if top >= len(lut):
        raise ValueError(f"`color_of_label` has {len(lut)} entries but labels go up to {top}.")
    if np.any(lut >= len(PALETTE)) or np.any(lut < -1):
        raise ValueError(
            f"`color_of_label` entries must be in [-1, {len(PALETTE)}). Received: {lut.tolist()[:20]}"
        )
    shifted = lut + 1
    shifted[0] = 0
    index = shifted.astype(np.uint8)[labels]
    if np.any(index[labels != 0] == 0):
        bad = np.unique(labels[(index == 0) & (labels != 0)])
        raise ValueError(f"`color_of_label` has no color for labels {bad.tolist()[:10]}.")
    table = np.concatenate([_palette_with_background(), np.zeros((len(PALETTE) + 1, 1), np.float32)], 1)
    out = np.take(table, index, axis=0)
    out[..., 3] = boundary_map(labels, boundary_width)
    return out


def nearest_palette_index(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, 0 for background black or 1 + index of the nearest PALETTE color (RGB distance).

    argmin_p |x - p|^2 = argmin_p (|p|^2 - 2 x.p), accumulated color by color on contiguous
    channel planes (zero palette components cost nothing); ties go to the lower index.
    """
    rgb = np.asarray(rgb, np.float32)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"`rgb` must have shape (*spatial, 3). Received: shape={rgb.shape}")
    planes = [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
    table = _palette_with_background()
    best = np.zeros(rgb.shape[:-1], np.float32)  # black: |p|^2 - 2 x.p = 0
    index = np.zeros(rgb.shape[:-1], np.uint8)
    score = np.empty_like(best)
    for k in range(1, len(table)):
        score.fill(float((table[k] ** 2).sum()))
        for c in range(3):
            if table[k, c]:
                score -= (2.0 * float(table[k, c])) * planes[c]
        better = score < best
        np.copyto(best, score, where=better)
        np.copyto(index, k, where=better)
    return index


def _split_component(
    member: np.ndarray, boundary: np.ndarray, pieces: np.ndarray, width: int
) -> np.ndarray | None:
    """Territory groups of one same-color component, or None to keep it whole.

    Every pixel goes to its nearest big core piece (its territory). Two adjacent territories
    stay apart only when they touch across a *deep* boundary pixel: both pixels of the
    contact are farther than `width` face-steps from anything outside the component and at
    least one of them is boundary. A rendered boundary never reaches that deep (it is
    exactly the band within `width` of the outside), so a nucleus whose core is cut by its
    own outline at a thin neck is merged back; a boundary line drawn *through* a same-color
    blob (two touching nuclei, typical of generated masks) separates it.
    """
    ndim = member.ndim
    _, nearest = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
    territory = np.where(member, pieces[tuple(nearest)], 0)
    deep = ndimage.distance_transform_cdt(member, metric="taxicab") > width
    n = int(pieces.max())
    parent = list(range(n + 1))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    adjacent, separated = set(), set()
    for d in range(ndim):
        upper = tuple(slice(1, None) if k == d else slice(None) for k in range(ndim))
        lower = tuple(slice(None, -1) if k == d else slice(None) for k in range(ndim))
        a, b = territory[upper], territory[lower]
        differ = (a != b) & (a > 0) & (b > 0)
        if not differ.any():
            continue
        pair = np.stack([np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])], 1)
        adjacent.update(map(tuple, np.unique(pair, axis=0).tolist()))
        cut = (deep[upper] & deep[lower] & (boundary[upper] | boundary[lower]))[differ]
        if cut.any():
            separated.update(map(tuple, np.unique(pair[cut], axis=0).tolist()))
    for a, b in adjacent - separated:
        parent[find(a)] = find(b)
    groups = np.array([find(k) for k in range(n + 1)])
    if len(np.unique(groups[1:])) == 1:
        return None
    return np.where(member, groups[territory], 0)


def labels_from_colored_mask(
    mask: np.ndarray,
    use_boundary: bool = True,
    min_size: int = 1,
    boundary_width: int = 1,
    min_core: int | None = None,
) -> np.ndarray:
    """Decode a colored mask (rendered or generated) into an instance label mask.

    Foreground = pixels whose nearest color among black and PALETTE is not black. Each
    face-connected same-color component is one instance, unless `use_boundary` and its core
    (component minus boundary channel > 0.5) falls apart into several pieces of at least
    `min_core` pixels that are separated by boundary pixels deep inside the component (see
    `_split_component`); then every pixel goes to its nearest core piece. For a mask rendered
    from labels where touching nuclei have different colors, this returns exactly those
    instances (connected ones; a label made of several disconnected pieces comes back as
    several instances).

    Args:
        mask: (*spatial, 3) RGB or (*spatial, 4) RGB + boundary, stored range [0, 1].
        use_boundary: split same-color components along the boundary channel.
        min_size: instances with fewer pixels become background.
        boundary_width: the width the boundary class was drawn with.
        min_core: smallest core piece that can become its own instance (default 4 * ndim:
            8 pixels in 2D, 12 voxels in 3D); smaller specks join their neighbours.

    Returns:
        (*spatial) int32 labels 1..N (raster order of components; split parts follow).
    """
    mask = np.asarray(mask, np.float32)
    if mask.ndim < 2 or mask.shape[-1] not in (3, 4):
        raise ValueError(f"`mask` must have shape (*spatial, 3 or 4). Received: shape={mask.shape}")
    spatial_ndim = mask.ndim - 1
    if min_core is None:
        min_core = 4 * spatial_ndim
    classes = nearest_palette_index(mask[..., :3])
    components = measure.label(classes, background=0, connectivity=1).astype(np.int32)
    n_components = int(components.max())
    result = components
    if use_boundary and mask.shape[-1] == 4 and n_components:
        boundary = mask[..., 3] > 0.5
        core = np.where(boundary, 0, components)
        pieces = measure.label(core, background=0, connectivity=1)
        piece_component = np.zeros(int(pieces.max()) + 1, np.int64)
        piece_component[pieces.ravel()] = components.ravel()
        big = np.bincount(pieces.ravel()) >= min_core
        big[0] = False
        n_big = np.bincount(piece_component[big], minlength=n_components + 1)
        next_label = n_components + 1
        objects = ndimage.find_objects(components)
        for label in np.nonzero(n_big >= 2)[0].tolist():
            window = tuple(
                slice(max(s.start - 1, 0), min(s.stop + 1, size))
                for s, size in zip(objects[label - 1], components.shape)
            )
            member = components[window] == label
            local = pieces[window]
            local_big = np.where(member & big[local], local, 0)
            _, local_big = np.unique(local_big, return_inverse=True)
            local_big = local_big.reshape(member.shape)
            groups = _split_component(member, boundary[window], local_big, boundary_width)
            if groups is None:
                continue
            keys = np.unique(groups[groups > 0])
            sub = result[window]
            for key in keys[1:]:
                sub[groups == key] = next_label
                next_label += 1
    sizes = np.bincount(result.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(len(sizes), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[result]
