"""The realism PNG: overlaid real/synthetic histograms per statistic, then crops of both sets.

The table says how far apart the distributions are; the histograms say in which direction
(too big, too round, too smooth) and the crops show what that looks like. Drawn with Pillow
(matplotlib is not a dependency), with `nucgen_tf.charts`' font; `nucgen_tf.experiments` is not
imported: it loads TensorFlow, which this package must not need.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from nucgen_tf import viz
from nucgen_tf.charts import font
from nucgen_tf.realism.distances import BINARY, RealismReport, StatisticComparison
from nucgen_tf.realism.measurements import Measurements

REAL_COLOR, SYNTHETIC_COLOR = (31, 119, 180), (255, 127, 14)  # tab10 blue / orange
_REAL_FILL = (174, 199, 232)
_INK, _WHITE = (40, 40, 40), (255, 255, 255)
_CHART = (330, 220)  # width, height of one histogram
_MARGIN = {"left": 12, "right": 12, "top": 30, "bottom": 52}
_COLUMNS = 4
_LABEL_WIDTH = 90


def bin_edges(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Shared bins: unit bins for small integer statistics, else up to 30 bins over the
    0.5-99.5 % range of both sets (outliers go to the end bins: a long tail cannot squash
    the plot)."""
    both = np.concatenate([real, synthetic])
    low, high = np.percentile(both, [0.5, 99.5])
    if np.all(both == np.round(both)) and high - low <= 30:
        return np.arange(np.floor(low), np.ceil(high) + 1.5) - 0.5
    if high <= low:
        low, high = low - 0.5, high + 0.5
    n_bins = int(np.clip(np.sqrt(min(real.size, synthetic.size)), 6, 30))
    return np.linspace(low, high, n_bins + 1)


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of the values per bin, the end bins holding what lies beyond them."""
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), edges)
    return counts / max(values.size, 1)


def _title(name: str, c: StatisticComparison) -> str:
    floor = "" if c.floor is None else f", floor {c.floor:.2f}"
    ratio = "" if c.ratio is None else f" (x{c.ratio:.1f})"
    return f"{name}: d {c.distance:.2f}{floor}{ratio}"


def histogram_chart(name: str, real: np.ndarray, synthetic: np.ndarray, c: StatisticComparison) -> np.ndarray:
    """(H, W, 3) uint8: real as filled bars, synthetic as an outline, a line at each median."""
    edges = bin_edges(real, synthetic)
    ra, sa = shares(real, edges), shares(synthetic, edges)
    top_share = max(ra.max(), sa.max(), 1e-9)
    image = Image.new("RGB", _CHART, _WHITE)
    draw = ImageDraw.Draw(image)
    left, right = _MARGIN["left"], _CHART[0] - _MARGIN["right"]
    top, bottom = _MARGIN["top"], _CHART[1] - _MARGIN["bottom"]
    x = lambda v: left + (v - edges[0]) / (edges[-1] - edges[0]) * (right - left)
    y = lambda share: bottom - share / top_share * (bottom - top)
    title_font, small = font(13), font(11)
    draw.text((left, 8), _title(name, c), fill=_INK, font=title_font)
    for i, share in enumerate(ra):
        draw.rectangle(
            [x(edges[i]) + 1, y(share), max(x(edges[i]) + 1, x(edges[i + 1]) - 1), bottom], fill=_REAL_FILL
        )
    step = [(x(edges[0]), bottom)]
    for i, share in enumerate(sa):
        step += [(x(edges[i]), y(share)), (x(edges[i + 1]), y(share))]
    draw.line([*step, (x(edges[-1]), bottom)], fill=SYNTHETIC_COLOR, width=2)
    binary = name in BINARY
    if not binary:  # a median of 0/1 values is 0 or 1: the legend gives the shares instead
        for median, color in ((c.real_median, REAL_COLOR), (c.synthetic_median, SYNTHETIC_COLOR)):
            xm = x(float(np.clip(median, edges[0], edges[-1])))
            draw.line([(xm, top), (xm, bottom)], fill=color, width=2)
    draw.line([(left, bottom), (right, bottom)], fill=_INK)
    for value, anchor in ((edges[0], "la"), ((edges[0] + edges[-1]) / 2, "ma"), (edges[-1], "ra")):
        draw.text((x(value), bottom + 3), f"{value:.3g}", fill=_INK, font=small, anchor=anchor)
    what, real_value, synthetic_value = (
        ("share of 1s", c.real_mean, c.synthetic_mean)
        if binary
        else ("median", c.real_median, c.synthetic_median)
    )
    position = left
    for text, color in (
        (f"real {what} {real_value:.3g}", REAL_COLOR),
        (f"synthetic {synthetic_value:.3g}", SYNTHETIC_COLOR),
    ):
        draw.rectangle([position, bottom + 22, position + 10, bottom + 32], fill=color)
        draw.text((position + 14, bottom + 27), text, fill=_INK, font=small, anchor="lm")
        position += 14 + draw.textlength(text, font=small) + 16
    return np.asarray(image)


def histogram_grid(real: Measurements, synthetic: Measurements, report: RealismReport) -> np.ndarray:
    """All compared statistics' charts, `_COLUMNS` per row, in the report's order."""
    charts = [histogram_chart(n, real[n], synthetic[n], c) for n, c in report.statistics.items()]
    charts += [np.full_like(charts[0], 255)] * (-len(charts) % _COLUMNS)
    rows = [np.concatenate(charts[i : i + _COLUMNS], axis=1) for i in range(0, len(charts), _COLUMNS)]
    return np.concatenate(rows, axis=0)


def _crop(image: np.ndarray, labels: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """A window of at most `size` per axis around the median nucleus pixel (where the nuclei
    are, not an empty corner), the same in image and labels."""
    center = np.median(np.argwhere(labels > 0), axis=0) if labels.any() else np.asarray(labels.shape) / 2
    start = [int(np.clip(c - s // 2, 0, max(0, n - s))) for c, s, n in zip(center, size, labels.shape)]
    window = tuple(slice(b, b + s) for b, s in zip(start, size))
    return image[window], labels[window]


def crop_row(
    name: str, pairs: Sequence[tuple[np.ndarray | None, np.ndarray]], size: Sequence[int]
) -> np.ndarray:
    """One labelled row of crops (plain | contours per pair); a masks-only pair shows its mask.

    Every crop is padded to `size`, so the two rows show nuclei at the same scale.
    """
    ndim = pairs[0][1].ndim
    panels, titles = [], []
    for image, labels in pairs:
        shown = (labels > 0).astype(np.float32) if image is None else viz.display_range(image)
        shown, crop = _crop(shown, labels, size)
        pad = [(0, s - n) for s, n in zip(size, crop.shape)]
        shown, crop = np.pad(shown, pad, constant_values=0.25), np.pad(crop, pad)
        panels += [viz.views(shown, ndim), viz.overlay_contours(shown, crop)]
        titles += [f"{len(np.unique(crop)) - 1} nuclei", "contours"]
    grid = viz.panel_grid(panels, ndim, titles)
    strip = Image.new("RGB", (_LABEL_WIDTH, grid.shape[0]), (40, 40, 40))
    ImageDraw.Draw(strip).text((6, grid.shape[0] // 2), name, fill=_WHITE, font=font(14), anchor="lm")
    return np.concatenate([np.asarray(strip), grid], axis=1)


def _pad_width(grid: np.ndarray, width: int) -> np.ndarray:
    return np.pad(grid, ((0, 0), (0, width - grid.shape[1]), (0, 0)), constant_values=255)


def realism_figure(
    real: Measurements,
    synthetic: Measurements,
    report: RealismReport,
    real_pairs: Sequence[tuple[np.ndarray | None, np.ndarray]] = (),
    synthetic_pairs: Sequence[tuple[np.ndarray | None, np.ndarray]] = (),
    crop_size: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: a header, the histogram grid, then a row of real and of synthetic crops.

    Args:
        real, synthetic, report: as `compare` took and returned them.
        real_pairs, synthetic_pairs: a few `(image or None, labels)` fields to show.
        crop_size: crop per axis (default 192 x 192; 3D 16 x 128 x 128).
    """
    if not report.statistics:
        raise ValueError("The report compares no statistic; nothing to draw.")
    size = tuple(crop_size or ((192, 192) if real.ndim == 2 else (16, 128, 128)))
    parts = [histogram_grid(real, synthetic, report)]
    rows = {"real": real_pairs, "synthetic": synthetic_pairs}
    parts += [crop_row(name, pairs, size) for name, pairs in rows.items() if pairs]
    width = max(p.shape[1] for p in parts)
    header = Image.new("RGB", (width, 28), _WHITE)
    text = (f"real: {report.n_real_fields} fields, synthetic: {report.n_synthetic_fields}.   "
            "d = Wasserstein distance / real IQR;  floor = d between two real halves;  x = d / floor "
            "(about 1: as close as real data gets)")  # fmt: skip
    ImageDraw.Draw(header).text((_MARGIN["left"], 6), text, fill=_INK, font=font(14))
    return viz.stack_rows([np.asarray(header), *(_pad_width(p, width) for p in parts)])
