"""nucgen-tf: coarse-to-fine generation of annotated 2D and 3D nucleus images (Zhao et al.)."""

import os

# TensorFlow leaves its oneDNN kernels off on some CPUs (AMD among them); there, strided and
# transposed Conv3D gradients take a slow path (measured: 9-19x slower 3D training steps,
# bench/train_step.py). Must be set before TensorFlow is imported; TF_ENABLE_ONEDNN_OPTS=0 opts out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
