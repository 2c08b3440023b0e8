"""A 3-class U-Net nucleus segmenter: does synthetic data help? (paper Sec. III, Tables I-III).

    >>> from nucgen_tf import segment
    >>> model_dir = segment.train_segmenter(["bbbc039/train"], "bbbc039/val", "runs/seg",   # doctest: +SKIP
    ...                                     extra_dirs=["runs/synthetic"])
    >>> labels = segment.predict_instances(model_dir, image)                                 # doctest: +SKIP

Pieces: `targets` (labels -> background / interior / boundary), the network
(`nucgen_tf.models.segmenters`), `training` (tf.data patches of real + extra folders, Keras
fit, checkpoints, model selection by `nucgen_tf.eval` scores), `instances` (probabilities ->
labels by seeded watershed) and `predict` (tiled prediction, label TIFFs); the command
`nucgen segment train|predict` is `nucgen_tf.commands.segment`. StarDist, the second family, is
`segment.stardist`; both share `data` (folders, labelled image sets, pooled scores, label TIFFs)
and are driven through one `family.SegmenterFamily` protocol (`family.FAMILIES[config.family]`).
"""

from nucgen_tf.models.segmenters import CLASSES, SegmenterConfig, build_unet_segmenter
from nucgen_tf.segment.config import InstanceConfig, SegmentTrainConfig
from nucgen_tf.segment.data import Folders
from nucgen_tf.segment.family import FAMILIES, SegmenterFamily, family_of, family_of_folder
from nucgen_tf.segment.instances import instances_from_probabilities
from nucgen_tf.segment.predict import (
    Segmenter,
    load_segmenter,
    predict_folder,
    predict_instances,
    predict_probabilities,
)
from nucgen_tf.segment.targets import three_class_target
from nucgen_tf.segment.training import train_segmenter

__all__ = [
    "CLASSES",
    "FAMILIES",
    "Folders",
    "InstanceConfig",
    "SegmentTrainConfig",
    "Segmenter",
    "SegmenterConfig",
    "SegmenterFamily",
    "build_unet_segmenter",
    "family_of",
    "family_of_folder",
    "instances_from_probabilities",
    "load_segmenter",
    "predict_folder",
    "predict_instances",
    "predict_probabilities",
    "three_class_target",
    "train_segmenter",
]
