"""Load and check the three exported generators that synthesis chains.

`--models DIR` holds `stage1/`, `stage2/` and `stage3/`, each an exported generator
(SavedModel or compact weights + `nucgen_manifest.json`, see `nucgen_tf.exported`). They
must agree on ndim and have the channel layouts the chain needs (1 -> 1, 3 -> 4, 4 -> 1); a
mismatch is reported with the offending folder before any sample is drawn.

`load_stage` loads one export on its own and `load_image_stage` a mask -> image generator
with what puts its output on the data's intensity scale, for jobs that need only stage 3
(`nucgen paint`, the r+p2p and p+CycleGAN baselines).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np

from nucgen_tf.config import NormConfig, RenderConfig, SeedConfig, from_dict
from nucgen_tf.data.normalize import IntensityStats
from nucgen_tf.exported.manifest import MANIFEST, NOT_AN_EXPORT, check_manifest, content_hash, read_manifest
from nucgen_tf.io import DataError
from nucgen_tf.sensor import SensorModel
from nucgen_tf.synthesis.arrangement_fit import FittedArrangement

STAGE_DIRS = ("stage1", "stage2", "stage3")
CHANNELS = {1: (1, 1), 2: (3, 4), 3: (4, 1)}


@dataclasses.dataclass(frozen=True)
class StageModel:
    """One exported generator and what synthesis needs from its manifest.

    Attributes:
        stage: 1, 2 or 3.
        path: the SavedModel folder.
        generator: callable on float32 (B, *spatial, C_in) in [-1, 1].
        manifest: the exported manifest dict.
        divisor: per-axis size multiple of the network.
        sha256: `content_hash` of the folder.
    """

    stage: int
    path: pathlib.Path
    generator: Any
    manifest: dict
    divisor: tuple[int, ...]
    sha256: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.generator(x), np.float32)

    @property
    def noise_channels(self) -> int:
        """N(0, 1) channels the network takes after its `input.channels` (0 for older exports).

        Read from the generator config, from which a compact export's network is rebuilt.
        """
        values = self.manifest.get("config", {}).get("generator") or {}
        return int(values.get("noise_channels", 0))

    def describe(self) -> dict:
        """The JSON record of this model in the synthesis manifest."""
        return {
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "step": self.manifest.get("step"),
            "divisor": list(self.divisor),
            "patch_shape": self.manifest.get("patch_shape"),
        }


@dataclasses.dataclass(frozen=True)
class Generators:
    """The three stages plus the settings synthesis reads from their manifests.

    Attributes:
        stages: {1: StageModel, 2: ..., 3: ...}.
        ndim: spatial rank shared by all three.
        render: stage-1 `RenderConfig` (bv, seed radius) ...
        render2: ... stage-2 (color margin, boundary width of the ellipses / masks) ...
        render3: ... and stage-3 (boundary width of its colored-mask input).
        seeds: stage-1 `SeedConfig` (default arrangement parameters).
        spacing: stage-1 voxel spacing, or None.
        patch_shape: stage-1 training patch shape (default canvas).
        stats: stage-3 `IntensityStats` (intensity scale of the outputs).
        norm: stage-3 `NormConfig` (span floor of the denormalization).
        sensor: stage-3 `SensorModel` fitted to the training images (camera noise added to
            generated images), or None for exports made before it was recorded.
    """

    stages: dict[int, StageModel]
    ndim: int
    render: RenderConfig
    render2: RenderConfig
    render3: RenderConfig
    seeds: SeedConfig
    spacing: tuple[float, ...] | None
    patch_shape: tuple[int, ...]
    stats: IntensityStats
    norm: NormConfig
    sensor: SensorModel | None = None

    def describe(self) -> dict:
        return {f"stage{k}": model.describe() for k, model in sorted(self.stages.items())}


@dataclasses.dataclass(frozen=True)
class ImageStage:
    """A mask -> image generator and what turns its output into an image of the training data.

    The same fields as the stage-3 part of `Generators`, so `pipeline.to_intensity` and
    `pipeline.image_scale` take either; a job that paints given masks needs nothing else.

    Attributes:
        model: the exported generator (4-channel colored mask -> 1 image channel; it may take
            noise channels too, see `StageModel.noise_channels` and `pipeline.run_stage`).
        render: its `RenderConfig` (color margin, boundary width of the colored-mask input).
        stats: `IntensityStats` of its training images (the output intensity scale).
        norm: `NormConfig` (span floor of the denormalization).
        sensor: `SensorModel` fitted to its training images, or None (older exports).
    """

    model: StageModel
    render: RenderConfig
    stats: IntensityStats
    norm: NormConfig
    sensor: SensorModel | None = None

    @property
    def ndim(self) -> int:
        return int(self.model.manifest["ndim"])

    @property
    def stages(self) -> dict[int, StageModel]:
        """{3: model}: the view of `Generators.stages` that canvas checks read."""
        return {3: self.model}


def _sub_config(manifest: dict, key: str, cls: type, path: pathlib.Path):
    values = manifest.get("config", {}).get(key)
    if values is None:
        return cls()
    try:
        return from_dict(cls, values)
    except (TypeError, ValueError) as err:
        raise DataError(path, f"invalid `config.{key}` in the manifest: {err}") from err


def _read_manifest(
    stage: int | str, path: pathlib.Path, missing: str, channels: tuple[int, int] | None = None
) -> tuple[dict, int, tuple[int, ...]]:
    """(manifest, ndim, divisor) of the export in `path`, checked for `stage` without TensorFlow.

    `missing` ends the message when the folder or its manifest is missing; `channels`
    defaults to `CHANNELS[stage]`.
    """
    manifest = read_manifest(path, missing)
    return (manifest, *check_manifest(path, manifest, stage, channels or CHANNELS[stage]))


def _load_model(stage: int | str, path: pathlib.Path, manifest: dict, divisor: tuple[int, ...]) -> StageModel:
    from nucgen_tf.exported.generator import ExportedGenerator  # imports TensorFlow

    sha = content_hash(path)
    try:
        generator = ExportedGenerator(path)
    except Exception as err:  # TF raises many types for broken SavedModels.
        raise DataError(path, f"cannot load the SavedModel ({type(err).__name__}: {err})") from err
    return StageModel(stage, path, generator, manifest, divisor, sha)


def load_stage(
    path: str | pathlib.Path, stage: int | str, channels: tuple[int, int] | None = None
) -> StageModel:
    """Load one exported generator on its own, checked against `stage` (and `channels`).

    Raises:
        DataError: the folder, its manifest or its SavedModel is missing or does not fit.
    """
    path = pathlib.Path(path)
    manifest, _, divisor = _read_manifest(stage, path, NOT_AN_EXPORT, channels)
    return _load_model(stage, path, manifest, divisor)


def image_stage(model: StageModel) -> ImageStage:
    """The intensity scale, render settings and camera model of a mask -> image generator.

    Raises:
        DataError: its manifest lacks valid `intensity_stats`, or has an invalid `sensor`.
    """
    manifest = model.manifest
    if "intensity_stats" not in manifest:
        raise DataError(model.path, "manifest has no `intensity_stats`; cannot scale images")
    try:
        stats = IntensityStats.from_dict(manifest["intensity_stats"])
    except (TypeError, ValueError) as err:
        raise DataError(model.path, f"invalid `intensity_stats`: {err}") from err
    sensor = None
    if "sensor" in manifest:
        try:
            sensor = SensorModel.from_dict(manifest["sensor"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(model.path, f"invalid `sensor` in the manifest: {err}") from err
    return ImageStage(
        model=model,
        render=_sub_config(manifest, "render", RenderConfig, model.path),
        stats=stats,
        norm=_sub_config(manifest, "norm", NormConfig, model.path),
        sensor=sensor,
    )


def load_image_stage(path: str | pathlib.Path, stage: int | str = 3) -> ImageStage:
    """Load a mask -> image generator: `path/stage3/`, or `path` when it is the export itself.

    Args:
        path: a `--models` folder holding `stage3/`, or a stage-3 export.
        stage: the `stage` its manifest must record (3; the p+CycleGAN baseline's differs).

    Raises:
        DataError: neither is an export, or it does not map a colored mask to an image.
    """
    path = pathlib.Path(path)
    if (path / STAGE_DIRS[2] / MANIFEST).is_file():
        path = path / STAGE_DIRS[2]
    elif path.is_dir() and not (path / MANIFEST).is_file():
        raise DataError(
            path,
            f"no {STAGE_DIRS[2]}/ and no {MANIFEST}: give a folder holding stage3/ or a stage-3 "
            "export (written by `nucgen train`)",
        )
    return image_stage(load_stage(path, stage, CHANNELS[3]))


def _models_folder(models_dir: str | pathlib.Path) -> pathlib.Path:
    """`models_dir` as a path, refused by name when it is not a folder."""
    models_dir = pathlib.Path(models_dir)
    if not models_dir.is_dir():
        raise DataError(models_dir, "models folder not found (expected stage1/, stage2/, stage3/ inside)")
    return models_dir


def _stage1_manifest(models_dir: str | pathlib.Path) -> tuple[dict[str, Any], int]:
    """(manifest, ndim) of `models_dir/stage1`, read alone (without loading any network)."""
    manifest, ndim, _ = _read_manifest(
        1, _models_folder(models_dir) / STAGE_DIRS[0],
        "--models must hold stage1/, stage2/, stage3/ exported by `nucgen train`",
    )  # fmt: skip
    return manifest, ndim


def seed_geometry(models_dir: str | pathlib.Path) -> tuple[int, tuple[float, ...] | None]:
    """(ndim, stage-1 spacing or None) of a models folder, from the stage-1 manifest alone.

    For checks that must come before the seconds of `load_generators` (as that reads them).

    Raises:
        DataError: as `load_generators` for a missing or bad stage-1 manifest.
    """
    manifest, ndim = _stage1_manifest(models_dir)
    spacing = manifest.get("config", {}).get("spacing") or None
    return ndim, tuple(float(s) for s in spacing) if spacing else None


def manifest_arrangement(models_dir: str | pathlib.Path) -> FittedArrangement | None:
    """The seed-layout fit of stage 1's training masks from its manifest, or None.

    Stage 1 records it since the fitted arrangement became synthesis's default; exports made
    before carry none.

    Raises:
        DataError: as `seed_geometry`, or a recorded fit that is not valid.
    """
    path = _models_folder(models_dir) / STAGE_DIRS[0]
    manifest, _ = _stage1_manifest(models_dir)
    if "arrangement_fit" not in manifest:
        return None
    try:
        return FittedArrangement.from_dict(manifest["arrangement_fit"])
    except (TypeError, ValueError) as err:
        raise DataError(path / MANIFEST, f"holds an invalid arrangement_fit: {err}") from err


def load_generators(models_dir: str | pathlib.Path) -> Generators:
    """Load `models_dir/stage{1,2,3}` and check that they chain.

    Raises:
        DataError: a folder or manifest is missing or does not fit the chain; the message
            starts with the offending folder.
    """
    models_dir = _models_folder(models_dir)
    manifests, ndims, divisors = {}, {}, {}
    for stage, name in enumerate(STAGE_DIRS, start=1):  # cheap checks first: no TensorFlow yet
        manifests[stage], ndims[stage], divisors[stage] = _read_manifest(
            stage,
            models_dir / name,
            "--models must hold stage1/, stage2/, stage3/ exported by `nucgen train`",
        )
    if len(set(ndims.values())) != 1:
        raise DataError(
            models_dir,
            "the three generators disagree on ndim: "
            + ", ".join(f"{models_dir / STAGE_DIRS[k - 1]} is {v}D" for k, v in ndims.items()),
        )
    stages = {
        stage: _load_model(stage, models_dir / name, manifests[stage], divisors[stage])
        for stage, name in enumerate(STAGE_DIRS, start=1)
    }
    m1 = stages[1].manifest
    image = image_stage(stages[3])
    ndim = ndims[1]
    patch = tuple(int(s) for s in m1.get("patch_shape") or ())
    if len(patch) != ndim:
        raise DataError(stages[1].path, f"manifest `patch_shape` must have {ndim} sizes, got {patch}")
    spacing = m1.get("config", {}).get("spacing") or None
    return Generators(
        stages=stages,
        ndim=ndim,
        render=_sub_config(m1, "render", RenderConfig, stages[1].path),
        render2=_sub_config(stages[2].manifest, "render", RenderConfig, stages[2].path),
        render3=image.render,
        seeds=_sub_config(m1, "seeds", SeedConfig, stages[1].path),
        spacing=tuple(float(s) for s in spacing) if spacing else None,
        patch_shape=patch,
        stats=image.stats,
        norm=image.norm,
        sensor=image.sensor,
    )
