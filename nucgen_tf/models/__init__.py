"""Networks (any ndim) and the three GAN models of the coarse-to-fine pipeline.

Stage 1: `CycleGAN` seed map (1 ch) <-> box map (1 ch); stage 2: `PairedCycleGAN` colored
ellipses (3 ch) <-> colored mask + boundary (4 ch); stage 3: `Pix2Pix` colored mask +
boundary (4 ch) -> image (1 ch). Tensors are (B, *spatial, C) float32 in [-1, 1].
"""

from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.models.discriminators import build_discriminator, discriminator_from_config
from nucgen_tf.models.gan import CycleGAN, PairedCycleGAN, Pix2Pix, build_cyclegan, build_pix2pix
from nucgen_tf.models.generators import build_generator, generator_from_config
from nucgen_tf.models.pool import ImagePool
from nucgen_tf.models.schedules import LinearDecay

__all__ = [
    "CycleGAN",
    "DiscriminatorConfig",
    "GanLossConfig",
    "GeneratorConfig",
    "ImagePool",
    "LinearDecay",
    "PairedCycleGAN",
    "Pix2Pix",
    "build_cyclegan",
    "build_discriminator",
    "build_generator",
    "build_pix2pix",
    "discriminator_from_config",
    "generator_from_config",
]
