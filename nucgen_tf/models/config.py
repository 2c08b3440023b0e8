"""Frozen dataclass configs of the networks and of the GAN objectives.

They live beside the models rather than in `nucgen_tf/config.py` because only the model
builders read them; `nucgen_tf.config.to_dict` / `from_dict` serialize them like any other
config. Like the shared configs they validate in `__post_init__`, so that a bad value fails
where it is written and not while a graph is being traced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nucgen_tf.losses import ADVERSARIAL_KINDS
from nucgen_tf.models.augment import parse_policies

UPSAMPLING_KINDS = ("transpose", "nearest")
# Generator architectures and their default kernel sizes (`GeneratorConfig.kernel_size=None`).
GENERATOR_ARCHITECTURES = {"unet3x3": 3, "pix2pix": 4, "resnet": 3}


def _at_least(name: str, value: float, bound: float) -> None:
    if not value >= bound:
        raise ValueError(f"`{name}` must be >= {bound}. Received: {name}={value!r}")


def normalize_strides(strides: Any, levels: int, name: str = "strides") -> tuple:
    """Nested tuples of per-level strides; each level an int or a tuple of ints in {1, 2}.

    An empty value means "isotropic stride 2 at every level" and stays empty, so that the
    default serializes as `[]`. Lists (as read back from JSON) become tuples.

    Args:
        strides: `()`/`None`, or one entry per level: an int, or a per-axis sequence.
        levels: the number of levels the network has (generator depth, discriminator layers).
        name: the field name used in error messages.

    Returns:
        A tuple with one int or tuple-of-ints per level, or `()`.
    """
    if strides is None or len(strides) == 0:
        return ()
    if len(strides) != levels:
        raise ValueError(
            f"`{name}` needs one entry per level ({levels}). Received: {name}={strides!r}"
        )
    out = []
    for level in strides:
        if isinstance(level, int):
            values: tuple = (level,)
            out.append(level)
        else:
            values = tuple(int(v) for v in level)
            out.append(values)
        if not values or any(v not in (1, 2) for v in values):
            raise ValueError(f"Every stride in `{name}` must be 1 or 2. Received: {name}={strides!r}")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """U-Net encoder-decoder generator (paper Sec. III: skip connections, tanh output).

    Attributes:
        architecture: "unet3x3" (the project's U-Net: a full-resolution convolution, then
            per level a strided and a plain convolution, 3x3 by default) or "pix2pix" (Isola
            et al.'s U-Net: one 4x4 stride-2 convolution per level, no full-resolution
            convolution; 3-7x fewer convolution FLOPs at the same width, so deeper nets fit the
            same budget) or "resnet" (Zhu et al.'s CycleGAN generator: a 7x7 stem, `depth`
            stride-2 convolutions, `n_residual_blocks` residual blocks, `depth` up-sampling
            steps, a 7x7 output convolution; the reference has depth 2). See
            `nucgen_tf.models.generators`.
        base_filters: filters of the first level; unet3x3's and resnet's level `i` have
            `base_filters * 2**i` (level 0 = full resolution), pix2pix's
            `base_filters * 2**(i - 1)` (level 1 = half).
        depth: number of stride-2 (or per-axis) down-sampling levels; patch sizes must be
            divisible by `2**depth` per axis (by the product of `strides` when given).
        max_filters: cap on the filters of the deep levels (bounds 3D memory).
        kernel_size: spatial kernel size of every convolution; None picks the
            architecture's (3 for unet3x3, 4 for pix2pix) and is stored resolved, so
            `dataclasses.replace(config, architecture=...)` keeps the old kernel unless it
            also passes `kernel_size=None` (as `commands.flagsets.stage_config_from_flags` does).
        upsampling: "transpose" (transposed convolution, pix2pix) or "nearest"
            (nearest up-sampling + convolution, no checkerboard artifacts).
        strides: `()` for isotropic stride 2, or one entry per level, each an int or a
            per-axis tuple such as `(1, 2, 2)` so an anisotropic Z axis is not over-reduced
            (see `nucgen_tf.models.layers.level_strides`).
        full_resolution_norm: instance norm (and ReLU) also in the last, full-resolution
            decoder level. Off by default: it makes an empty or sparse input come out flat
            gray (stage 1). On for stage 2, whose generators otherwise settled on painting
            the all-background median of the L1 terms in every short CPU run we made.
            unet3x3 and resnet only (pix2pix has no full-resolution decoder level).
        dropout: dropout rate in the 3 innermost decoder levels while training (pix2pix
            used 0.5), in every residual block for resnet (as the reference CycleGAN's
            `--use_dropout`); 0 = none.
        noise_channels: extra input channels of standard Gaussian noise, drawn by the
            caller, that every encoder and decoder level adds with a learned per-channel
            scale starting at 0 (`layers.NoiseInjection`): varied texture for one condition
            (stage 3). The network then takes `in_channels + noise_channels` channels.
            resnet injects it in every residual block (the trunk) only.
        n_residual_blocks: resnet only: residual blocks at the bottleneck. The reference
            uses 9 at 256 px and 6 at 128 px; the default is 6 because the presets train on
            128 px patches and the blocks are most of the net's FLOPs (at depth 2 each block
            costs as much as all the down- and up-sampling convolutions together), which
            counts on 2 CPU cores.
    """

    architecture: str = "unet3x3"
    base_filters: int = 16
    depth: int = 4
    max_filters: int = 256
    kernel_size: int | None = None
    upsampling: str = "transpose"
    strides: tuple = ()
    full_resolution_norm: bool = False
    dropout: float = 0.0
    noise_channels: int = 0
    n_residual_blocks: int = 6

    def __post_init__(self):
        if self.architecture not in GENERATOR_ARCHITECTURES:
            raise ValueError(
                f"`architecture` must be one of {tuple(GENERATOR_ARCHITECTURES)}. "
                f"Received: architecture={self.architecture!r}"
            )
        if self.kernel_size is None:
            object.__setattr__(self, "kernel_size", GENERATOR_ARCHITECTURES[self.architecture])
        _at_least("base_filters", self.base_filters, 1)
        _at_least("depth", self.depth, 1)
        _at_least("kernel_size", self.kernel_size, 1)
        _at_least("noise_channels", self.noise_channels, 0)
        _at_least("n_residual_blocks", self.n_residual_blocks, 1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={self.dropout!r}")
        if self.max_filters < self.base_filters:
            raise ValueError(
                "`max_filters` must be >= `base_filters`. Received: "
                f"max_filters={self.max_filters}, base_filters={self.base_filters}"
            )
        if self.upsampling not in UPSAMPLING_KINDS:
            raise ValueError(
                f"`upsampling` must be one of {UPSAMPLING_KINDS}. Received: upsampling={self.upsampling!r}"
            )
        if self.architecture == "pix2pix" and self.full_resolution_norm:
            raise ValueError(
                "`full_resolution_norm` is a unet3x3 option: pix2pix has no full-resolution decoder "
                "level. Received: architecture='pix2pix', full_resolution_norm=True"
            )
        object.__setattr__(self, "strides", normalize_strides(self.strides, self.depth))


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Markovian PatchGAN discriminator (pix2pix; 70x70 receptive field at `n_layers=3`).

    Attributes:
        base_filters: filters of the first convolution.
        n_layers: number of stride-2 convolutions; the patch grid is the input size over
            `2**n_layers` per axis.
        max_filters: cap on the filters (pix2pix caps at 8 x base).
        kernel_size: spatial kernel size (4 in pix2pix).
        strides: `()` for isotropic stride 2, or one entry per stride-2 layer (int or
            per-axis tuple), as in `GeneratorConfig.strides`.
        scales: PatchGANs of this configuration, the k-th judging the input average-pooled
            k times (pix2pixHD's multi-scale discriminator: the coarse ones see whole nuclei
            and their arrangement, the full-resolution one texture and edges); their
            adversarial losses are averaged. Each pooling halves the axes that the FIRST
            strided layer halves (an anisotropic Z that it keeps is never pooled). 1: one
            PatchGAN, the network of earlier versions.
    """

    base_filters: int = 16
    n_layers: int = 3
    max_filters: int = 128
    kernel_size: int = 4
    strides: tuple = ()
    full_resolution_norm: bool = False
    scales: int = 1

    def __post_init__(self):
        _at_least("base_filters", self.base_filters, 1)
        _at_least("n_layers", self.n_layers, 1)
        _at_least("scales", self.scales, 1)
        _at_least("kernel_size", self.kernel_size, 1)
        if self.max_filters < self.base_filters:
            raise ValueError(
                "`max_filters` must be >= `base_filters`. Received: "
                f"max_filters={self.max_filters}, base_filters={self.base_filters}"
            )
        object.__setattr__(self, "strides", normalize_strides(self.strides, self.n_layers))


@dataclasses.dataclass(frozen=True)
class GanLossConfig:
    """Loss weights, adversarial criterion and image pool of the three GAN models.

    The paper says "Mean-Absolute-Error loss is used for all the stages", so the default
    adversarial criterion is MAE on the discriminator logits (|D(x) - target|); "lsgan"
    (the reference CycleGAN's MSE) and "bce" are kept for comparison.

    Attributes:
        adversarial: "mae", "lsgan" or "bce".
        lambda_cycle: weight of each cycle-consistency L1 term (CycleGAN, stages 1-2).
        lambda_identity: identity weight as a FRACTION of `lambda_cycle`, as the reference
            CycleGAN's `--lambda_identity 0.5`; the effective weight is
            `lambda_cycle * lambda_identity`. Ignored (with a log line) when a generator's
            input and output channels differ, as in stage 2 (3 <-> 4 channels).
        lambda_l1: weight of the pix2pix L1 term (stage 3).
        pool_size: fake images kept per discriminator (CycleGAN models); 0 disables the
            pool. Pix2Pix, like the reference, uses no pool.
        pool_seed: seed of the pools' random generators (deterministic resume), and + 2 of
            the DiffAugment generator; None draws non-deterministic seeds.
        instance_noise: std of Gaussian noise added to every discriminator input while
            training (Sonderby et al. 2016). Stage-2 masks are exactly +-1 per channel, which a
            discriminator tells from any tanh output at once; the noise hides that shortcut.
            (The CycleGAN models only; Pix2Pix never used it.)
        lambda_feature_matching: weight of pix2pixHD's discriminator feature matching in the
            generator objective (Pix2Pix only; refused by the CycleGAN models, which have no
            real partner for a fake): the mean over every intermediate discriminator layer
            of every scale of mean |D_l(x, y) - D_l(x, G(x))|. pix2pixHD sums its layers
            with weight 4 / (n_layers + 1), about 4x this mean: its lambda 10 is ~40 here.
            0 = off.
        diff_augment: DiffAugment policies applied to every discriminator input, real and
            fake, in both updates (`nucgen_tf.models.augment`): any of "color",
            "translation", "cutout"; a tuple, or a comma-separated string. Empty = off.
        r1_gamma: R1 penalty (Mescheder et al. 2018) gamma / 2 * E ||grad_x D(x_real)||^2 in
            the discriminator update, per patch logit (see `nucgen_tf.losses.r1_penalty`).
            0 = off.
    """

    adversarial: str = "mae"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    lambda_l1: float = 100.0
    pool_size: int = 50
    pool_seed: int | None = 0
    instance_noise: float = 0.0
    lambda_feature_matching: float = 0.0
    diff_augment: tuple[str, ...] = ()
    r1_gamma: float = 0.0

    def __post_init__(self):
        if self.adversarial not in ADVERSARIAL_KINDS:
            raise ValueError(
                f"`adversarial` must be one of {ADVERSARIAL_KINDS}. "
                f"Received: adversarial={self.adversarial!r}"
            )
        for name in ("lambda_cycle", "lambda_identity", "lambda_l1"):
            _at_least(name, getattr(self, name), 0)
        _at_least("pool_size", self.pool_size, 0)
        _at_least("instance_noise", self.instance_noise, 0)
        _at_least("lambda_feature_matching", self.lambda_feature_matching, 0)
        _at_least("r1_gamma", self.r1_gamma, 0)
        object.__setattr__(self, "diff_augment", parse_policies(self.diff_augment))
