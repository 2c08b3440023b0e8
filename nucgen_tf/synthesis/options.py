"""`SynthesisOptions`: everything `nucgen synthesize` is asked to do, validated in one place."""

from __future__ import annotations

import dataclasses

from nucgen_tf.synthesis.sampling import ARRANGEMENTS
from nucgen_tf.synthesis.writers import LAYOUTS

SENSOR_NOISE = ("fitted", "none")


@dataclasses.dataclass(frozen=True)
class SynthesisOptions:
    """A synthesis job. `None` / empty fields fall back to the models' manifests.

    Attributes:
        models: folder with stage1/, stage2/, stage3/ exported generators.
        out: output folder.
        n: number of samples (indices 0..n-1); with `seeds_csv` default max(sample) + 1.
        seed: base seed; sample i draws from SeedSequence([seed, i]).
        shape: canvas shape; default the stage-1 training patch shape.
        arrangement: fitted (the default: layout statistics of real masks, `arrangement_fit`;
            the stage-1 manifest's fit of its training masks unless `arrangement_data` or
            `arrangement_fit` is given) | random | clustered | sparse | crowded | mixed (one
            of the artificial kinds per sample, for hard-case emphasis).
        arrangement_data: "fitted": real instance masks folder, fitted at the start.
        arrangement_fit: "fitted": a fit JSON file (`arrangement_fit.save_fit`) instead.
        density, cluster_radius, cluster_size, sparse_min_distance, crowded_min_distance:
            override the stage-1 manifest's `SeedConfig`.
        spacing: physical voxel size per axis (default: stage-1 config).
        seeds_csv: seed points instead of drawn arrangements (see `sampling.read_seeds_csv`).
        batch: canvases or tiles per network call; 1 keeps outputs bit-identical across
            shards and reruns (TF CPU kernels are not batch-invariant).
        chunk: samples per chunk; the manifest is rewritten after every chunk.
        tile: largest tile per axis (1 value for all axes, or one per axis; 0 = never tile).
        overlap: overlap of neighbouring tiles per axis.
        layout: "stardist" (images/ + masks/) or "cellpose" (<name>.tif + <name>_masks.tif).
        save_intermediate: also write seed map, box map, ellipses, colored mask, stage-3 input.
        previews: write previews/<name>.png.
        min_alignment: flag samples whose alignment score is lower.
        max_labels_per_box: flag samples whose masks hold more labels per stage-1 box
            (`checks.mask_checks`; 1 = one nucleus per box).
        sensor_noise: "fitted" adds the stage-3 manifest's camera noise to the images (when
            the models have none, a warning says so and images stay clean); "none" keeps
            the generator's clean images.
        realism_reference: optional real folder (images/ + masks/); when given, the run's
            realism report against it is written next to the manifest.
        num_shards, shard_index: this process computes the samples i with
            i % num_shards == shard_index.
        prefix: sample names are <prefix>_<index:06d>.
        box_threshold: stage-1 decoding threshold (None = decoder default).
        min_box_size: stage-1 decoding drops smaller components (counted in the report);
            None = decoder default (2**ndim).
        split_touching: split touching ovals in stage-1 decoding.
        require_seed: stage-1 decoding keeps only pieces that hold a seed point (drops what
            stage 1 painted away from every seed); off = the paper's rule.
        margin: px generated beyond each side of the canvas and cropped off (seeds drawn
            over them too): nuclei run past the edge as in a real field instead of being
            generated against it as thin slivers (`pipeline.crop_sample`); 0 = off.
    """

    models: str
    out: str
    n: int | None = None
    seed: int = 0
    shape: tuple[int, ...] = ()
    arrangement: str = "fitted"
    arrangement_data: str | None = None
    arrangement_fit: str | None = None
    density: float | None = None
    cluster_radius: float | None = None
    cluster_size: float | None = None
    sparse_min_distance: float | None = None
    crowded_min_distance: float | None = None
    spacing: tuple[float, ...] = ()
    seeds_csv: str | None = None
    batch: int = 1
    chunk: int = 4
    tile: tuple[int, ...] = (1024,)
    overlap: tuple[int, ...] = (64,)
    layout: str = "stardist"
    save_intermediate: bool = False
    previews: bool = True
    min_alignment: float = 0.5
    max_labels_per_box: float = 1.5
    sensor_noise: str = "fitted"
    realism_reference: str | None = None
    num_shards: int = 1
    shard_index: int = 0
    prefix: str = "sample"
    box_threshold: float | None = None
    min_box_size: int | None = None
    split_touching: bool = True
    require_seed: bool = False
    margin: int = 0

    def __post_init__(self):
        for name in ("shape", "spacing", "tile", "overlap"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value) if value is not None else ())
        if self.n is not None and self.n < 0:
            raise ValueError(f"`n` must be >= 0. Received: n={self.n}")
        if self.n is None and not self.seeds_csv:
            raise ValueError("`n` is required unless `seeds_csv` is given. Received: n=None")
        if self.seed < 0:
            raise ValueError(f"`seed` must be >= 0. Received: seed={self.seed}")
        if self.arrangement not in ARRANGEMENTS:
            raise ValueError(
                f"`arrangement` must be one of {ARRANGEMENTS}. Received: arrangement={self.arrangement!r}"
            )
        sources = [name for name in ("arrangement_data", "arrangement_fit") if getattr(self, name)]
        if self.arrangement == "fitted" and len(sources) > 1:
            raise ValueError(
                "`arrangement='fitted'` takes one of `arrangement_data` (a real masks folder) and "
                f"`arrangement_fit` (a fit JSON file), or neither (the stage-1 manifest's fit). Received: {sources}"
            )
        if self.arrangement != "fitted" and sources:
            raise ValueError(
                f"{sources} only apply to `arrangement='fitted'`. Received: arrangement={self.arrangement!r}"
            )
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={self.layout!r}")
        if self.shape and (len(self.shape) not in (2, 3) or min(self.shape) < 1):
            raise ValueError(f"`shape` must be 2 or 3 positive sizes. Received: shape={self.shape}")
        if self.margin < 0:
            raise ValueError(f"`margin` must be >= 0. Received: margin={self.margin}")
        if self.min_box_size is not None and self.min_box_size < 1:
            raise ValueError(f"`min_box_size` must be >= 1. Received: min_box_size={self.min_box_size}")
        for name in ("batch", "chunk", "num_shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(
                f"`shard_index` must be in [0, num_shards={self.num_shards}). "
                f"Received: shard_index={self.shard_index}"
            )
        if not self.tile or min(self.tile) < 0 or not self.overlap or min(self.overlap) < 0:
            raise ValueError(
                f"`tile` and `overlap` must be >= 0. Received: tile={self.tile}, overlap={self.overlap}"
            )
        if self.sensor_noise not in SENSOR_NOISE:
            raise ValueError(f"`sensor_noise` must be one of {SENSOR_NOISE}. Received: {self.sensor_noise!r}")
        if not self.max_labels_per_box > 0:
            raise ValueError(f"`max_labels_per_box` must be > 0. Received: {self.max_labels_per_box}")
        if not self.prefix or "/" in self.prefix:
            raise ValueError(f"`prefix` must be a non-empty file name part. Received: prefix={self.prefix!r}")
