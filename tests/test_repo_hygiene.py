"""What the README's main command leaves behind is described and ignored (issue 18, item 5)."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _outputs_sentence() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"It writes (.*?)\.\s", text[text.index("<!-- main-command -->") :], re.S)
    assert match, "README: the sentence after the main command that lists its outputs"
    return match.group(1)


@pytest.mark.parametrize("output", ["synthetic/images/", "synthetic/masks/", "synthetic/seeds/",
                                    "synthetic/previews/", "synthetic/manifest.json"])  # fmt: skip
def test_readme_lists_every_output_of_the_main_command(output):
    assert output in _outputs_sentence()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_main_commands_output_folder_is_ignored():
    proc = subprocess.run(["git", "check-ignore", "-q", "synthetic/images/a.tif"], cwd=ROOT, check=False)
    assert proc.returncode == 0
