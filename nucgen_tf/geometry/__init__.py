"""The paper's representations for any ndim: seeds, Eq. 1 box maps, colored ellipses and masks.

See `boxes` (stage 1 box domain), `seeds` (stage 1 point domain), `colors` (stage 2
domains and their decoding) and `render` (every representation of a set of nuclei, drawn
in one place). All maps are float32 in the stored range [0, 1].
"""

from nucgen_tf.geometry.boxes import (
    Boxes,
    box_semi_axes,
    boxes_from_box_map,
    boxes_from_labels,
    default_box_threshold,
    label_box_map,
    oval_volume,
    render_box_map,
)
from nucgen_tf.geometry.colors import (
    N_PRIMARY,
    PALETTE,
    assign_colors,
    boundary_map,
    color_graph,
    color_lookup,
    color_lut,
    ellipse_owner_map,
    labels_from_colored_mask,
    nearest_palette_index,
    render_colored_ellipses,
    render_colored_mask,
)
from nucgen_tf.geometry.render import (
    CHANNELS,
    REPRESENTATIONS,
    check_outputs,
    color_labels,
    render_representations,
    render_stage2_pair,
)
from nucgen_tf.geometry.seeds import (
    SEED_KINDS,
    arrange_seeds,
    clustered_seeds,
    hard_core_seeds,
    interaction_seeds,
    poisson_nn_distance,
    random_seeds,
    render_seed_map,
)

__all__ = [
    "CHANNELS",
    "REPRESENTATIONS",
    "N_PRIMARY",
    "PALETTE",
    "SEED_KINDS",
    "Boxes",
    "arrange_seeds",
    "assign_colors",
    "boundary_map",
    "box_semi_axes",
    "boxes_from_box_map",
    "boxes_from_labels",
    "check_outputs",
    "clustered_seeds",
    "color_graph",
    "color_labels",
    "color_lookup",
    "color_lut",
    "default_box_threshold",
    "ellipse_owner_map",
    "hard_core_seeds",
    "interaction_seeds",
    "label_box_map",
    "labels_from_colored_mask",
    "nearest_palette_index",
    "oval_volume",
    "poisson_nn_distance",
    "random_seeds",
    "render_box_map",
    "render_colored_ellipses",
    "render_colored_mask",
    "render_representations",
    "render_seed_map",
    "render_stage2_pair",
]
