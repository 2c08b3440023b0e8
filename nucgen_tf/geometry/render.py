"""One renderer of the paper's representations, for training patches, previews and synthesis.

Every place that draws the networks' inputs and targets (the training pipeline, `nucgen
preview`, the stage-2 training pair and the synthesis chain) calls `render_representations`,
so that a change to how a representation is drawn reaches all of them at once:

- "seed_map" (C=1): a dot at every box centre (stage-1 input of a labelled sample);
- "box_map" (C=1): the Eq. 1 ovals (stage-1 target);
- "ellipses" (C=3): full-size ovals in palette colors (stage-2 input);
- "mask" (C=4): palette colors per instance plus the boundary class (stage-2 target and
  stage-3 input).

Colors come from one palette lookup table (`colors.color_lut` format: palette index per id,
-1 = no color) that both box ids and label ids index, so the same nucleus has the same color
in its oval and in its mask. `color_labels` makes that table for a label image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nucgen_tf.config import RenderConfig
from nucgen_tf.geometry.boxes import Boxes, boxes_from_labels, render_box_map
from nucgen_tf.geometry.colors import (
    assign_colors,
    color_graph,
    color_lut,
    render_colored_ellipses,
    render_colored_mask,
)
from nucgen_tf.geometry.seeds import render_seed_map

# Channels of each representation, in `render_representations`' default order.
CHANNELS = {"seed_map": 1, "box_map": 1, "ellipses": 3, "mask": 4}
REPRESENTATIONS = tuple(CHANNELS)


def check_outputs(outputs: Sequence[str] | None) -> tuple[str, ...]:
    """`outputs` as a tuple of distinct representation names (None = all of them)."""
    outputs = REPRESENTATIONS if outputs is None else tuple(outputs)
    unknown = set(outputs) - set(CHANNELS)
    if unknown or len(set(outputs)) != len(outputs):
        raise ValueError(
            f"`outputs` must be distinct names from {REPRESENTATIONS}. Received: outputs={outputs}"
        )
    return outputs


def color_labels(
    labels: np.ndarray, margin: float, rng: np.random.Generator | None = None, oriented: bool = False
) -> np.ndarray:
    """Palette index per label id, from one graph coloring of the whole label image.

    Args:
        labels: (*spatial) int labels 0..N.
        margin: nuclei closer than this (pixels), by mask or by full-size ellipse, get
            different colors.
        rng: optional; maps the color classes to a random choice of palette entries
            (`assign_colors`), so that the networks do not see one fixed order.
        oriented: the full-size ellipses are those of oriented boxes (`RenderConfig.oriented`).

    Returns:
        (N + 1,) int32 lookup table (`color_lut` format); entries of absent labels, including
        0 (background), are -1.
    """
    labels = np.asarray(labels)
    size = int(labels.max(initial=0)) + 1
    boxes = boxes_from_labels(labels, oriented=oriented)
    if len(boxes) == 0:
        return np.full(size, -1, np.int32)
    colors = assign_colors(color_graph(boxes, labels, margin=margin), rng=rng)
    return color_lut(colors, size).astype(np.int32)


def render_representations(
    outputs: Sequence[str] | None,
    config: RenderConfig,
    *,
    labels: np.ndarray | None = None,
    boxes: Boxes | None = None,
    shape: Sequence[int] | None = None,
    lut: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Render representations of a set of nuclei, given by their labels or by their boxes.

    Args:
        outputs: which of `REPRESENTATIONS` to render, in order (None = all).
        config: bv, seed radius and boundary width.
        labels: (*spatial) int instance mask; needed for "mask". Without `boxes`, the boxes
            are those of the labels (`boxes_from_labels`, oriented when `config.oriented`).
        boxes: the nuclei's boxes (synthesis: decoded from a box map; or the labels' boxes,
            already computed).
        shape: canvas shape; default `labels.shape`.
        lut: palette index per id (`color_lut` format), indexed by box ids and label ids;
            needed for "ellipses" and "mask".

    Returns:
        Dict name -> (*shape, C) float32 in the stored range [0, 1], C = `CHANNELS[name]`.
    """
    outputs = check_outputs(outputs)
    if labels is not None:
        labels = np.asarray(labels)
        shape = labels.shape if shape is None else shape
    if shape is None:
        raise ValueError("`render_representations` needs `labels` or `shape`.")
    shape = tuple(int(s) for s in shape)
    if labels is None and "mask" in outputs:
        raise ValueError("The colored mask is rendered from `labels`; none were given.")
    if lut is None and {"ellipses", "mask"} & set(outputs):
        raise ValueError(f"Colored representations need `lut`. Received: outputs={outputs}")
    needs_boxes = {"seed_map", "box_map", "ellipses"} & set(outputs)
    if boxes is None and needs_boxes:
        if labels is None:
            raise ValueError(f"`render_representations` needs `labels` or `boxes` for {sorted(needs_boxes)}.")
        boxes = boxes_from_labels(labels, oriented=config.oriented)
    out = {}
    for name in outputs:
        if name == "seed_map":
            rendered = render_seed_map(boxes.centers, shape, config.seed_radius)
        elif name == "box_map":
            rendered = render_box_map(boxes, shape, config.bv)
        elif name == "ellipses":
            colors = np.asarray(lut)[np.asarray(boxes.ids, np.int64)]
            rendered = render_colored_ellipses(boxes, colors, shape)
        else:
            rendered = render_colored_mask(labels, lut, config.boundary_width)
        out[name] = np.asarray(rendered, np.float32).reshape(shape + (CHANNELS[name],))
    return out


def render_stage2_pair(
    labels: np.ndarray,
    margin: float = 3.0,
    boundary_width: int = 1,
    rng: np.random.Generator | None = None,
    oriented: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One coloring, two renders: the (ellipses, colored mask) training pair of a label mask.

    Args:
        labels: (*spatial) int mask.
        margin: color margin in pixels (RenderConfig.color_margin).
        boundary_width: RenderConfig.boundary_width.
        rng: optional palette shuffling (see `assign_colors`).
        oriented: ellipses of oriented boxes (`RenderConfig.oriented`).

    Returns:
        ((*spatial, 3) colored ellipses, (*spatial, 4) colored mask + boundary), float32.
    """
    labels = np.asarray(labels)
    lut = color_labels(labels, margin, rng, oriented)
    config = RenderConfig(color_margin=margin, boundary_width=boundary_width, oriented=oriented)
    maps = render_representations(("ellipses", "mask"), config, labels=labels, lut=lut)
    return maps["ellipses"], maps["mask"]
