"""Fixtures shared by the synthesis tests."""

from __future__ import annotations

import pytest

from nucgen_tf.synthesis.models import load_generators
from tests import tiny_generators


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(models folder, loaded chain) of untrained depth-2 2D generators: divisor 4, 3x3 kernels, 32 x 32."""
    folder = tmp_path_factory.mktemp("tiny")
    tiny_generators.export_untrained_models(folder, (32, 32), base_filters=4, depth=2)
    return folder, load_generators(folder)
