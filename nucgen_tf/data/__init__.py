"""tf.data input pipelines: sources (read, normalize, color), augmentation, patch pipelines.

Import the submodules directly (`from nucgen_tf.data import pipelines`). This package
file imports nothing, so that numpy-only users of `nucgen_tf.data.normalize` (e.g.
synthesis restoring intensities) do not pay for importing TensorFlow.
"""
