"""Decode generated stage outputs: box maps -> boxes, colored masks -> instance labels.

`decode` holds the stage decoders; `k_terminal_cut` the iterative k-terminal cut of [10]
that splits same-color blobs among the stage-1 boxes. numpy/scipy/scikit-image/networkx
only: no TensorFlow import.
"""

from nucgen_tf.postprocess.decode import (
    decode_box_map,
    decode_colored_mask,
    split_box_map,
    to_stored_range,
)
from nucgen_tf.postprocess.k_terminal_cut import k_terminal_cut

__all__ = [
    "decode_box_map",
    "decode_colored_mask",
    "k_terminal_cut",
    "split_box_map",
    "to_stored_range",
]
