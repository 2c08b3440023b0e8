"""tf.data pipelines of training patches with every representation rendered on the fly.

Per file (once, kept in memory): read, normalize, color (`sources.load_arrays`).
Per patch: a random crop and flip/rot90 of the image and its labels in pure TF
(`augment`), then ONE `tf.numpy_function` that renders the requested representations
from the cropped labels (`render_patch`). Rendering after the crop, from the crop's own
boxes, means the box, seed and ellipse maps always describe exactly what the patch shows
(a nucleus cut by the border gets the box of its visible part).

Pipeline order (STYLE section 5, adapted): `sources.load_arrays` reads, normalizes and
colors every file once in numpy; those in-memory samples are the cache. Then: sample
indices (a stateless permutation per epoch when training, name order for eval) ->
map(look up sample + crop + augment + render, AUTOTUNE, deterministic) ->
batch(drop_remainder=True) -> prefetch(AUTOTUNE). Why not `map(load) -> cache ->
shuffle`: a seeded `Dataset.shuffle` draws a new order for every iterator made from the
same dataset, so iterating twice gave different batches; and capturing all samples as
one tensor gets copied into the serialized dataset graph (minutes, and a 2 GB limit).
The per-patch look-up is a `tf.numpy_function` returning the in-memory arrays (about
0.5 ms for a 520 x 696 image).

Determinism: every random choice is a stateless function of (PatchConfig.seed, epoch)
for the file order and of (PatchConfig.seed, element index) for crops and flips, the
index coming from a zipped `Dataset.counter()`, and every map keeps its order. So the
same pipeline iterated twice, or built twice with the same seed, yields identical batches.

Every output is in network range: images in [-1, 1] (see `normalize`), representation
maps `2 * x - 1` of their stored [0, 1] range.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from nucgen_tf import geometry, io
from nucgen_tf.config import NormConfig, PatchConfig, RenderConfig, SeedConfig
from nucgen_tf.data import augment, sources
from nucgen_tf.data.normalize import IntensityStats

# Channels of each representation rendered by `render_patch`, in its output order.
CHANNELS = geometry.CHANNELS
REPRESENTATIONS = geometry.REPRESENTATIONS

# Mixed into per-element numpy seeds so the artificial seed points are independent of the
# patch stream that uses the same (PatchConfig.seed, index) pair.
_SEED_POINT_STREAM = 0x5EED
# Offsets the per-epoch file-permutation seeds from the per-patch seeds.
_SHUFFLE_STREAM = 0x5F3759DF

Source = str | os.PathLike | Sequence[io.ImagePair] | Sequence[sources.Sample]


def render_patch(
    labels: np.ndarray,
    lut: np.ndarray,
    render: RenderConfig,
    outputs: Sequence[str] = REPRESENTATIONS,
) -> dict[str, np.ndarray]:
    """Renders representations of one (cropped, augmented) label patch, in numpy.

    Args:
        labels: (*spatial) int32 labels; ids index `lut`.
        lut: (N + 1,) palette index per label id, from the whole source image.
        render: representation settings.
        outputs: which of `REPRESENTATIONS` to render.

    Returns:
        Dict name -> (*spatial, C) float32 in the stored range [0, 1]:
        "seed_map" (C=1) dots at the boxes' real centres, "box_map" (C=1) Eq. 1 ovals,
        "ellipses" (C=3) full-size ovals in palette colors, "mask" (C=4) palette colors
        plus the boundary class.
    """
    return geometry.render_representations(outputs, render, labels=labels, lut=lut)


def permute_palette(lut: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`lut` with its color classes mapped to a random choice of palette colors.

    Touching nuclei keep distinct colors (a permutation of classes), and a coloring that fits
    the primary colors stays within them, as `geometry.assign_colors` draws them.
    """
    lut = np.asarray(lut)
    used = np.unique(lut[lut >= 0])
    if used.size == 0:
        return lut
    pool = geometry.N_PRIMARY if used.max() < geometry.N_PRIMARY else len(geometry.PALETTE)
    mapping = np.full(len(geometry.PALETTE), -1, np.int64)
    mapping[used] = rng.permutation(pool)[: used.size]
    return np.where(lut >= 0, mapping[np.maximum(lut, 0)], -1).astype(lut.dtype)


def load_samples(
    source: Source,
    ndim: int,
    render: RenderConfig,
    norm: NormConfig,
    stats: IntensityStats | None = None,
    max_files: int | None = None,
) -> list[sources.Sample]:
    """Samples from a folder, a list of `io.ImagePair`, or already loaded `Sample`s."""
    if isinstance(source, (str, os.PathLike)) or (
        len(source) and all(isinstance(s, io.ImagePair) for s in source)
    ):
        return sources.load_arrays(source, ndim, norm, render, stats=stats, max_files=max_files)[0]
    samples = list(source)
    if not samples or not all(isinstance(s, sources.Sample) for s in samples):
        raise ValueError(
            "`source` must be a folder, a non-empty list of io.ImagePair or of sources.Sample. "
            f"Received: {[type(s).__name__ for s in samples][:5]}"
        )
    if max_files is not None:
        samples = samples[:max_files]
    for s in samples:
        if s.ndim != ndim:
            raise ValueError(
                f"Sample {s.name!r} has {s.ndim} dims but the patch has {ndim}. Received: ndim={ndim}"
            )
    return samples


def _index_dataset(n: int, seed: int, training: bool, epochs: int) -> tf.data.Dataset:
    """Sample indices: a fresh stateless permutation per epoch when training, else 0..n-1."""
    if not training:
        return tf.data.Dataset.range(n).repeat(epochs)
    epoch_ds = tf.data.Dataset.counter()
    if epochs > 0:
        epoch_ds = epoch_ds.take(epochs)
    shuffle_seed = (seed ^ _SHUFFLE_STREAM) % 2**63

    def permutation(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(shuffle_seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order)

    return epoch_ds.flat_map(permutation)


def _patch_fn(
    samples: Sequence[sources.Sample],
    patch: PatchConfig,
    render: RenderConfig,
    outputs: tuple[str, ...],
    augmenting: bool,
):
    ndim = patch.ndim
    patch_shape = tuple(patch.patch_shape)

    def load_np(index):
        s = samples[int(index)]
        return s.image, s.labels, s.lut, np.asarray(s.norm_range, np.float32)

    def render_np(labels, lut, seed):
        if augmenting and patch.permute_colors:
            lut = permute_palette(lut, np.random.default_rng(seed))
        rendered = render_patch(labels, lut, render, outputs)
        return tuple(rendered[name] for name in outputs)

    def fn(index, counter):
        image, labels, lut, norm_range = tf.numpy_function(
            load_np, [index], [tf.float32, tf.int32, tf.int32, tf.float32], stateful=False
        )
        image = tf.ensure_shape(image, (None,) * ndim)
        labels = tf.ensure_shape(labels, (None,) * ndim)
        seed = tf.stack([tf.constant(patch.seed % 2**63, tf.int64), counter])
        crop_seed, aug_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        cropped = augment.random_crop({"image": image, "labels": labels}, patch_shape, crop_seed)
        if augmenting and (patch.flips or patch.rot90):
            cropped = augment.random_flip_rot(cropped, ndim, aug_seed, flips=patch.flips, rot90=patch.rot90)
        out = {"image": cropped["image"][..., None], "labels": cropped["labels"]}
        if outputs:
            color_seed = tf.random.stateless_uniform(
                [2], aug_seed, minval=0, maxval=2**31 - 1, dtype=tf.int64
            )
            maps = tf.numpy_function(
                render_np, [cropped["labels"], lut, color_seed], [tf.float32] * len(outputs), stateful=False
            )
            for name, stored in zip(outputs, maps):
                stored = tf.ensure_shape(stored, patch_shape + (CHANNELS[name],))
                out[name] = 2.0 * stored - 1.0
        out["norm_range"] = tf.ensure_shape(norm_range, (2,))
        return out

    return fn


def patch_dataset(
    source: Source,
    patch: PatchConfig,
    render: RenderConfig,
    norm: NormConfig,
    training: bool = True,
    *,
    stats: IntensityStats | None = None,
    max_files: int | None = None,
    outputs: Sequence[str] | None = None,
    epochs: int | None = None,
) -> tf.data.Dataset:
    """Batches of random patches with their representations.

    Args:
        source: a folder with images/ and masks/, a list of `io.ImagePair`, or samples
            from `sources.load_arrays` (already normalized; `norm` and `stats` unused).
        patch: patch shape (fixes ndim), batch size, augmentation and seed.
        render: representation settings.
        norm: intensity normalization settings.
        training: visit the files in a new random order every epoch (a full permutation;
            `patch.shuffle_buffer` is not needed) and flip/rotate patches. Eval pipelines
            (False) visit the files in name order with unaugmented, seeded crops.
        stats: training-set intensity statistics (computed from `source` when None).
        max_files: use only the first `max_files` files (sorted by name).
        outputs: representations to render (default: all of `REPRESENTATIONS`); skip the
            ones a stage does not use to save time.
        epochs: passes over the files; None means forever when training and once otherwise.

    Returns:
        Dataset of dicts: "image" (B, *P, 1) float32 in [-1, 1]; "labels" (B, *P) int32
        (the source's ids, 0 = background); each requested representation, e.g.
        "seed_map" (B, *P, 1), "box_map" (B, *P, 1), "ellipses" (B, *P, 3), "mask"
        (B, *P, 4), float32 in [-1, 1]; "norm_range" (B, 2) float32, the source image's
        raw (lo, hi), for `normalize.denormalize`.
    """
    outputs = geometry.check_outputs(outputs)
    samples = load_samples(source, patch.ndim, render, norm, stats=stats, max_files=max_files)
    if epochs is None:
        epochs = -1 if training else 1
    elif epochs < 1:
        raise ValueError(f"`epochs` must be >= 1 or None (forever). Received: epochs={epochs}")

    ds = tf.data.Dataset.zip(
        _index_dataset(len(samples), patch.seed, training, epochs), tf.data.Dataset.counter()
    )
    ds = ds.map(
        _patch_fn(samples, patch, render, outputs, augmenting=training),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.batch(patch.batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def seed_point_dataset(
    patch: PatchConfig,
    render: RenderConfig,
    seeds: SeedConfig,
    spacing: Sequence[float] | None = None,
) -> tf.data.Dataset:
    """Endless batches of seed-point maps of artificial arrangements (stage 1, domain A).

    Each element draws its arrangement kind uniformly from `seeds.kinds` and its points
    with a numpy generator seeded by (patch.seed, element index), so the stream is
    reproducible and independent of the real-data patch stream.

    Returns:
        Dataset of (B, *P, 1) float32 maps in [-1, 1].
    """
    patch_shape = tuple(patch.patch_shape)
    kinds = tuple(seeds.kinds)

    def draw(index):
        rng = np.random.default_rng([patch.seed % 2**63, int(index), _SEED_POINT_STREAM])
        kind = kinds[int(rng.integers(len(kinds)))]
        points = geometry.arrange_seeds(kind, patch_shape, rng, seeds, spacing=spacing)
        seed_map = geometry.render_seed_map(points, patch_shape, render.seed_radius)
        return np.asarray(seed_map, np.float32).reshape(patch_shape + (1,))

    def draw_tf(index):
        stored = tf.numpy_function(draw, [index], tf.float32, stateful=False)
        return 2.0 * tf.ensure_shape(stored, patch_shape + (1,)) - 1.0

    ds = tf.data.Dataset.counter().map(draw_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(patch.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def unpaired(ds_a: tf.data.Dataset, ds_b: tf.data.Dataset) -> tf.data.Dataset:
    """Zips two independently drawn domains into (a, b) batches for a CycleGAN.

    The pairing carries no meaning: each side comes from its own stream and order.
    """
    return tf.data.Dataset.zip(ds_a, ds_b)


def stage1_dataset(
    source: Source,
    patch: PatchConfig,
    render: RenderConfig,
    norm: NormConfig,
    seeds: SeedConfig,
    training: bool = True,
    *,
    stats: IntensityStats | None = None,
    max_files: int | None = None,
    epochs: int | None = None,
    spacing: Sequence[float] | None = None,
) -> tf.data.Dataset:
    """Stage 1 (CycleGAN): unpaired (artificial seed maps, real box maps), each (B, *P, 1).

    Args:
        source, patch, render, norm, training, stats, max_files, epochs: as
            `patch_dataset` (for the real box-map side).
        seeds: artificial seed arrangement settings for the seed-map side.
        spacing: physical pixel size per axis, for `geometry.arrange_seeds`.
    """
    real = patch_dataset(
        source, patch, render, norm, training, stats=stats, max_files=max_files, outputs=("box_map",),
        epochs=epochs,
    )
    boxes = real.map(lambda d: d["box_map"])
    return unpaired(seed_point_dataset(patch, render, seeds, spacing=spacing), boxes)


def _paired_dataset(
    names: tuple[str, str],
    source: Source,
    patch: PatchConfig,
    render: RenderConfig,
    norm: NormConfig,
    training: bool,
    **kwargs,
) -> tf.data.Dataset:
    """Aligned (names[0], names[1]) batches of `patch_dataset`, rendering only what they use."""
    outputs = tuple(n for n in names if n != "image")
    ds = patch_dataset(source, patch, render, norm, training, outputs=outputs, **kwargs)
    return ds.map(lambda d: (d[names[0]], d[names[1]]))


def stage2_dataset(
    source: Source,
    patch: PatchConfig,
    render: RenderConfig,
    norm: NormConfig,
    training: bool = True,
    *,
    stats: IntensityStats | None = None,
    max_files: int | None = None,
    epochs: int | None = None,
) -> tf.data.Dataset:
    """Stage 2 (paired CycleGAN): aligned (colored ellipses (B, *P, 3), colored mask (B, *P, 4)).

    Arguments as `patch_dataset`.
    """
    return _paired_dataset(
        ("ellipses", "mask"), source, patch, render, norm, training,
        stats=stats, max_files=max_files, epochs=epochs,
    )


def stage3_dataset(
    source: Source,
    patch: PatchConfig,
    render: RenderConfig,
    norm: NormConfig,
    training: bool = True,
    *,
    stats: IntensityStats | None = None,
    max_files: int | None = None,
    epochs: int | None = None,
) -> tf.data.Dataset:
    """Stage 3 (pix2pix): aligned (colored mask (B, *P, 4), image (B, *P, 1)).

    Arguments as `patch_dataset`.
    """
    return _paired_dataset(
        ("mask", "image"), source, patch, render, norm, training,
        stats=stats, max_files=max_files, epochs=epochs,
    )
