"""StarDist (2D and 3D), the second segmenter family: star-convex polygons / polyhedra per nucleus.

The paper checks its synthetic data with two segmenter families (Table I: U-Net and Mask
R-CNN), because a gain that shows up with one architecture only may be an artifact of that
architecture. StarDist (Schmidt et al. 2018, Weigert et al. 2020) plays the second family
here: an object-level model (one star-convex shape per predicted centre, then NMS) like
Mask R-CNN, with 2D and 3D versions, a TensorFlow implementation and good results on
nuclei. Callers switch families by name through `segment.family.FAMILIES`; directly:

    >>> from nucgen_tf.segment import stardist as sdf
    >>> model_dir = sdf.train_stardist(["bbbc039/train"], "bbbc039/val", "runs/sd",    # doctest: +SKIP
    ...                                sdf.StardistTrainConfig(), extra_dirs=["runs/synthetic"])
    >>> labels = sdf.predict_instances(sdf.load_stardist(model_dir), image)             # doctest: +SKIP

Pieces: `config` (the config, the run folder's file names), `network` (StarDist imported
lazily: model, targets, csbdeep's per-image percentile normalization, 1-99.8 % by default,
not clipped), `data` (images and the seeded patch stream), `loop` (resumable training and
model selection), `thresholds` (tuning (prob, nms) on validation; kept only if the pooled
`select_on` score does not drop) and `predict` (loading, tiled prediction, label TIFFs).
Folders, image sets, scores and label writing are shared with the U-Net (`segment.data`).

StarDist is an optional dependency (`pip install stardist`, the "stardist" extra); the
config imports without it, the functions raise ImportError naming the fix.
"""

from nucgen_tf.segment.data import LabeledImages
from nucgen_tf.segment.stardist.config import (
    DEFAULT_THRESHOLDS,
    DEFAULT_TILE,
    META_FILE,
    SELECT_ON,
    StardistTrainConfig,
    model_name,
)
from nucgen_tf.segment.stardist.data import load_images, sample_batch
from nucgen_tf.segment.stardist.loop import train_stardist
from nucgen_tf.segment.stardist.network import (
    build_stardist,
    normalize_image,
    resolve_geometry,
    stardist_targets,
)
from nucgen_tf.segment.stardist.predict import (
    StardistSegmenter,
    load_stardist,
    predict_folder,
    predict_instances,
    validate,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_TILE",
    "META_FILE",
    "SELECT_ON",
    "LabeledImages",
    "StardistSegmenter",
    "StardistTrainConfig",
    "build_stardist",
    "load_images",
    "load_stardist",
    "model_name",
    "normalize_image",
    "predict_folder",
    "predict_instances",
    "resolve_geometry",
    "sample_batch",
    "stardist_targets",
    "train_stardist",
    "validate",
]
