"""Real BBBC039 cases the realism report must rank as a person would (shared by the tests)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from nucgen_tf import io
from nucgen_tf.realism import regions
from tests.conftest import _require

# Crops keep the module fast; 256 x 512 still holds ~40 nuclei each.
CROP = (slice(0, 256), slice(0, 512))


def _crops(folder, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tuple(a[CROP] for a in io.read_pair(p)) for p in io.list_pairs(folder)[:n]]


def shatter(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each nucleus cut into 3-6 Voronoi pieces around random interior points (the old synthesis)."""
    out, next_label = np.zeros_like(labels), 1
    for label, window in regions.nucleus_windows(labels, pad=0):
        points = np.argwhere(labels[window] == label)
        k = min(int(rng.integers(3, 7)), len(points))
        seeds = points[rng.choice(len(points), size=k, replace=False)]
        piece = ((points[:, None, :] - seeds[None]) ** 2).sum(-1).argmin(1)
        out[window][tuple(points.T)] = next_label + piece
        next_label += k
    return out


def smooth_background(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image with every unlabelled pixel replaced by its blurred value: noise-free background."""
    return np.where(labels == 0, ndi.gaussian_filter(image.astype(np.float64), 3), image)


@pytest.fixture(scope="session")
def bbbc039_test(data_root):
    return _require(data_root / "bbbc039" / "test")


@pytest.fixture(scope="session")
def bbbc039_val(data_root):
    return _require(data_root / "bbbc039" / "val")


@pytest.fixture(scope="session")
def real_fields(bbbc039_test):
    """12 crops of BBBC039 test images: the real set."""
    return _crops(bbbc039_test, 12)


@pytest.fixture(scope="session")
def other_fields(bbbc039_val):
    """10 crops of BBBC039 val images: other real data, and the source of the degraded copies."""
    return _crops(bbbc039_val, 10)


@pytest.fixture(scope="session")
def cases(other_fields) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """name -> fields: real ("other") and degraded copies of the same val crops."""
    rng = np.random.default_rng(0)
    return {
        "other": other_fields,
        "shattered": [(image, shatter(labels, rng)) for image, labels in other_fields],
        "blurred": [
            (ndi.gaussian_filter(image.astype(np.float64), 1.5), labels) for image, labels in other_fields
        ],
        "noise_free": [(smooth_background(image, labels), labels) for image, labels in other_fields],
    }
