"""Does a generated image show the nuclei of its mask? A cheap per-sample check.

Stage 3 is trained with paired supervision precisely so that generated nuclei sit exactly
on their masks (Sec. II-C); a broken or untrained generator breaks that silently. Two
numbers catch it without any segmentation model:

- `iou`: IoU between the mask foreground (labels > 0) and the image foreground (image >
  its Otsu threshold). Two empty sets count as IoU 1.
- `brighter_fraction`: fraction of instances whose mean intensity exceeds the mean
  intensity of the background (fluorescence nuclei are bright).

`score` = min(iou, brighter_fraction) (iou alone when there is no instance or no
background); a sample is flagged when the score is below the threshold.

An empty field (no instance) has no nuclei to set Otsu's threshold, which then splits mere
noise and would flag every empty sample. With `empty_threshold` (e.g. halfway between the
data set's background and nucleus levels) its image foreground is the pixels above that
level instead: a dark field scores 1, a painted stripe still scores 0.
"""

from __future__ import annotations

import numpy as np


def otsu_foreground(image: np.ndarray) -> np.ndarray:
    """image > Otsu threshold; all False for a constant image (no contrast, no foreground)."""
    from skimage.filters import threshold_otsu  # slow import; only needed here

    image = np.asarray(image)
    if image.size == 0 or image.min() == image.max():
        return np.zeros(image.shape, bool)
    return image > threshold_otsu(image)


def alignment_report(
    image: np.ndarray, labels: np.ndarray, min_alignment: float = 0.5, empty_threshold: float | None = None
) -> dict:
    """Agreement between a generated image and its label mask.

    Args:
        image: (*spatial) intensity image (any numeric dtype).
        labels: (*spatial) int labels, 0 = background.
        min_alignment: samples whose score is below this are flagged.
        empty_threshold: intensity above which a pixel of an empty field counts as
            foreground (None: Otsu, as for every other sample).

    Returns:
        JSON-ready dict: iou, brighter_fraction (None without instances or background),
        score, flagged, otsu_foreground_fraction, mask_foreground_fraction.
    """
    image = np.asarray(image, np.float64)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(
            f"`image` and `labels` must have one shape. Received: {image.shape} vs {labels.shape}"
        )
    mask_fg = labels > 0
    n = int(labels.max()) if labels.size else 0
    if n == 0 and empty_threshold is not None:
        image_fg = image > empty_threshold
    else:
        image_fg = otsu_foreground(image)
    union = int(np.count_nonzero(mask_fg | image_fg))
    iou = 1.0 if union == 0 else int(np.count_nonzero(mask_fg & image_fg)) / union
    brighter = None
    if n and not mask_fg.all():
        flat = labels.ravel()
        sums = np.bincount(flat, weights=image.ravel(), minlength=n + 1)
        counts = np.bincount(flat, minlength=n + 1)
        present = counts[1:] > 0
        means = sums[1:][present] / counts[1:][present]
        background = sums[0] / counts[0]
        brighter = float(np.mean(means > background)) if len(means) else None
    score = iou if brighter is None else min(iou, brighter)
    return {
        "iou": float(iou),
        "brighter_fraction": brighter,
        "score": float(score),
        "flagged": bool(score < min_alignment),
        "otsu_foreground_fraction": float(image_fg.mean()) if image.size else 0.0,
        "mask_foreground_fraction": float(mask_fg.mean()) if labels.size else 0.0,
    }
