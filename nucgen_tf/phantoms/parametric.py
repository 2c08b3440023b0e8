"""Parametric ellipsoid nuclei and simulated fluorescence images (the original phantoms).

These are the "parametric model" nuclei the paper compares against ([3]-[5]): the built-in
example for `nucgen preview` and baseline masks. One code path for 2D and 3D; with
`spacing`, sizes are physical so that an anisotropic stack still holds round nuclei. The
BBBC024-like stand-in (deformed, clustered nuclei at two SNRs) builds on these in
`nucgen_tf.phantoms.nuclei` and `nucgen_tf.phantoms.imaging`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nucgen_tf.config import SeedConfig
from nucgen_tf.geometry.colors import boundary_map
from nucgen_tf.geometry.seeds import arrange_seeds

EXAMPLE_SHAPE_2D = (256, 256)
EXAMPLE_SHAPE_3D = (32, 96, 96)
EXAMPLE_SPACING_3D = (2.0, 1.0, 1.0)
# Mean seeds per 10,000 pixels (physical voxels in 3D) giving ~20-40 nuclei on the example canvases.
_EXAMPLE_DENSITY = {2: 3.0, 3: 0.5}
_EXAMPLE_DRAWS = 10


def _spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    out = np.asarray(spacing, np.float64).reshape(-1)
    if out.shape != (ndim,) or np.any(out <= 0):
        raise ValueError(f"`spacing` must be {ndim} positive numbers. Received: spacing={spacing}")
    return out


def random_rotations(n: int, ndim: int, rng: np.random.Generator) -> np.ndarray:
    """(n, ndim, ndim) Haar-random orthogonal matrices: QR of a Gaussian matrix with sign fix."""
    gaussian = rng.normal(size=(n, ndim, ndim))
    q, r = np.linalg.qr(gaussian)
    signs = np.sign(np.diagonal(r, axis1=1, axis2=2))
    signs[signs == 0] = 1.0
    return q * signs[:, None, :]


def _keep_largest_piece(labels: np.ndarray) -> None:
    """In place: every label keeps only its largest face-connected piece (rest -> 0)."""
    structure = ndimage.generate_binary_structure(labels.ndim, 1)
    for index, window in enumerate(ndimage.find_objects(labels)):
        if window is None:
            continue
        sub = labels[window]
        member = sub == index + 1
        pieces, n = ndimage.label(member, structure=structure)
        if n > 1:
            largest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
            sub[member & (pieces != largest)] = 0


def ellipsoid_labels(
    seeds: np.ndarray,
    shape: Sequence[int],
    rng: np.random.Generator,
    radius_range: tuple[float, float] = (6.0, 12.0),
    elongation: tuple[float, float] = (1.0, 1.6),
    spacing: Sequence[float] | None = None,
    min_size: int | None = None,
) -> np.ndarray:
    """Randomly oriented ellipsoids around seeds, clumps split by normalised distance.

    Each seed gets semi-axes (r * e, r, ..., r) (physical units) with r ~ U(radius_range),
    e ~ U(elongation), rotated by a random orthogonal matrix. A pixel inside several
    ellipsoids goes to the one with the smallest normalised distance q, so overlapping
    nuclei meet along straight-ish borders like squeezed real clumps. Each ellipsoid is
    rendered only in its own window. Pieces cut off from their nucleus by a neighbour are
    dropped, then instances smaller than `min_size` pixels.

    Args:
        seeds: (N, ndim) centres in pixel units.
        shape: canvas shape.
        rng: numpy Generator (all shape parameters are drawn up front, so results depend only
            on the seeds and the generator state).
        radius_range: (min, max) base semi-axis, physical units.
        elongation: (min, max) factor applied to the first (pre-rotation) semi-axis.
        spacing: physical pixel size per axis.
        min_size: smallest kept instance in pixels; default 20% of the pixel volume of the
            smallest possible ellipsoid.

    Returns:
        (*shape) int32 labels 1..N (N <= number of seeds), 0 = background.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 1 or min(shape) < 1:
        raise ValueError(f"`shape` must be positive ints. Received: shape={shape}")
    if not 0 < radius_range[0] <= radius_range[1]:
        raise ValueError(f"`radius_range` must satisfy 0 < min <= max. Received: radius_range={radius_range}")
    if not 0 < elongation[0] <= elongation[1]:
        raise ValueError(f"`elongation` must satisfy 0 < min <= max. Received: elongation={elongation}")
    seeds = np.asarray(seeds, np.float64).reshape(-1, ndim) if np.size(seeds) else np.zeros((0, ndim))
    spacing_arr = _spacing(spacing, ndim)
    if min_size is None:
        unit_ball = math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1)
        smallest = unit_ball * radius_range[0] ** ndim * elongation[0] / float(np.prod(spacing_arr))
        min_size = max(1, int(0.2 * smallest))
    n = len(seeds)
    rotations = random_rotations(n, ndim, rng)
    radii = rng.uniform(*radius_range, size=n)
    stretch = rng.uniform(*elongation, size=n)
    semi = np.repeat(radii[:, None], ndim, axis=1)
    semi[:, 0] *= stretch
    # z = diag(1/semi) R^T (spacing * (x - seed)); q = |z|^2
    transforms = np.transpose(rotations, (0, 2, 1)) / semi[:, :, None] * spacing_arr[None, None, :]
    half = np.sqrt(((rotations * semi[:, None, :]) ** 2).sum(-1)) / spacing_arr
    lo = np.maximum(np.ceil(seeds - half), 0).astype(np.int64)
    hi = np.minimum(np.floor(seeds + half), np.asarray(shape) - 1).astype(np.int64)

    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.int32)
    views = [(1,) * d + (-1,) + (1,) * (ndim - d - 1) for d in range(ndim)]
    for i in range(n):
        if np.any(hi[i] < lo[i]):
            continue
        axes = [(np.arange(lo[i, d], hi[i, d] + 1) - seeds[i, d]).reshape(views[d]) for d in range(ndim)]
        q = 0.0
        for k in range(ndim):
            z = 0.0
            for d in range(ndim):
                z = z + transforms[i, k, d] * axes[d]
            q = q + z * z
        window = tuple(slice(a, b + 1) for a, b in zip(lo[i], hi[i]))
        best_w = best[window]
        better = (q <= 1.0) & (q < best_w)
        best_w[better] = q[better]
        labels[window][better] = i + 1
    _keep_largest_piece(labels)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def _nucleus_signal(
    labels: np.ndarray,
    rng: np.random.Generator,
    spacing_arr: np.ndarray,
    signal: tuple[float, float],
    texture: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Unblurred nucleus signal above background, and each voxel's depth inside its nucleus.

    Per-nucleus brightness ~ U(signal), multiplicative texture (Gaussian-filtered noise at a
    2-unit physical scale, std `texture`), and a radial profile (rim or centre up to +-20%
    brighter). The random draws (brightness, profile, texture noise, in this order) are the
    same as `fluorescence_image` has always made, so its outputs for a seed are unchanged.

    Returns:
        (signal (*spatial) float64, 0 on background; depth (*spatial) float64, physical
        distance to the nucleus outline, 0 on background and on the outline).
    """
    n = int(labels.max(initial=0))
    foreground = labels > 0
    brightness = rng.uniform(*signal, size=n + 1)
    brightness[0] = 0.0
    profile_strength = rng.uniform(-0.2, 0.2, size=n + 1)
    noise = ndimage.gaussian_filter(rng.normal(size=labels.shape), sigma=2.0 / spacing_arr)
    noise /= noise.std() + 1e-12
    shading = np.clip(1.0 + texture * noise, 0.2, None)

    depth = ndimage.distance_transform_edt(foreground & ~boundary_map(labels), sampling=spacing_arr)
    if n:
        deepest = np.zeros(n + 1)
        deepest[1:] = ndimage.maximum(depth, labels, index=np.arange(1, n + 1))
        relative = depth / np.maximum(deepest[labels], 1e-6)  # 0 on the outline, 1 at the centre
    else:
        relative = np.zeros(labels.shape)
    profile = 1.0 + profile_strength[labels] * (1.0 - 2.0 * relative)
    return brightness[labels] * shading * profile, depth


def _blur_sigma_pixels(blur_sigma: float | Sequence[float], spacing_arr: np.ndarray) -> np.ndarray:
    ndim = len(spacing_arr)
    blur = np.asarray(blur_sigma, np.float64).reshape(-1)
    if blur.size not in (1, ndim) or np.any(blur < 0):
        raise ValueError(
            f"`blur_sigma` must be >= 0, a scalar or {ndim} values. Received: blur_sigma={blur_sigma}"
        )
    return np.broadcast_to(blur, (ndim,)) / spacing_arr


def form_image(
    signal: np.ndarray,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    background: float = 100.0,
    blur_sigma: float | Sequence[float] = 1.0,
    gain: float = 1.0,
    read_noise: float = 8.0,
    max_value: int = 4095,
) -> np.ndarray:
    """Image formation: PSF blur, background, shot and read noise, quantization.

    counts = round(Poisson(gain * (background + G * signal)) / gain + N(0, read_noise^2)),
    clipped to [0, max_value], where G is a Gaussian PSF with per-axis sigma `blur_sigma`
    (physical units; pass a larger Z sigma for the elongated axial PSF of a microscope).
    On background far from nuclei the noise std is therefore
    sqrt(background / gain + read_noise^2) counts (plus 1/12 from rounding).

    Args:
        signal: (*spatial) float, the object's signal above background in counts.
        rng: numpy Generator (Poisson, then Gaussian draws).
        spacing: physical pixel size per axis.
        background: background level (counts).
        blur_sigma: PSF sigma, physical units, scalar or per axis.
        gain: photo-electrons per count; lower gain = more shot noise.
        read_noise: Gaussian read noise std (counts).
        max_value: saturation level (4095 for 12-bit, 65535 for full uint16).

    Returns:
        (*spatial) uint16 image.
    """
    signal = np.asarray(signal, np.float64)
    spacing_arr = _spacing(spacing, signal.ndim)
    if gain <= 0:
        raise ValueError(f"`gain` must be > 0. Received: gain={gain}")
    if read_noise < 0:
        raise ValueError(f"`read_noise` must be >= 0. Received: read_noise={read_noise}")
    if not 0 < max_value <= 65535:
        raise ValueError(f"`max_value` must be in (0, 65535] for uint16. Received: max_value={max_value}")
    sigma = _blur_sigma_pixels(blur_sigma, spacing_arr)
    clean = background + ndimage.gaussian_filter(signal, sigma=sigma)
    electrons = rng.poisson(np.clip(clean, 0, None) * gain) / gain
    noisy = electrons + rng.normal(scale=read_noise, size=signal.shape)
    return np.clip(np.round(noisy), 0, max_value).astype(np.uint16)


def fluorescence_image(
    labels: np.ndarray,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    background: float = 100.0,
    signal: tuple[float, float] = (600.0, 2000.0),
    texture: float = 0.15,
    blur_sigma: float | Sequence[float] = 1.0,
    gain: float = 1.0,
    read_noise: float = 8.0,
    max_value: int = 4095,
) -> np.ndarray:
    """Simulate a widefield fluorescence (e.g. Hoechst) image of labelled nuclei.

    Image formation: per-nucleus brightness ~ U(signal); smooth multiplicative chromatin
    texture (Gaussian-filtered noise, std `texture`); a per-nucleus radial profile (brighter
    rim or brighter centre, up to +-20%); additive background; Gaussian PSF blur; Poisson shot
    noise (in photo-electrons, `gain` e-/count) plus Gaussian read noise; clipped to
    [0, max_value] (12-bit like BBBC039). See `form_image` for the noise model.

    Args:
        labels: (*spatial) int mask.
        rng: numpy Generator.
        spacing: physical pixel size per axis; blur and texture scales are physical.
        background: mean background level (counts).
        signal: (min, max) mean nucleus level above background (counts).
        texture: std of the multiplicative texture.
        blur_sigma: PSF sigma, physical units, scalar or per axis (e.g. larger along Z).
        gain: photo-electrons per count; lower gain = more shot noise.
        read_noise: Gaussian read noise std (counts).
        max_value: saturation level.

    Returns:
        (*spatial) uint16 image.
    """
    labels = np.asarray(labels)
    spacing_arr = _spacing(spacing, labels.ndim)
    if gain <= 0:
        raise ValueError(f"`gain` must be > 0. Received: gain={gain}")
    if not 0 <= signal[0] <= signal[1]:
        raise ValueError(f"`signal` must satisfy 0 <= min <= max. Received: signal={signal}")
    _blur_sigma_pixels(blur_sigma, spacing_arr)  # validate before drawing anything
    nuclei, _ = _nucleus_signal(labels, rng, spacing_arr, signal, texture)
    return form_image(
        nuclei,
        rng,
        spacing_arr,
        background=background,
        blur_sigma=blur_sigma,
        gain=gain,
        read_noise=read_noise,
        max_value=max_value,
    )


def example(
    ndim: int = 2, shape: Sequence[int] | None = None, seed: int = 0, kind: str = "clustered"
) -> tuple[np.ndarray, np.ndarray]:
    """A small deterministic phantom (image, labels) for previews and tests.

    2D: (256, 256) pixels, ~20-40 nuclei of radius 6-12 px (fewer for "sparse"; seeds are
    redrawn, deterministically, while fewer than half the expected count). 3D: (32, 96, 96) voxels with
    spacing EXAMPLE_SPACING_3D = (2, 1, 1) (Z twice as coarse), a density of 0.5 per 10,000
    physical voxels and a PSF twice as long along Z.

    Args:
        ndim: 2 or 3.
        shape: canvas shape (default per ndim above).
        seed: seeds the numpy Generator; same seed -> same arrays.
        kind: seed arrangement, see `nucgen_tf.geometry.arrange_seeds`.

    Returns:
        (image (*shape) uint16, labels (*shape) int32).
    """
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3. Received: ndim={ndim}")
    if shape is None:
        shape = EXAMPLE_SHAPE_2D if ndim == 2 else EXAMPLE_SHAPE_3D
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"`shape` must have {ndim} entries for ndim={ndim}. Received: shape={shape}")
    spacing = None if ndim == 2 else EXAMPLE_SPACING_3D
    blur = 1.0 if ndim == 2 else (2.0, 1.0, 1.0)
    rng = np.random.default_rng(seed)
    config = SeedConfig(density=_EXAMPLE_DENSITY[ndim])
    factor = {"sparse": config.sparse_density_factor, "crowded": config.crowded_density_factor}.get(kind, 1.0)
    physical_volume = float(np.prod(np.asarray(shape) * (1.0 if spacing is None else np.asarray(spacing))))
    expected = config.density * factor * physical_volume / 1e4
    # A cluster process is lumpy: a few parents can leave a preview nearly empty. Redraw (from
    # the same generator, so still deterministic) until at least half the expected count.
    for _ in range(_EXAMPLE_DRAWS):
        seeds = arrange_seeds(kind, shape, rng, config, spacing=spacing)
        if len(seeds) >= 0.5 * expected:
            break
    labels = ellipsoid_labels(seeds, shape, rng, spacing=spacing)
    image = fluorescence_image(labels, rng, spacing=spacing, blur_sigma=blur)
    return image, labels
