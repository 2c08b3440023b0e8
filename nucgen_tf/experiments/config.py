"""Configs of the augmentation experiment (issue 6, the paper's Table I): what to train, how much.

`ExperimentConfig` nests the segmenters' configs (one per cell, its seed replaced): the 3-class
U-Net's `SegmentTrainConfig` and StarDist's `StardistTrainConfig`, of which `segmenter_family`
picks one (the paper's Table I repeats its conditions with a second family, Mask R-CNN; StarDist
plays that role here), and `GanSettings` (the generators each condition needs). Two presets:
"full" (sized for a few hours on 2 CPU cores) and "smoke" (minutes; the end-to-end test).
`with_overrides` applies dotted-path overrides ("segmenter.steps") on top of a preset; that
is how flags and flag files reach the config without a second config system. `migrate` reads
the settings record of a workdir written by any earlier version (as CSBDeep's
`update_loaded_config`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from nucgen_tf.config import NormConfig, PatchConfig, RenderConfig, SeedConfig, to_dict
from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.models.segmenters import SegmenterConfig
from nucgen_tf.segment.config import SegmentTrainConfig
from nucgen_tf.segment.stardist.config import StardistTrainConfig
from nucgen_tf.trainers.config import StageConfig, TrainConfig

# The paper's conditions, in Table I order.
CONDITIONS = ("none", "p+CycleGAN", "r+p2p", "ours")
# File-system names of the conditions (and accepted spellings on the command line).
SLUGS = {"none": "none", "p+CycleGAN": "p_cyclegan", "r+p2p": "r_p2p", "ours": "ours"}
PRESETS = ("full", "smoke")
# Segmenter families; "unet" first (the default, and the paper's first model).
FAMILIES = ("unet", "stardist")

# Version of the settings record that `runner.settings_record` writes to a workdir's
# experiment.json. 0 (files without `config_version`): generator folders recorded by path.
# 1: by content ("models": {setting: hash}; "model_paths", not compared, says where they were).
CONFIG_VERSION = 1
# Settings naming exported generators; the record holds their content hash, not their path.
MODEL_FIELDS = ("models_dir", "ours_models", "rp2p_models", "pcyclegan_models")
# The content hash of generators whose content is not known: recorded by a workdir from
# before content hashes, or for a folder without an export to hash. Such a setting is
# compared by path, as before, and its hash is recorded once it can be computed.
UNKNOWN_HASH = "unknown"
# Settings added after the first experiment.json, with the value that their absence stands for.
# A record leaves each out at that value, so that workdirs written before it stay valid while
# a workdir made with another value is refused, naming the setting.
LATER_SETTINGS = (
    (("gan", "seeds"), to_dict(SeedConfig())),
    (("gan", "spacing"), []),
    (("gan", "clipnorm"), 0.0),
    (("ours_require_seed",), False),
    (("sensor_noise",), False),
    (("ours_margin",), 0),
    (("segmenter", "schedule"), "mixed"),
    (("segmenter", "pretrain_steps"), 0),
    (("stardist", "schedule"), "mixed"),
    (("stardist", "pretrain_steps"), 0),
)


def parse_condition(name: str) -> str:
    """The canonical condition name for a spelling such as "p+cyclegan", "p_cyclegan" or "rp2p"."""
    key = name.strip().lower().replace("_", "").replace("+", "").replace("-", "")
    for condition, slug in SLUGS.items():
        if key in (condition.lower().replace("+", ""), slug.replace("_", "")):
            return condition
    raise ValueError(f"Unknown condition. Expected one of {CONDITIONS}. Received: condition={name!r}")


@dataclasses.dataclass(frozen=True)
class GanSettings:
    """The generators the conditions need, all trained on the same real training subset.

    Stage 1 (seeds -> boxes) and stage 2 (ellipses -> masks) serve "ours" only; stage 3
    (pix2pix, mask -> image) serves both "ours" and "r+p2p", which are the same network in
    the paper's setting (pix2pix on real pairs); the polygon CycleGAN serves "p+CycleGAN".

    Attributes:
        patch_shape: training patch of every GAN; fixes ndim.
        batch_size: patches per step.
        base_filters, depth: U-Net generators.
        d_filters, d_layers: PatchGAN discriminators.
        stage1_steps, stage2_steps, stage3_steps, pcyclegan_steps: training steps.
        lr: Adam learning rate of the CycleGANs.
        pix2pix_lr: Adam learning rate of stage 3 (pix2pix learns faster at 1e-3).
        precision: dtype policy (`nucgen_tf.runtime.set_precision`).
        clipnorm: global-norm gradient clipping of every GAN optimizer (0 = off).
        checkpoint_every: steps between checkpoints (each run resumes from its last one).
        seed: seeds the GAN runs and the synthetic samples.
    """

    patch_shape: tuple[int, ...] = (128, 128)
    batch_size: int = 2
    base_filters: int = 8
    depth: int = 4
    d_filters: int = 8
    d_layers: int = 3
    stage1_steps: int = 3000
    stage2_steps: int = 3000
    stage3_steps: int = 3000
    pcyclegan_steps: int = 3000
    lr: float = 2e-4
    pix2pix_lr: float = 1e-3
    precision: str = "mixed"
    clipnorm: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    seeds: SeedConfig = SeedConfig()
    spacing: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "patch_shape", tuple(int(s) for s in self.patch_shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        for name in ("stage1_steps", "stage2_steps", "stage3_steps", "pcyclegan_steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        # Builds (and so validates) one stage config: patch sizes vs depth, filters, precision.
        self.stage_config(3, ".")

    @property
    def ndim(self) -> int:
        return len(self.patch_shape)

    def steps(self, stage: int | str) -> int:
        """Steps of stage 1, 2, 3 or "pcyclegan"."""
        return {1: self.stage1_steps, 2: self.stage2_steps, 3: self.stage3_steps}.get(
            stage, self.pcyclegan_steps
        )

    def stage_config(self, stage: int | str, data: str, steps: int | None = None) -> StageConfig:
        """The `StageConfig` of paper stage 1, 2, 3 or of "p+CycleGAN" trained on `data`."""
        steps = self.steps(stage) if steps is None else steps
        return StageConfig(
            stage=stage,
            data=str(data),
            patch=PatchConfig(patch_shape=self.patch_shape, batch_size=self.batch_size, seed=self.seed),
            render=RenderConfig(),
            norm=NormConfig(),
            seeds=self.seeds,
            spacing=self.spacing,
            train=TrainConfig(
                steps=steps,
                lr=self.pix2pix_lr if stage == 3 else self.lr,
                checkpoint_every=min(self.checkpoint_every, steps),
                log_every=max(1, min(20, steps)),
                image_every=min(self.checkpoint_every, steps),
                precision=self.precision,
                seed=self.seed,
                clipnorm=self.clipnorm,
            ),
            generator=GeneratorConfig(base_filters=self.base_filters, depth=self.depth),
            discriminator=DiscriminatorConfig(base_filters=self.d_filters, n_layers=self.d_layers),
            loss=GanLossConfig(),
        )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One augmentation experiment: conditions x training amounts x seeds.

    Attributes:
        data_root: folder with train/, val/ and test/ (each images/ + masks/).
        workdir: where everything goes (resumable; see `runner`).
        conditions: subset of `CONDITIONS`.
        n_train: training amounts; each takes the first N real training images by sorted
            name, the same N images for every condition and seed.
        seeds: segmenter seeds (one cell per condition, amount and seed).
        n_synthetic: synthetic samples per condition (and amount).
        synth_shape: canvas of a synthetic sample.
        max_val_images, max_test_images: use only the first N validation / test images
            (0 = all); the smoke preset uses this to stay fast.
        extra_eval: (name, folder) pairs scored like the test set, never used for selection.
        segmenter: the U-Net segmenter's training config (its `seed` is replaced per cell).
        segmenter_family: which segmenter the cells train: "unet" (`segmenter`) or "stardist"
            (`stardist`). Runs of both families can share a workdir (the same real subsets,
            generators and synthetic data); their cells live apart (`runner.cell_dir`).
        stardist: the StarDist segmenter's training config (its `seed` is replaced per cell).
        gan: generator training settings.
        elastic_alpha: r+p2p: largest displacement (px) of the elastic deformation of real masks.
        elastic_sigma: r+p2p: smoothness (Gaussian sigma, px) of the displacement field.
        models_dir: exported generators to reuse instead of training them: stage1/, stage2/,
            stage3/ (and pcyclegan/) inside.
        ours_models: folder with stage1/, stage2/, stage3/ for "ours" (wins over models_dir).
        rp2p_models: a stage-3 export, or a folder holding stage3/, for "r+p2p".
        pcyclegan_models: a p+CycleGAN export, or a folder holding pcyclegan/.
        ours_require_seed: "ours" synthesis keeps only stage-1 pieces holding a seed point
            (`SynthesisOptions.require_seed`); off = the paper's rule.
        sensor_noise: "ours" and "r+p2p" images get the camera noise fitted to the real
            training images (the stage-3 manifest's `sensor`, see `nucgen_tf.sensor`); off =
            the generator's noise-free images.
        ours_margin: "ours" synthesis generates this many px beyond each side and crops
            them off (`SynthesisOptions.margin`: nuclei cut by the edge, no thin slivers).
    """

    data_root: str
    workdir: str
    conditions: tuple[str, ...] = CONDITIONS
    n_train: tuple[int, ...] = (20,)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_synthetic: int = 200
    synth_shape: tuple[int, ...] = (256, 256)
    max_val_images: int = 0
    max_test_images: int = 0
    extra_eval: tuple[tuple[str, str], ...] = ()
    segmenter: SegmentTrainConfig = SegmentTrainConfig()
    segmenter_family: str = "unet"
    stardist: StardistTrainConfig = StardistTrainConfig()
    gan: GanSettings = GanSettings()
    elastic_alpha: float = 6.0
    elastic_sigma: float = 16.0
    models_dir: str | None = None
    ours_models: str | None = None
    rp2p_models: str | None = None
    pcyclegan_models: str | None = None
    ours_require_seed: bool = False
    sensor_noise: bool = True
    ours_margin: int = 0

    def __post_init__(self):
        conditions = tuple(parse_condition(c) for c in self.conditions)
        if not conditions or len(set(conditions)) != len(conditions):
            raise ValueError(
                f"`conditions` must be distinct and non-empty. Received: conditions={self.conditions}"
            )
        object.__setattr__(self, "conditions", conditions)
        for name in ("n_train", "seeds", "synth_shape"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.n_train or min(self.n_train) < 1 or len(set(self.n_train)) != len(self.n_train):
            raise ValueError(f"`n_train` must be distinct ints >= 1. Received: n_train={self.n_train}")
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct ints >= 0. Received: seeds={self.seeds}")
        if self.ours_margin < 0:
            raise ValueError(f"`ours_margin` must be >= 0. Received: ours_margin={self.ours_margin}")
        if self.n_synthetic < 1:
            raise ValueError(f"`n_synthetic` must be >= 1. Received: n_synthetic={self.n_synthetic}")
        if self.segmenter_family not in FAMILIES:
            raise ValueError(
                f"`segmenter_family` must be one of {FAMILIES}. "
                f"Received: segmenter_family={self.segmenter_family!r}"
            )
        ndim = self.ndim
        if len(self.synth_shape) != ndim or self.gan.ndim != ndim:
            field = "segmenter" if self.segmenter_family == "unet" else "stardist"
            raise ValueError(
                "The segmenter patch, the GAN patch and the synthetic canvas must have the same ndim. "
                f"Received: {field}.patch_shape={self.segmenter_config.patch_shape}, "
                f"gan.patch_shape={self.gan.patch_shape}, synth_shape={self.synth_shape}"
            )
        divisor = 2**self.gan.depth
        if any(s % divisor for s in self.synth_shape):
            raise ValueError(
                f"`synth_shape` must be a multiple of the generators' down-sampling {divisor} per axis. "
                f"Received: synth_shape={self.synth_shape}"
            )
        for name in ("max_val_images", "max_test_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0 (0 = all). Received: {name}={getattr(self, name)}")
        extra = tuple((str(n), str(d)) for n, d in self.extra_eval)
        names = [n for n, _ in extra]
        reserved = {"val", "test"}
        if len(set(names)) != len(names) or reserved & set(names) or any(not n.isidentifier() for n in names):
            raise ValueError(
                "`extra_eval` names must be distinct identifiers other than 'val' and 'test'. "
                f"Received: extra_eval={self.extra_eval}"
            )
        object.__setattr__(self, "extra_eval", extra)
        if not (self.elastic_alpha >= 0 and self.elastic_sigma > 0):
            raise ValueError(
                "`elastic_alpha` must be >= 0 and `elastic_sigma` > 0. "
                f"Received: elastic_alpha={self.elastic_alpha}, elastic_sigma={self.elastic_sigma}"
            )

    @property
    def segmenter_config(self) -> SegmentTrainConfig | StardistTrainConfig:
        """The training config of the chosen `segmenter_family`."""
        return self.segmenter if self.segmenter_family == "unet" else self.stardist

    @property
    def ndim(self) -> int:
        return self.segmenter_config.ndim


def full_preset(data_root: str, workdir: str) -> ExperimentConfig:
    """Table I on BBBC039 with the 20 training images, 4 conditions x 3 seeds (a few hours on 2 cores).

    Segmenter: 3-class U-Net, 16 base filters, depth 4, 128x128 patches, batch 4, 1,500 steps
    (about 14 passes over the 20 images' pixels), validation every 300 steps (model selection
    on val instance F1). GANs: 8-filter U-Nets on 128x128 patches, 3,000 steps each. 200
    synthetic 256x256 samples per condition, drawn with probability 0.5 per patch
    (`SegmentTrainConfig.extra_fraction`).

    Cost, from CPU time per step measured on this project's 2-core machine: segmenter 0.48 s
    per step and 1.2 s per 520x696 prediction, so ~15 CPU-min per cell (12 cells); CycleGAN
    stages ~0.7 s per step (3 runs), pix2pix far less; synthesis ~20 min. About 5 CPU-hours,
    i.e. roughly 3-4 h on 2 idle cores.

    StarDist (`segmenter_family="stardist"`): StarDist's default 2D network (U-Net backbone,
    32 base filters, depth 3; 32 rays, grid 2x2), 128x128 patches, batch 4, 1,000 steps at a
    cosine-decayed lr 1e-3, validation every 250 steps, StarDist's default thresholds (0.5,
    0.4). Measured on the shared 2-core machine: 0.51 CPU-s per step (0.21 with 16 filters),
    ~15 CPU-s per validation of the 10 val images, so ~10 CPU-min of training per cell, plus
    ~1.5 s per test image. Tuning the thresholds on val (`stardist.optimize_thresholds`) cost
    ~4 more CPU-min per cell for +0.001 val instance F1 on the "none" cell, so it is off here.
    """
    return ExperimentConfig(
        data_root=data_root,
        workdir=workdir,
        segmenter=SegmentTrainConfig(
            network=SegmenterConfig(base_filters=16, depth=4),
            patch_shape=(128, 128),
            batch_size=4,
            steps=1500,
            eval_every=300,
            precision="float32",
        ),
        stardist=StardistTrainConfig(
            patch_shape=(128, 128),
            batch_size=4,
            steps=1000,
            eval_every=250,
            n_rays=32,
            grid=(2, 2),
            unet_n_filter_base=32,
            unet_n_depth=3,
            lr=1e-3,
            optimize_thresholds=False,
        ),
        gan=GanSettings(),
    )


def smoke_preset(data_root: str, workdir: str) -> ExperimentConfig:
    """Tiny everything: 2 real images, 64x64 patches, 3 GAN steps, 4 synthetic samples, 1 seed.

    It proves that every condition runs end to end and that the report is written; its
    numbers mean nothing (StarDist, without batch norm, finds no nucleus in 30 steps: its F1
    is 0, where the U-Net's is visibly above 0).
    """
    return ExperimentConfig(
        data_root=data_root,
        workdir=workdir,
        n_train=(2,),
        seeds=(0,),
        n_synthetic=4,
        synth_shape=(64, 64),
        max_val_images=1,
        max_test_images=2,
        # 30 steps at lr 5e-3 are enough for a visible (non-zero) F1 on BBBC039.
        segmenter=SegmentTrainConfig(
            network=SegmenterConfig(base_filters=8, depth=2),
            patch_shape=(64, 64),
            batch_size=4,
            steps=30,
            eval_every=15,
            lr=5e-3,
            precision="float32",
        ),
        stardist=StardistTrainConfig(
            patch_shape=(64, 64),
            batch_size=4,
            steps=30,
            eval_every=15,
            n_rays=16,
            grid=(2, 2),
            unet_n_filter_base=8,
            unet_n_depth=2,
            lr=5e-3,
            optimize_thresholds=False,
        ),
        gan=GanSettings(
            patch_shape=(64, 64),
            batch_size=1,
            base_filters=4,
            depth=2,
            d_filters=4,
            d_layers=1,
            stage1_steps=3,
            stage2_steps=3,
            stage3_steps=3,
            pcyclegan_steps=3,
            precision="float32",
            checkpoint_every=3,
        ),
    )


def preset(name: str, data_root: str, workdir: str) -> ExperimentConfig:
    """The named preset ("full" or "smoke")."""
    if name == "full":
        return full_preset(data_root, workdir)
    if name == "smoke":
        return smoke_preset(data_root, workdir)
    raise ValueError(f"`preset` must be one of {PRESETS}. Received: preset={name!r}")


def with_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of a (nested) frozen config with dotted-path fields replaced.

    >>> cfg = with_overrides(smoke_preset("d", "w"), {"segmenter.steps": 40, "seeds": (0, 1)})
    >>> cfg.segmenter.steps, cfg.seeds
    (40, (0, 1))

    Raises:
        ValueError: a path names no field.
    """
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(config)}
    for path, value in overrides.items():
        head, _, rest = path.partition(".")
        if head not in names:
            raise ValueError(
                f"No field {head!r} in {type(config).__name__} (fields: {sorted(names)}). Received: {path}"
            )
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = with_overrides(direct.get(head, getattr(config, head)), sub)
    return dataclasses.replace(config, **direct)


def compact_record(record: Mapping[str, Any]) -> dict:
    """A settings record without the `LATER_SETTINGS` that hold the value their absence means."""
    record = json.loads(json.dumps(record))
    for path, absent in LATER_SETTINGS:
        *parents, leaf = path
        holder = record
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and leaf in holder and holder[leaf] == absent:
            del holder[leaf]
    return record


def _models_by_content(record: dict) -> dict:
    """Version 0 -> 1: generator folders move from path settings to "models" (content unknown)."""
    models, paths = {}, {}
    for field in MODEL_FIELDS:
        path = record.pop(field, None)
        if path:
            models[field], paths[field] = UNKNOWN_HASH, path
    if models:
        record["models"], record["model_paths"] = models, paths
    return record


# _MIGRATIONS[v] turns a version-v record into a version-(v + 1) one.
_MIGRATIONS = (_models_by_content,)


def migrate(loaded: Mapping[str, Any]) -> dict:
    """A workdir's experiment.json of any version, as this version's `runner.settings_record` writes it.

    Old records are brought up step by step (`_MIGRATIONS`), then compacted (`compact_record`),
    so that settings added since compare as absent. The input is not modified.

    Raises:
        ValueError: the record is of a newer version than this code knows.
    """
    record = json.loads(json.dumps(dict(loaded)))
    version = record.pop("config_version", 0)
    if not isinstance(version, int) or not 0 <= version <= CONFIG_VERSION:
        raise ValueError(
            f"`config_version` must be an int in [0, {CONFIG_VERSION}] (a newer nucgen wrote it?). "
            f"Received: config_version={version!r}"
        )
    for step in _MIGRATIONS[version:]:
        record = step(record)
    record["config_version"] = CONFIG_VERSION
    return compact_record(record)
