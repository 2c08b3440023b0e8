"""The two baselines of Table I: "p + CycleGAN" (Mahmood et al. 2019) and "r + p2p" (Bailo et al. 2019).

p + CycleGAN: parametric masks (random star-convex polygons, `nucgen_tf.phantoms.polygons`,
sizes and counts fitted to the real training masks) rendered as the 4-channel colored mask
+ boundary, and real images, are two UNPAIRED domains of a CycleGAN (`models.gan.CycleGAN`,
the same networks and losses as our stage 1). It is trained as a row of the stage table
(`trainers.stages.train` with `StageConfig(stage="p+CycleGAN")`, its data in
`nucgen_tf.data.polygon_masks`), so every engine option of the stages reaches it. Its mask ->
image generator then paints images on new parametric masks (`generate_polygon_cyclegan`).
Nothing ties a painted nucleus to its mask but the cycle loss, which is the weakness the
paper points out (Sec. II-C, Fig. 4).

r + p2p: real training masks under geometric transforms (random crop to the canvas, flips,
90-degree rotations, elastic deformation) go through the pix2pix mask -> image generator
(our stage 3, trained on the real pairs), giving new aligned pairs whose nucleus shapes and
arrangements are those of the real masks.

3D: both work on any ndim. On an anisotropic grid (a Z step coarser than the XY pixel,
as in BBBC024 and the phantom3d set) the relative pixel size is fitted to the real masks
(`phantoms.polygons.fit_spacing`; () on isotropic data such as BBBC039), so parametric
nuclei are flattened along Z like the real ones and the elastic field is smooth and strong
in physical units, not in pixels.

Both write the layout every other tool reads (`images/<name>.tif` uint16 on the training
data's intensity scale + `masks/<name>.tif`), one file pair per sample, atomically, so a
rerun skips finished samples. Sample i draws from numpy SeedSequence([seed, i, stream]).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np
from absl import logging
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from nucgen_tf import io
from nucgen_tf.config import from_dict
from nucgen_tf.data.polygon_masks import fitted_polygons
from nucgen_tf.phantoms.polygons import PolygonConfig, fit_spacing, polygon_labels
from nucgen_tf.trainers.config import POLYGON_CYCLEGAN

PathLike = str | pathlib.Path

# Streams mixed into per-sample seeds, so that the baselines never share random numbers (the
# p+CycleGAN training masks have theirs in `data.polygon_masks`).
_POLYGON_SAMPLE_STREAM = 0x9018
_RP2P_STREAM = 0x2992
# Samples that get a preview PNG (image + contours | mask), for a look at what was trained on.
_PREVIEWS = 8


def real_labels(data: PathLike) -> list[np.ndarray]:
    """Every label mask of a data folder, in name order."""
    return [io.read_labels(p.mask_path) for p in io.list_pairs(data)]


# ----- generation ------------------------------------------------------------------------------


def _done(out: pathlib.Path, name: str) -> bool:
    return (out / "images" / f"{name}.tif").is_file() and (out / "masks" / f"{name}.tif").is_file()


def _sample_name(index: int) -> str:
    from nucgen_tf.synthesis.writers import sample_name

    return sample_name(index)


def generate_polygon_cyclegan(
    model_dir: PathLike,
    out: PathLike,
    n: int,
    shape: Sequence[int],
    seed: int = 0,
    data: PathLike | None = None,
) -> pathlib.Path:
    """Writes `n` (image, mask) pairs: new parametric masks painted by the p+CycleGAN generator.

    Args:
        model_dir: the export of a "p+CycleGAN" stage (`trainers.stages.train`).
        out: output folder (images/, masks/, previews/).
        n: samples.
        shape: canvas shape (a multiple of the generator's divisor).
        seed: base seed.
        data: real folder to fit the parametric masks to; default the settings saved in the
            manifest (fitted to the training data), moved to `shape`.

    Returns:
        `out`.
    """
    from nucgen_tf.synthesis.models import load_image_stage
    from nucgen_tf.synthesis.paint import paint_labels, write_pair
    from nucgen_tf.synthesis.pipeline import ChainSettings
    from nucgen_tf.synthesis.writers import Layout

    out = pathlib.Path(out)
    painter = load_image_stage(model_dir, stage=POLYGON_CYCLEGAN)
    shape = tuple(int(s) for s in shape)
    if data is not None:
        polygons = fitted_polygons(data, shape)
    else:
        saved = from_dict(PolygonConfig, painter.model.manifest["polygons"])
        # Counts scale with the canvas area; sizes and shapes stay.
        scale = float(np.prod(shape)) / float(np.prod(saved.shape))
        counts = (int(np.floor(saved.n_nuclei[0] * scale)), max(int(np.ceil(saved.n_nuclei[1] * scale)), 1))
        polygons = dataclasses.replace(saved, shape=shape, n_nuclei=counts)
    settings = ChainSettings(tile=(1024,), overlap=(64,), sensor_noise=False)  # it has no fitted camera
    todo = [i for i in range(n) if not _done(out, _sample_name(i))]
    logging.info("p+CycleGAN: %d of %d samples to generate in %s (%s)", len(todo), n, out, polygons)
    for i in todo:
        rng = np.random.default_rng([seed, i, _POLYGON_SAMPLE_STREAM])
        labels = polygon_labels(polygons, rng)
        image = paint_labels(painter, labels, rng, rng, settings).image
        write_pair(Layout(out), _sample_name(i), image, labels, preview=i < _PREVIEWS)
    return out


def elastic_displacement(
    shape: Sequence[int],
    alpha: float,
    sigma: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """The random displacement field of `elastic_labels`, one (*shape) array in pixels per axis.

    Along each axis: white noise smoothed by a Gaussian of `sigma`, scaled so that its largest
    magnitude is `alpha`, both in physical units (pixels times `spacing`; pixels without it).
    On a grid with a coarse Z step the field is as smooth and as strong in space as along X,
    i.e. spans and moves fewer pixels along Z.
    """
    shape = tuple(int(s) for s in shape)
    size = np.asarray(spacing, np.float64) if spacing else np.ones(len(shape))
    if size.shape != (len(shape),) or not np.all(size > 0):
        raise ValueError(
            f"`spacing` must be {len(shape)} positive numbers (one per axis of shape {shape}). "
            f"Received: spacing={spacing}"
        )
    smooth = tuple(float(sigma / s) for s in size)
    fields = []
    for axis in range(len(shape)):
        field = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, shape), smooth, mode="reflect")
        field *= alpha / size[axis] / max(float(np.abs(field).max()), 1e-12)
        fields.append(field)
    return fields


def elastic_labels(
    labels: np.ndarray,
    alpha: float,
    sigma: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Elastic deformation of a label mask (Simard et al. 2003), any ndim, nearest-neighbour.

    The displacement is `elastic_displacement` (`alpha`, `sigma` physical with `spacing`).
    Each label keeps its largest face-connected piece (a fold can cut off a sliver) and labels
    are made consecutive.
    """
    labels = np.asarray(labels)
    if alpha == 0 or labels.max(initial=0) == 0:
        return relabel_sequential(labels.astype(np.int32))[0].astype(np.int32)
    fields = elastic_displacement(labels.shape, alpha, sigma, rng, spacing)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in labels.shape), indexing="ij")
    coords = [axis_grid + field for axis_grid, field in zip(grid, fields)]
    warped = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0).astype(np.int32)
    structure = ndimage.generate_binary_structure(warped.ndim, 1)
    for index, window in enumerate(ndimage.find_objects(warped)):
        if window is None:
            continue
        member = warped[window] == index + 1
        pieces, count = ndimage.label(member, structure=structure)
        if count > 1:
            largest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
            warped[window][member & (pieces != largest)] = 0
    return relabel_sequential(warped)[0].astype(np.int32)


def transformed_mask(
    labels: np.ndarray,
    shape: Sequence[int],
    alpha: float,
    sigma: float,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """A random crop (zero-padded where the mask is smaller) of `shape`, flipped along random
    axes, rotated by a random multiple of 90 degrees in YX (square YX only) and elastically
    deformed (`alpha`, `sigma` physical with `spacing`, see `elastic_labels`); labels
    consecutive."""
    labels = np.asarray(labels)
    shape = tuple(int(s) for s in shape)
    if labels.ndim != len(shape):
        raise ValueError(f"`shape` must have {labels.ndim} sizes. Received: shape={shape}")
    pad = [(0, max(s - n, 0)) for s, n in zip(shape, labels.shape)]
    if any(p for _, p in pad):
        labels = np.pad(labels, pad)
    start = [int(rng.integers(0, n - s + 1)) for s, n in zip(shape, labels.shape)]
    crop = labels[tuple(slice(a, a + s) for a, s in zip(start, shape))]
    for axis in range(crop.ndim):
        if rng.uniform() < 0.5:
            crop = np.flip(crop, axis)
    if shape[-1] == shape[-2]:
        crop = np.rot90(crop, int(rng.integers(4)), axes=(-2, -1))
    return elastic_labels(np.ascontiguousarray(crop), alpha, sigma, rng, spacing)


def generate_real_pix2pix(
    model_dir: PathLike,
    data: PathLike,
    out: PathLike,
    n: int,
    shape: Sequence[int],
    seed: int = 0,
    alpha: float = 6.0,
    sigma: float = 16.0,
    spacing: Sequence[float] | None = None,
    sensor_noise: bool = True,
) -> pathlib.Path:
    """Writes `n` (image, mask) pairs: transformed real masks through the pix2pix generator.

    Sample i transforms real mask i mod N (so every training mask is used equally often)
    with `transformed_mask`, re-colors it and runs the stage-3 generator on it.

    Args:
        model_dir: an exported stage-3 (mask -> image) generator.
        data: the real training folder whose masks are transformed.
        out: output folder (images/, masks/, previews/).
        n: samples.
        shape: canvas shape (a multiple of the generator's divisor).
        seed: base seed.
        alpha, sigma: elastic deformation (see `elastic_labels`).
        spacing: physical pixel size per axis for the elastic field; None fits it to the
            real masks (`fit_spacing`: () on isotropic data).
        sensor_noise: add the camera noise of the generator's manifest (`sensor`), when it
            has one (a warning says when it has none), as synthesis does.

    Returns:
        `out`.
    """
    from nucgen_tf.synthesis.models import load_image_stage
    from nucgen_tf.synthesis.paint import paint_labels, write_pair
    from nucgen_tf.synthesis.pipeline import ChainSettings
    from nucgen_tf.synthesis.writers import Layout

    out = pathlib.Path(out)
    painter = load_image_stage(model_dir)
    if sensor_noise and painter.sensor is None:
        logging.warning("%s has no fitted sensor model: r+p2p images stay noise-free", model_dir)
    settings = ChainSettings(tile=(1024,), overlap=(64,), sensor_noise=sensor_noise)
    masks = real_labels(data)
    spacing = fit_spacing(masks) if spacing is None else tuple(spacing)
    todo = [i for i in range(n) if not _done(out, _sample_name(i))]
    logging.info(
        "r+p2p: %d of %d samples to generate in %s from %d real masks (spacing %s)",
        len(todo), n, out, len(masks), spacing or "isotropic",
    )  # fmt: skip
    for i in todo:
        rng = np.random.default_rng([seed, i, _RP2P_STREAM])
        labels = transformed_mask(masks[i % len(masks)], shape, alpha, sigma, rng, spacing)
        # One stream for the coloring and then the camera noise, as before `paint_labels` existed.
        image = paint_labels(painter, labels, rng, rng, settings).image
        write_pair(Layout(out), _sample_name(i), image, labels, preview=i < _PREVIEWS)
    return out
