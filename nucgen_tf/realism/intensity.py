"""Image statistics measured against the mask: brightness, texture, edges and noise, any ndim.

A stage-3 generator can paint nuclei at the right places yet fail in ways a segmenter
notices: too little contrast, flat (textureless) nuclei, blurred or too-sharp edges, or a
noise-free background. Every per-nucleus figure is divided by the nucleus' contrast, so
images on different gray-level scales stay comparable except in `contrast` and the
background level themselves.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from nucgen_tf.realism import regions

# name -> what one value is; per-nucleus unless it says otherwise.
IMAGE_STATISTICS: dict[str, str] = {
    "contrast": "mean gray level inside a nucleus - the field's background level",
    "texture": "std of the gray levels inside a nucleus / its contrast",
    "edge_sharpness": "mean gradient magnitude on the nucleus' rim (1 px in + 1 px out) / its contrast",
    "background_level": "per field: median of background pixels >= margin px from any nucleus",
    "background_noise": "per field: robust std of (image - 1-px Gaussian blur) in the background",
}

_MAD_TO_STD = 1.4826  # std of a Gaussian = 1.4826 x its median absolute deviation


def background_mask(labels: np.ndarray, margin: float = 3.0) -> np.ndarray:
    """Pixels at least `margin` px (Euclidean) from every nucleus: free of halos and blur."""
    if not np.any(labels):
        return np.ones(labels.shape, bool)
    return ndi.distance_transform_edt(labels == 0) >= margin


def _residual_gain(ndim: int, sigma: float, truncate: float) -> float:
    """Std of `x - blur(x)` for white noise of std 1: sqrt(sum((delta - kernel)^2))."""
    radius = int(truncate * sigma + 0.5)
    delta = np.zeros((2 * radius + 1,) * ndim)
    delta[(radius,) * ndim] = 1.0
    return float(np.sqrt(np.sum((delta - ndi.gaussian_filter(delta, sigma, truncate=truncate)) ** 2)))


def background_noise(image: np.ndarray, background: np.ndarray, sigma: float = 1.0) -> float:
    """Robust std of the background's high-frequency part, in gray levels (NaN without background).

    The residual `image - blur(image)` drops the smooth illumination; dividing by its gain
    for white noise gives the noise std. Unlike differences of neighbouring integer pixels,
    the residual is not quantized, so the median absolute deviation stays fine-grained. The
    blur reaches 2 sigma (2 px), less than the background margin, so no nucleus leaks in.
    """
    truncate = 2.0
    image = np.asarray(image, np.float64)
    residual = (image - ndi.gaussian_filter(image, sigma, truncate=truncate, mode="nearest"))[background]
    if residual.size < 2:
        return float("nan")
    mad = np.median(np.abs(residual - np.median(residual)))
    return float(_MAD_TO_STD * mad / _residual_gain(image.ndim, sigma, truncate))


def nucleus_intensities(image: np.ndarray, labels: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """Per nucleus contrast, texture and edge sharpness (NaN where contrast <= 0: undefined)."""
    image = np.asarray(image, np.float64)
    gradient = (
        np.sqrt(sum(g**2 for g in np.gradient(image))) if min(image.shape) > 1 else np.zeros_like(image)
    )
    face = ndi.generate_binary_structure(image.ndim, 1)
    contrast, texture, edges = [], [], []
    for label, window in regions.nucleus_windows(labels, pad=1):
        mask = labels[window] == label
        inside = image[window][mask]
        rim = ndi.binary_dilation(mask, face) & ~ndi.binary_erosion(mask, face, border_value=1)
        value = float(inside.mean()) - level
        valid = value > 0
        contrast.append(value)
        texture.append(float(inside.std()) / value if valid else np.nan)
        edges.append(float(gradient[window][rim].mean()) / value if valid else np.nan)
    return {
        "contrast": np.asarray(contrast, np.float64),
        "texture": np.asarray(texture, np.float64),
        "edge_sharpness": np.asarray(edges, np.float64),
    }


def image_statistics(image: np.ndarray, labels: np.ndarray, margin: float = 3.0) -> dict[str, np.ndarray]:
    """Every image statistic of one field (see `IMAGE_STATISTICS`), as 1-D float arrays.

    A field without background `margin` px from the nuclei falls back to all unlabelled
    pixels; a field without any has no background figures and no per-nucleus ones.
    """
    background = background_mask(labels, margin)
    if not background.any():
        background = labels == 0
    if not background.any():
        return {name: np.zeros(0) for name in IMAGE_STATISTICS}
    level = float(np.median(np.asarray(image)[background]))
    out = nucleus_intensities(image, labels, level)
    noise = background_noise(image, background)
    out["background_level"] = np.asarray([level])
    out["background_noise"] = np.asarray([noise] if np.isfinite(noise) else [], np.float64)
    return out
