"""Parametric nucleus phantoms: label masks and simulated fluorescence images, any ndim.

- `parametric`: ellipsoid nuclei around seed points and a widefield image model; the
  built-in example of `nucgen preview` and the paper's "parametric model" baseline masks.
- `nuclei` + `imaging`: the openly labelled, simulated stand-in for BBBC024 (synthetic 3D
  HL60 nuclei, 4 clustering levels, high and low SNR), which cannot be downloaded here:
  deformed nuclei placed with a clustering probability, touching and squeezed but never
  overlapping, with chromatin texture, an anisotropic PSF and Poisson + read noise.
  `nucgen_tf.recipes.phantom3d` writes the data set.
"""

from nucgen_tf.phantoms.imaging import (
    SNR_RANGES,
    SNR_SETTINGS,
    ImagingSetting,
    TextureConfig,
    chromatin_density,
    measure_snr,
    phantom_volume,
    render_image,
)
from nucgen_tf.phantoms.nuclei import (
    CLUSTERING_LEVELS,
    DEFAULT_SHAPE_2D,
    DEFAULT_SHAPE_3D,
    DEFAULT_SPACING_3D,
    DeformedEllipsoid,
    PhantomConfig,
    default_config,
    place_nuclei,
    reference_directions,
    touching_fraction,
)
from nucgen_tf.phantoms.parametric import (
    EXAMPLE_SHAPE_2D,
    EXAMPLE_SHAPE_3D,
    EXAMPLE_SPACING_3D,
    ellipsoid_labels,
    example,
    fluorescence_image,
    form_image,
    random_rotations,
)
from nucgen_tf.phantoms.polygons import (
    PolygonConfig,
    StarShape,
    equivalent_radii,
    fit_polygon_config,
    fit_spacing,
    polygon_labels,
    random_star_shape,
)

__all__ = [
    "CLUSTERING_LEVELS",
    "DEFAULT_SHAPE_2D",
    "DEFAULT_SHAPE_3D",
    "DEFAULT_SPACING_3D",
    "EXAMPLE_SHAPE_2D",
    "EXAMPLE_SHAPE_3D",
    "EXAMPLE_SPACING_3D",
    "SNR_RANGES",
    "SNR_SETTINGS",
    "DeformedEllipsoid",
    "ImagingSetting",
    "PhantomConfig",
    "PolygonConfig",
    "StarShape",
    "TextureConfig",
    "chromatin_density",
    "default_config",
    "ellipsoid_labels",
    "equivalent_radii",
    "example",
    "fit_polygon_config",
    "fit_spacing",
    "fluorescence_image",
    "form_image",
    "measure_snr",
    "phantom_volume",
    "place_nuclei",
    "polygon_labels",
    "random_rotations",
    "random_star_shape",
    "reference_directions",
    "render_image",
    "touching_fraction",
]
