import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucgen_tf import preview, viz


def _nucgen(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nucgen_tf.commands.nucgen", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.mark.parametrize("ndim", [2, 3])
def test_builtin_example_preview_has_one_panel_per_representation(tmp_path, ndim):
    (path,) = preview.write_previews(tmp_path, data=None, ndim=ndim, seed=3)
    picture = np.asarray(Image.open(path))
    assert picture.dtype == np.uint8 and picture.shape[-1] == 3
    # Five panels side by side; 3D adds a max-projection row under the mid-slice row.
    assert picture.shape[1] > 5 * picture.shape[0] / (2 if ndim == 3 else 1) * 0.9
    assert picture[20:].std() > 10  # not a blank canvas


def test_render_all_keeps_every_nucleus_and_its_color():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches 1
    labels[28:34, 28:36] = 3
    reps = preview.render_all(labels)
    assert reps.box_map.shape == labels.shape and reps.mask.shape == (40, 40, 4)
    colors = [tuple(reps.mask[labels == i][0, :3]) for i in (1, 2, 3)]
    assert colors[0] != colors[1]
    for i, color in zip((1, 2, 3), colors):
        assert np.all(reps.mask[labels == i][:, :3] == color)
        center = np.argwhere(labels == i).mean(axis=0).round().astype(int)
        assert reps.box_map[tuple(center)] > 0.8  # near the Eq. 1 peak of 1.0 (rim: 0.2)
        assert tuple(reps.ellipses[tuple(center)]) == color


def test_preview_of_real_folder(tmp_path, bbbc039_train):
    paths = preview.write_previews(tmp_path, data=str(bbbc039_train), max_files=1)
    assert len(paths) == 1 and paths[0].suffix == ".png"
    assert Image.open(paths[0]).size[1] > 520


def test_cli_preview_bad_file_exits_nonzero_naming_it(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.ones((16, 16), np.uint16))
    tifffile.imwrite(tmp_path / "masks" / "a.tif", np.full((16, 16), 0.5, np.float32))
    result = _nucgen("preview", f"--data={tmp_path}", f"--out={tmp_path / 'out'}")
    assert result.returncode != 0
    assert str(tmp_path / "masks" / "a.tif") in result.stderr
    assert not (tmp_path / "out" / "a.png").exists()


def test_cli_preview_builtin_writes_png(tmp_path):
    result = _nucgen("preview", f"--out={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_cli_usage_and_unknown_command():
    assert "preview" in _nucgen("--help").stdout
    result = _nucgen("frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr


def test_views_drop_boundary_from_projection():
    volume = np.zeros((4, 8, 8, 4), np.float32)
    volume[:, 2:6, 2:6, :3] = 1.0
    volume[:, 2:6, 2:6, 3] = 1.0
    middle, projection = viz.views(volume, 3)
    assert middle[..., 3].max() == 1.0 and projection[..., 3].max() == 0.0


def test_subcommand_help_lists_its_own_flags():
    result = _nucgen("preview", "--help")
    assert result.returncode == 0
    assert "--max_files" in result.stdout and "--data" in result.stdout
