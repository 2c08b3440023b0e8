"""Charts drawn with Pillow (matplotlib is not a dependency): a y axis with round ticks,
error bars, legends, and line charts over categorical x positions.

The one home of chart drawing: the experiment report's bars and gain curves, the realism
curves of a training run, anything that plots numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at `size` (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, max_ticks: int = 8) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


class Canvas:
    """A white chart with a y axis: value -> pixel mapping, grid, ticks, title, legend."""

    def __init__(self, width: int, height: int, ticks: Sequence[float], title: str, ylabel: str):
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.font, self.small = font(13), font(11)
        self.left, self.right, self.top, self.bottom = 64, width - 16, 34, height - 70
        self.low, self.high = ticks[0], ticks[-1]
        self.draw.text((self.left, 8), title, fill=INK, font=self.font)
        for tick in ticks:
            y = self.y(tick)
            self.draw.line([(self.left, y), (self.right, y)], fill=GRID)
            self.draw.text((self.left - 6, y), f"{tick:g}", fill=INK, font=self.small, anchor="rm")
        self.draw.line([(self.left, self.top), (self.left, self.bottom)], fill=INK)
        self.draw.line([(self.left, self.bottom), (self.right, self.bottom)], fill=INK)
        label = Image.new("RGB", (self.bottom - self.top, 16), BACKGROUND)
        ImageDraw.Draw(label).text((label.width // 2, 8), ylabel, fill=INK, font=self.small, anchor="mm")
        self.image.paste(label.rotate(90, expand=True), (4, self.top))

    def y(self, value: float) -> float:
        frac = (value - self.low) / (self.high - self.low)
        return self.bottom - frac * (self.bottom - self.top)

    def error_bar(self, x: float, mean: float, std: float | None, color=INK) -> None:
        if std is None or not std > 0:
            return
        y0, y1 = self.y(max(mean - std, self.low)), self.y(min(mean + std, self.high))
        self.draw.line([(x, y0), (x, y1)], fill=color, width=2)
        for y in (y0, y1):
            self.draw.line([(x - 4, y), (x + 4, y)], fill=color, width=2)

    def x_label(self, x: float, text: str) -> None:
        self.draw.text((x, self.bottom + 6), text, fill=INK, font=self.font, anchor="ma")

    def legend(self, names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None = None) -> None:
        x, y = self.left, self.bottom + 30
        for i, name in enumerate(names):
            color = colors[i] if colors is not None else COLORS[i % len(COLORS)]
            self.draw.rectangle([x, y + 2, x + 12, y + 14], fill=color)
            self.draw.text((x + 18, y + 8), name, fill=INK, font=self.small, anchor="lm")
            x += 24 + int(self.draw.textlength(name, font=self.small)) + 16

    def array(self) -> np.ndarray:
        return np.asarray(self.image)


def tick_range(values: Sequence[tuple[float, float | None]], floor_at_zero: bool = False) -> list[float]:
    """Ticks covering every (mean, std) span plus 15 % padding (kept in [0, 1] for scores
    that live there, with `floor_at_zero`)."""
    lows = [m - (s or 0.0) for m, s in values]
    highs = [m + (s or 0.0) for m, s in values]
    low, high = min(lows), max(highs)
    pad = max((high - low) * 0.15, 0.005)
    low, high = low - pad, high + pad
    if floor_at_zero:
        low = max(low, 0.0) if min(lows) >= 0 else low
        high = min(high, 1.0) if max(highs) <= 1.0 else high
    return nice_ticks(low, high)


def line_chart(
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[tuple[float | None, float | None]]],
    title: str,
    ylabel: str,
    zero_line: bool = False,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 lines over categorical x positions; points (mean, std) with error bars.

    `colors` gives one color per series (default: `COLORS` in order).
    """
    points = [(m, s) for values in series.values() for m, s in values if m is not None]
    if not points:
        raise ValueError(f"No finite value to plot. Received: series={dict(series)}")
    ticks = tick_range(points + ([(0.0, None)] if zero_line else []))
    canvas = Canvas(max(420, 110 * len(x_labels) + 120), 320, ticks, title, ylabel)
    step = (canvas.right - canvas.left) / len(x_labels)
    xs = [canvas.left + (i + 0.5) * step for i in range(len(x_labels))]
    if zero_line:
        canvas.draw.line([(canvas.left, canvas.y(0.0)), (canvas.right, canvas.y(0.0))], fill=INK)
    colors = list(colors) if colors is not None else [COLORS[i % len(COLORS)] for i in range(len(series))]
    for color, values in zip(colors, series.values()):
        previous = None
        for x, (mean, std) in zip(xs, values):
            if mean is None:
                previous = None
                continue
            y = canvas.y(mean)
            if previous is not None:
                canvas.draw.line([previous, (x, y)], fill=color, width=2)
            canvas.error_bar(x, mean, std, color)
            canvas.draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
            previous = (x, y)
    for x, label in zip(xs, x_labels):
        canvas.x_label(x, label)
    canvas.legend(list(series), colors)
    return canvas.array()


def tile(charts: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """(H, W, 3) uint8: charts in rows of `columns`, padded white to the largest chart."""
    if not charts or columns < 1:
        raise ValueError(f"`tile` needs charts and columns >= 1. Received: {len(charts)} charts, columns={columns}")
    height = max(c.shape[0] for c in charts)
    width = max(c.shape[1] for c in charts)
    blank = np.full((height, width, 3), 255, np.uint8)
    cells = [np.pad(c, ((0, height - c.shape[0]), (0, width - c.shape[1]), (0, 0)), constant_values=255) for c in charts]
    cells += [blank] * (-len(cells) % columns)
    rows = [np.concatenate(cells[i : i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)
