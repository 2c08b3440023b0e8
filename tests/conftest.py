"""Shared fixtures.

Real data is read from ``../shared/data`` beside the checkout, or from ``$NUCGEN_DATA_DIR``.
Tests that need it skip on a developer machine without it, but fail under ``CI=true``:
a CI run that silently skipped the real-data tests would prove nothing.
"""

from __future__ import annotations

import os
import pathlib

import pytest

# Before any test module imports TensorFlow (see nucgen_tf/__init__.py for why).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data_root() -> pathlib.Path:
    env = os.environ.get("NUCGEN_DATA_DIR")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _require(path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
        message = f"real data not found at {path} (set NUCGEN_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_root() -> pathlib.Path:
    """The staged data folder (holds bbbc039/ and stardist_examples/)."""
    return _require(_data_root())


@pytest.fixture(scope="session")
def bbbc039_train(data_root) -> pathlib.Path:
    """BBBC039 train split: images/ and masks/ with matching names."""
    return _require(data_root / "bbbc039" / "train")


@pytest.fixture(scope="session")
def stardist_3d(data_root) -> pathlib.Path:
    """The one small synthetic 3D volume shipped with StarDist (smoke tests only)."""
    return _require(data_root / "stardist_examples" / "nuclei3d_synthetic")
