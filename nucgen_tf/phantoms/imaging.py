"""Chromatin texture and image formation at a high and a low SNR for the BBBC024-like stand-in.

One simulated volume is: masks from `nuclei.place_nuclei`; a relative DNA density inside
the nuclei (per-nucleus brightness, fine and coarse chromatin texture, a brighter rim or
centre, darker nucleoli, which hold little DNA); then, per SNR setting, image formation by
`parametric.form_image`: anisotropic Gaussian PSF (Z sigma 2.5x the XY sigma, in physical
units; the grid is 2x coarser along Z), background offset, Poisson photon noise, Gaussian
read noise, rounding to uint16. The high- and low-SNR images of a volume share its masks and
its texture; only the imaging differs, so the SNR is the one thing that changes.

SNR, as used here and in `measure_snr`:

    SNR = (mean of the image over nucleus voxels - mean over background voxels)
          / std over background voxels,

where background voxels are those more than `margin` (default 4) pixels (Euclidean, in pixel
units) from every nucleus, so PSF tails do not count as background. The settings are made by
choosing the nucleus signal as `snr` times the background noise std
sqrt(background / gain + read_noise^2 + 1/12); blur, texture and nucleoli bring the measured
value a little below the nominal one. `SNR_RANGES` holds the measured range each setting
lands in (checked by tests).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from nucgen_tf.phantoms.nuclei import PhantomConfig, place_nuclei
from nucgen_tf.phantoms.parametric import _nucleus_signal, _spacing, form_image


@dataclasses.dataclass(frozen=True)
class TextureConfig:
    """Relative DNA density inside nuclei (mean ~1), shared by every SNR setting.

    Attributes:
        brightness: (min, max) per-nucleus relative brightness, drawn uniformly.
        fine_texture: std of the multiplicative fine chromatin texture (2-unit physical scale).
        coarse_texture: std of a second, coarser multiplicative texture.
        coarse_scale: physical Gaussian sigma of the coarse texture.
        nucleoli: (min, max) nucleoli per nucleus, drawn uniformly (integers).
        nucleolus_radius: (min, max) physical radius, drawn uniformly per nucleolus.
        nucleolus_level: density factor inside a nucleolus (< 1: darker, as in DNA stains).
    """

    brightness: tuple[float, float] = (0.75, 1.25)
    fine_texture: float = 0.15
    coarse_texture: float = 0.1
    coarse_scale: float = 4.0
    nucleoli: tuple[int, int] = (1, 3)
    nucleolus_radius: tuple[float, float] = (1.5, 3.0)
    nucleolus_level: float = 0.6

    def __post_init__(self):
        if not 0 <= self.brightness[0] <= self.brightness[1]:
            raise ValueError(
                f"`brightness` must satisfy 0 <= min <= max. Received: brightness={self.brightness}"
            )
        if self.fine_texture < 0 or self.coarse_texture < 0 or self.coarse_scale <= 0:
            raise ValueError(
                "Textures must be >= 0 and `coarse_scale` > 0. Received: "
                f"fine_texture={self.fine_texture}, coarse_texture={self.coarse_texture}, "
                f"coarse_scale={self.coarse_scale}"
            )
        if not 0 <= self.nucleoli[0] <= self.nucleoli[1]:
            raise ValueError(f"`nucleoli` must satisfy 0 <= min <= max. Received: nucleoli={self.nucleoli}")
        if not 0 < self.nucleolus_radius[0] <= self.nucleolus_radius[1]:
            raise ValueError(
                "`nucleolus_radius` must satisfy 0 < min <= max. "
                f"Received: nucleolus_radius={self.nucleolus_radius}"
            )
        if self.nucleolus_level < 0:
            raise ValueError(
                f"`nucleolus_level` must be >= 0. Received: nucleolus_level={self.nucleolus_level}"
            )


@dataclasses.dataclass(frozen=True)
class ImagingSetting:
    """Microscope and camera of one SNR setting (counts are camera units).

    Attributes:
        snr: nominal SNR; the mean nucleus signal above background is snr * noise_std.
        background: background offset (counts).
        gain: photo-electrons per count (shot noise variance = signal / gain).
        read_noise: Gaussian read noise std (counts).
        psf_sigma_xy: lateral Gaussian PSF sigma, physical units (pixels along X).
        psf_sigma_z: axial Gaussian PSF sigma, physical units.
        max_value: saturation level of the uint16 output.
    """

    snr: float
    background: float = 100.0
    gain: float = 1.0
    read_noise: float = 6.0
    psf_sigma_xy: float = 1.0
    psf_sigma_z: float = 2.5
    max_value: int = 65535

    def __post_init__(self):
        if self.snr <= 0 or self.gain <= 0 or self.background < 0 or self.read_noise < 0:
            raise ValueError(
                "Need snr > 0, gain > 0, background >= 0, read_noise >= 0. Received: "
                f"snr={self.snr}, gain={self.gain}, background={self.background}, "
                f"read_noise={self.read_noise}"
            )
        if self.psf_sigma_xy < 0 or self.psf_sigma_z < 0:
            raise ValueError(
                "PSF sigmas must be >= 0. "
                f"Received: psf_sigma_xy={self.psf_sigma_xy}, psf_sigma_z={self.psf_sigma_z}"
            )

    @property
    def noise_std(self) -> float:
        """Expected background std: shot + read + rounding noise (counts)."""
        return math.sqrt(self.background / self.gain + self.read_noise**2 + 1.0 / 12.0)

    @property
    def signal(self) -> float:
        """Mean nucleus signal above background for a relative density of 1 (counts)."""
        return self.snr * self.noise_std

    def blur_sigma(self, ndim: int) -> tuple[float, ...]:
        """Per-axis physical PSF sigma: Z (3D only) then Y, X."""
        return (self.psf_sigma_z,) * (ndim - 2) + (self.psf_sigma_xy,) * 2


# Both settings share background 100 and gain 1; the low setting has a weaker signal and more
# read noise. Nominal values are our choice (we could not check BBBC024's SNRs). SNR_RANGES are
# the documented ranges of the measured SNR (definition in the module docstring): on the 120
# default 3D volumes of the recipe we measured 18.5-22.6 (mean 20.4) and 2.77-3.38 (mean 3.05);
# default 2D images land ~7% higher, still inside.
SNR_SETTINGS: Mapping[str, ImagingSetting] = types.MappingProxyType(
    {
        "high": ImagingSetting(snr=24.0, read_noise=5.0),
        "low": ImagingSetting(snr=3.6, read_noise=12.0),
    }
)
SNR_RANGES: Mapping[str, tuple[float, float]] = types.MappingProxyType(
    {"high": (17.0, 24.0), "low": (2.5, 3.7)}
)


def chromatin_density(
    labels: np.ndarray,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    texture: TextureConfig | None = None,
) -> np.ndarray:
    """Relative DNA density of labelled nuclei (mean ~1 inside, 0 outside).

    Per-nucleus brightness, fine texture and radial profile come from the same model as
    `fluorescence_image`; on top, a coarser multiplicative texture and a few darker round
    nucleoli, each wholly inside its nucleus.

    Args:
        labels: (*spatial) int labels 0..N.
        rng: numpy Generator.
        spacing: physical pixel size per axis (texture scales and radii are physical).
        texture: texture parameters; default `TextureConfig()`.

    Returns:
        (*spatial) float32 density.
    """
    texture = TextureConfig() if texture is None else texture
    labels = np.asarray(labels)
    spacing_arr = _spacing(spacing, labels.ndim)
    density, depth = _nucleus_signal(labels, rng, spacing_arr, texture.brightness, texture.fine_texture)
    if texture.coarse_texture > 0:
        noise = ndimage.gaussian_filter(
            rng.normal(size=labels.shape), sigma=texture.coarse_scale / spacing_arr
        )
        noise /= noise.std() + 1e-12
        density *= np.clip(1.0 + texture.coarse_texture * noise, 0.3, None)
    for label, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        member = labels[window] == label
        deep = depth[window]
        sub = density[window]
        count = int(rng.integers(texture.nucleoli[0], texture.nucleoli[1] + 1))
        for radius in rng.uniform(*texture.nucleolus_radius, size=count):
            candidates = np.flatnonzero(member & (deep >= radius + 1.0))
            if candidates.size == 0:
                continue
            centre = np.unravel_index(candidates[rng.integers(candidates.size)], member.shape)
            dist2 = sum(
                (((np.arange(n) - c) * s) ** 2).reshape((1,) * d + (-1,) + (1,) * (member.ndim - d - 1))
                for d, (n, c, s) in enumerate(zip(member.shape, centre, spacing_arr))
            )
            sub[(dist2 <= radius**2) & member] *= texture.nucleolus_level
    return density.astype(np.float32)


def render_image(
    density: np.ndarray,
    setting: ImagingSetting,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Images a relative density with one SNR setting: uint16 (*spatial) counts."""
    density = np.asarray(density)
    return form_image(
        setting.signal * density.astype(np.float64),
        rng,
        spacing,
        background=setting.background,
        blur_sigma=setting.blur_sigma(density.ndim),
        gain=setting.gain,
        read_noise=setting.read_noise,
        max_value=setting.max_value,
    )


def measure_snr(image: np.ndarray, labels: np.ndarray, margin: float = 4.0) -> float:
    """SNR = (mean over nuclei - mean over background) / std over background.

    Background = voxels farther than `margin` pixels (Euclidean, pixel units) from every
    nucleus, so blurred nucleus tails are not counted as background noise.

    Args:
        image: (*spatial) numeric image.
        labels: (*spatial) int labels, 0 = background.
        margin: gap in pixels between nuclei and the background region.

    Returns:
        The SNR as a float.

    Raises:
        ValueError: shapes differ, no nucleus, or no background voxel beyond the margin.
    """
    image = np.asarray(image, np.float64)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(
            f"`image` and `labels` must have the same shape. Received: {image.shape} and {labels.shape}"
        )
    foreground = labels > 0
    if not foreground.any():
        raise ValueError("`labels` holds no nucleus; the SNR is undefined.")
    background = ndimage.distance_transform_edt(~foreground) > margin
    if np.count_nonzero(background) < 2:
        raise ValueError(f"No background voxels farther than margin={margin} px from the nuclei.")
    values = image[background]
    std = float(values.std())
    if std == 0:
        raise ValueError("The background is constant (std 0); the SNR is undefined.")
    return (float(image[foreground].mean()) - float(values.mean())) / std


def phantom_volume(
    seed: int | Sequence[int],
    config: PhantomConfig | None = None,
    snrs: Sequence[str] = ("high", "low"),
    texture: TextureConfig | None = None,
    settings: Mapping[str, ImagingSetting] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One simulated volume (or 2D image): labels and one image per requested SNR setting.

    Randomness comes from independent streams spawned from `np.random.SeedSequence(seed)`:
    masks, texture, then one per entry of `settings` (in order). So the masks and texture do
    not depend on which SNRs are requested, and the same seed always gives the same arrays.

    Args:
        seed: an int or a sequence of ints (e.g. [dataset_seed, split, index]).
        config: geometry (default: the 3D stand-in, `PhantomConfig()`).
        snrs: names in `settings` to image.
        texture: texture parameters (default `TextureConfig()`).
        settings: name -> ImagingSetting (default `SNR_SETTINGS`).

    Returns:
        (labels (*shape) int32, {snr name: (*shape) uint16 image}).
    """
    config = PhantomConfig() if config is None else config
    settings = SNR_SETTINGS if settings is None else settings
    names = list(settings)
    unknown = [s for s in snrs if s not in settings]
    if unknown:
        raise ValueError(f"Unknown SNR settings {unknown}; known: {names}. Received: snrs={list(snrs)}")
    streams = np.random.SeedSequence(seed).spawn(2 + len(names))
    labels = place_nuclei(config, np.random.default_rng(streams[0]))
    density = chromatin_density(labels, np.random.default_rng(streams[1]), config.spacing, texture)
    images = {
        name: render_image(
            density, settings[name], np.random.default_rng(streams[2 + names.index(name)]), config.spacing
        )
        for name in snrs
    }
    return labels, images
