"""Run a fully convolutional network on canvases of any size, in one pass or in blended tiles.

A U-Net generator accepts any spatial size that is a multiple of its total stride (the
manifest's per-axis `divisor`), so a canvas is padded at its far end with `pad_value` (-1,
the background of every network-range representation) and the output cropped back. A
canvas larger than `tile` on some axis is cut into overlapping tiles whose starts are
multiples of the divisor (so every tile sees the same stride grid as the whole canvas
would) and whose outputs are cross-faded linearly.

The cross-fade has a dead zone: in an overlap of `o` pixels, a tile's weight is 0 over the
`o / 4` pixels nearest its inner edge, rises linearly over the middle `o / 2` and is 1
beyond. Weights of neighbouring tiles sum to 1, and pixels near an inner tile edge (where
zero padding corrupts a convolution's output) never count. For a function whose receptive
radius is at most `o / 4` the tiled result therefore equals the one-pass result up to
float rounding. A generator with instance normalization has no finite receptive field
(each tile is normalized by its own statistics), so its tiles differ slightly; the
cross-fade hides the seams, and one pass (the default whenever the canvas fits `tile`)
avoids them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

Array = np.ndarray


def _per_axis(name: str, value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    values = (int(value),) * ndim if np.ndim(value) == 0 else tuple(int(v) for v in value)
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        raise ValueError(f"`{name}` needs 1 or {ndim} values. Received: {name}={value!r}")
    return values


def round_up(size: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `size`."""
    return -(-int(size) // int(multiple)) * int(multiple)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one canvas go.

    Attributes:
        shape: the requested canvas shape (*spatial).
        padded: the canvas padded up to divisor multiples.
        tile: tile shape, a divisor multiple per axis, at most `padded`.
        starts: per axis, the tile start offsets (multiples of the divisor).
        weights: per axis, (n_tiles_axis, tile_axis) float64 cross-fade weights.
    """

    shape: tuple[int, ...]
    padded: tuple[int, ...]
    tile: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    weights: tuple[np.ndarray, ...]

    @property
    def n_tiles(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    def windows(self) -> list[tuple[tuple[slice, ...], tuple[int, ...]]]:
        """(window into the padded canvas, per-axis tile index) of every tile, raster order."""
        out = []
        for index in itertools.product(*[range(len(s)) for s in self.starts]):
            window = tuple(
                slice(self.starts[a][k], self.starts[a][k] + self.tile[a]) for a, k in enumerate(index)
            )
            out.append((window, index))
        return out

    def weight(self, index: tuple[int, ...]) -> np.ndarray:
        """(*tile) float32 cross-fade weight of the tile with per-axis index `index`."""
        out = np.ones((), np.float64)
        for a, k in enumerate(index):
            out = np.multiply.outer(out, self.weights[a][k])
        return out.astype(np.float32)


def _axis_starts(padded: int, tile: int, overlap: int, divisor: int) -> list[int]:
    if tile >= padded:
        return [0]
    step = (tile - overlap) // divisor * divisor
    starts = [0]
    while starts[-1] + tile < padded:
        starts.append(min(starts[-1] + step, padded - tile))
    return starts


def _axis_weights(starts: list[int], tile: int) -> np.ndarray:
    position = np.arange(tile, dtype=np.float64) + 0.5
    weights = np.ones((len(starts), tile))
    for k in range(len(starts)):
        if k > 0:  # leading edge: overlap with the previous tile
            o = starts[k - 1] + tile - starts[k]
            weights[k] *= np.clip((position - o / 4.0) / (o / 2.0), 0.0, 1.0)
        if k + 1 < len(starts):  # trailing edge: overlap with the next tile
            o = starts[k] + tile - starts[k + 1]
            weights[k] *= np.clip((tile - position - o / 4.0) / (o / 2.0), 0.0, 1.0)
    return weights


def plan_tiles(
    shape: Sequence[int],
    divisor: int | Sequence[int],
    tile: int | Sequence[int] | None = None,
    overlap: int | Sequence[int] = 64,
) -> TilePlan:
    """Plan the padding and tiling of one canvas.

    Args:
        shape: canvas shape (*spatial).
        divisor: the network's size multiple, one int or one per axis.
        tile: largest tile per axis (one int or one per axis); None or 0 = one pass. Rounded
            down to a divisor multiple (at least one divisor).
        overlap: pixels shared by neighbouring tiles, one int or one per axis; must leave at
            least one divisor of progress per tile (overlap <= tile - divisor).

    Returns:
        The `TilePlan`.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 1 or min(shape) < 1:
        raise ValueError(f"`shape` must be positive ints. Received: shape={shape}")
    divisor = _per_axis("divisor", divisor, ndim)
    if min(divisor) < 1:
        raise ValueError(f"`divisor` must be >= 1. Received: divisor={divisor}")
    padded = tuple(round_up(s, d) for s, d in zip(shape, divisor))
    if tile is None or (np.ndim(tile) == 0 and int(tile) == 0):
        tiles = padded
    else:
        tiles = _per_axis("tile", tile, ndim)
        if min(tiles) < 0:
            raise ValueError(f"`tile` must be >= 0. Received: tile={tile}")
        tiles = tuple(p if t == 0 else min(p, max(d, t // d * d)) for t, p, d in zip(tiles, padded, divisor))
    overlaps = _per_axis("overlap", overlap, ndim)
    for axis, (t, p, o, d) in enumerate(zip(tiles, padded, overlaps, divisor)):
        if t < p and not 0 < o <= t - d:
            raise ValueError(
                f"Axis {axis} is tiled ({p} px in tiles of {t}), so `overlap` must be in (0, {t - d}] "
                f"(tile minus one divisor of {d}). Received: overlap={overlap}"
            )
    starts = tuple(tuple(_axis_starts(p, t, o, d)) for p, t, o, d in zip(padded, tiles, overlaps, divisor))
    weights = tuple(_axis_weights(list(s), t) for s, t in zip(starts, tiles))
    return TilePlan(shape, padded, tiles, starts, weights)


def run_tiled(
    fn: Callable[[Array], Array],
    x: Array,
    divisor: int | Sequence[int],
    tile: int | Sequence[int] | None = None,
    overlap: int | Sequence[int] = 64,
    batch_size: int = 1,
    pad_value: float = -1.0,
) -> Array:
    """Apply a fully convolutional `fn` to a batch of canvases of any size.

    Args:
        fn: maps float32 (b, *tile, C_in) to (b, *tile, C_out) (numpy or tensor).
        x: (B, *spatial, C_in) float32 canvases, all the same shape.
        divisor: per-axis size multiple the network needs.
        tile: largest tile per axis; None/0 = one pass over the padded canvas.
        overlap: tile overlap per axis (see `plan_tiles`).
        batch_size: tiles (or canvases) per `fn` call. Note that TF CPU kernels are not
            batch-invariant: an input's output can change in the last float bit with its
            batch size and position, so bit-exact reproducibility needs batch_size=1.
        pad_value: value of the padding (network-range background).

    Returns:
        (B, *spatial, C_out) float32.
    """
    x = np.asarray(x, np.float32)
    if x.ndim < 3:
        raise ValueError(f"`x` must have shape (B, *spatial, C). Received: shape={x.shape}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    spatial = x.shape[1:-1]
    plan = plan_tiles(spatial, divisor, tile, overlap)
    pad = [(0, 0)] + [(0, p - s) for p, s in zip(plan.padded, spatial)] + [(0, 0)]
    padded = np.pad(x, pad, constant_values=pad_value) if any(w[1] for w in pad) else x
    jobs = [(b, window, index) for b in range(len(x)) for window, index in plan.windows()]
    out = None
    total = np.zeros(plan.padded, np.float32) if plan.n_tiles > 1 else None
    for first in range(0, len(jobs), batch_size):
        group = jobs[first : first + batch_size]
        inputs = np.stack([padded[(b, *window)] for b, window, _ in group])
        outputs = np.asarray(fn(inputs), np.float32)
        if outputs.shape[:-1] != inputs.shape[:-1]:
            raise ValueError(
                f"`fn` must keep the batch and spatial shape. Received: input {inputs.shape} -> "
                f"output {outputs.shape}"
            )
        if out is None:
            out = np.zeros((len(x), *plan.padded, outputs.shape[-1]), np.float32)
        for (b, window, index), y in zip(group, outputs):
            if total is None:
                out[(b, *window)] = y
                continue
            w = plan.weight(index)
            out[(b, *window)] += y * w[..., None]
            if b == 0:
                total[window] += w
    if total is not None:
        out /= total[None, ..., None]
    crop = (slice(None),) + tuple(slice(0, s) for s in spatial)
    return np.ascontiguousarray(out[crop])
