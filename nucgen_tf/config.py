"""Frozen dataclass configs shared by every stage.

Configs validate themselves in `__post_init__` so that a bad value fails where it is
written, not deep inside a tf.data map. Only `nucgen_tf.commands` turns flags into
these objects; nothing here imports absl.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """How labels become the paper's representations (see `nucgen_tf.geometry`).

    Attributes:
        bv: Eq. 1 boundary value; the oval rim has intensity bv / (1 + bv).
        seed_radius: radius in pixels of the dot drawn for each seed point.
        color_margin: nuclei closer than this (pixels) never share a palette color.
        boundary_width: width in pixels of the boundary class drawn inside each nucleus.
        oriented: boxes along each nucleus' principal axes (turned ovals in the box map and
            the colored ellipses) instead of axis-aligned bounding boxes; a diagonal,
            elongated nucleus otherwise gets a near-round oval. False = the paper's boxes.
    """

    bv: float = 0.25
    seed_radius: float = 1.5
    color_margin: float = 3.0
    boundary_width: int = 1
    oriented: bool = False

    def __post_init__(self):
        _positive("bv", self.bv)
        _positive("seed_radius", self.seed_radius)
        if self.color_margin < 0:
            raise ValueError(f"`color_margin` must be >= 0. Received: color_margin={self.color_margin}")
        if self.boundary_width < 1:
            raise ValueError(f"`boundary_width` must be >= 1. Received: boundary_width={self.boundary_width}")


@dataclasses.dataclass(frozen=True)
class NormConfig:
    """Percentile intensity normalization to [-1, 1], bounded by data-set statistics.

    A plain per-image stretch maps the camera noise of an empty field onto the full range,
    which a generator then learns as fake nuclei. The stretch of every image is therefore
    at least `min_span_fraction` of the data set's typical span (median over images of
    `high - low` percentiles).

    Attributes:
        low_percentile: percentile mapped to -1.
        high_percentile: percentile mapped to +1.
        min_span_fraction: lower bound of an image's span, as a fraction of the data set's.
    """

    low_percentile: float = 1.0
    high_percentile: float = 99.8
    min_span_fraction: float = 0.5

    def __post_init__(self):
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError(
                "Percentiles must satisfy 0 <= low < high <= 100. Received: "
                f"low_percentile={self.low_percentile}, high_percentile={self.high_percentile}"
            )
        _positive("min_span_fraction", self.min_span_fraction)


@dataclasses.dataclass(frozen=True)
class SeedConfig:
    """Artificial seed arrangements for the point domain (stage 1, domain A).

    Densities are mean seeds per 10,000 pixels (2D) or voxels (3D), measured
    in physical units when `spacing` is anisotropic.

    Attributes:
        kinds: arrangements to draw from, uniformly: random, clustered, sparse, crowded.
        density: mean seed density of the `random` arrangement.
        cluster_radius: Gaussian sigma (pixels) of children around a cluster parent.
        cluster_size: mean number of seeds per cluster.
        sparse_min_distance: hard-core distance (pixels) of the `sparse` arrangement.
        crowded_min_distance: hard-core distance (pixels) of the `crowded` arrangement.
        crowded_density_factor: density multiplier for `crowded`.
        sparse_density_factor: density multiplier for `sparse`.
    """

    kinds: tuple[str, ...] = ("random", "clustered", "sparse", "crowded")
    density: float = 3.5
    cluster_radius: float = 12.0
    cluster_size: float = 5.0
    sparse_min_distance: float = 30.0
    crowded_min_distance: float = 14.0
    crowded_density_factor: float = 2.0
    sparse_density_factor: float = 0.4

    def __post_init__(self):
        allowed = {"random", "clustered", "sparse", "crowded"}
        if not self.kinds or not set(self.kinds) <= allowed:
            raise ValueError(
                f"`kinds` must be a non-empty subset of {sorted(allowed)}. Received: kinds={self.kinds}"
            )
        for name in (
            "density",
            "cluster_radius",
            "cluster_size",
            "sparse_min_distance",
            "crowded_min_distance",
            "crowded_density_factor",
            "sparse_density_factor",
        ):
            _positive(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class PatchConfig:
    """Patch sampling and augmentation for the tf.data pipelines.

    Attributes:
        patch_shape: spatial patch size, (Y, X) or (Z, Y, X); fixes `ndim`.
        batch_size: patches per batch.
        flips: random flips along every spatial axis.
        rot90: random 90-degree rotations in the YX plane (needs a square YX patch).
        permute_colors: draw the palette colors anew for every training patch (a random
            permutation of the coloring's color classes), so that the stage-2/3 networks
            see every palette color, as synthesis uses them, not one coloring per image.
        shuffle_buffer: files shuffled per epoch (0 = all).
        seed: makes the pipeline deterministic.
    """

    patch_shape: tuple[int, ...] = (256, 256)
    batch_size: int = 1
    flips: bool = True
    rot90: bool = True
    permute_colors: bool = True
    shuffle_buffer: int = 0
    seed: int = 0

    def __post_init__(self):
        if len(self.patch_shape) not in (2, 3) or min(self.patch_shape) < 1:
            raise ValueError(
                f"`patch_shape` must be 2 or 3 positive ints. Received: patch_shape={self.patch_shape}"
            )
        if self.batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={self.batch_size}")
        if self.rot90 and self.patch_shape[-1] != self.patch_shape[-2]:
            raise ValueError(
                "`rot90` needs a square YX patch. Received: "
                f"patch_shape={self.patch_shape}; set rot90=False or use a square patch."
            )

    @property
    def ndim(self) -> int:
        return len(self.patch_shape)


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass, ignoring unknown keys from newer/older runs."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in names:
            continue
        field_type = hints[name]
        if dataclasses.is_dataclass(field_type) and isinstance(value, Mapping):
            value = from_dict(field_type, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def as_shape(values: Sequence[int | str]) -> tuple[int, ...]:
    """Parse a flag list like ['32', '128', '128'] into a shape tuple."""
    return tuple(int(v) for v in values)
