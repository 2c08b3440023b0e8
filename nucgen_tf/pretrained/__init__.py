"""Generators bundled with the package, so that `nucgen synthesize` runs without any data.

Each bundle is a folder with `stage1/`, `stage2/`, `stage3/`, each holding compact float16
weights and the training manifest (`nucgen_tf.exported.generator.compact_export`), plus a
`README.md` that says how they were trained. `nucgen synthesize` uses `bbbc039_2d` when no
`--models` is given.
"""

from __future__ import annotations

import pathlib

DEFAULT = "bbbc039_2d"


def available() -> list[str]:
    """Names of the bundles shipped in this installation."""
    root = pathlib.Path(__file__).parent
    return sorted(p.name for p in root.iterdir() if (p / "stage1").is_dir())


def bundled_models(name: str = DEFAULT) -> pathlib.Path:
    """The folder of a bundled model chain (for `--models` or `load_generators`)."""
    path = pathlib.Path(__file__).parent / name
    if not (path / "stage1").is_dir():
        raise FileNotFoundError(
            f"{path}: no bundled generators named {name!r}; this installation has {available() or 'none'}"
        )
    return path
