"""Progress lines when stderr is not a terminal (issue 18, item 5: tqdm hid its bar there)."""

from __future__ import annotations

import io as stdio
import logging

from nucgen_tf.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_logs_every_tenth_when_not_a_terminal(caplog):
    bar = Progress(20, "synthesize", "sample", stream=stdio.StringIO())
    with caplog.at_level(logging.INFO, logger="absl"), bar:
        for _ in range(20):
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("synthesize:")]
    assert len(lines) == 10
    assert lines[0].startswith("synthesize: 2/20 samples (10%)")
    assert lines[-1].startswith("synthesize: 20/20 samples (100%)")


def test_logs_after_30_seconds_even_between_tenths(caplog):
    clock = _Clock()
    with caplog.at_level(logging.INFO, logger="absl"):
        bar = Progress(1000, "convert", "file", stream=stdio.StringIO(), clock=clock)
        bar.update(1)
        clock.now = 31.0
        bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("convert:")]
    assert lines == ["convert: 2/1000 files (0%), 31 s elapsed"]


def test_latest_figures_end_the_log_line(caplog):
    clock = _Clock()
    with caplog.at_level(logging.INFO, logger="absl"):
        bar = Progress(10, "train", "step", stream=stdio.StringIO(), clock=clock)
        bar.set_postfix({"g": "1.250", "d": "0.500"})
        bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train:")]
    assert lines == ["train: 1/10 steps (10%), 0 s elapsed, g 1.250, d 0.500"]


def test_track_yields_every_item_and_logs_progress(caplog):
    from nucgen_tf.progress import track

    with caplog.at_level(logging.INFO, logger="absl"):
        assert list(track(["a", "b"], "convert", "file")) == ["a", "b"]
        assert list(track(["c"], "quiet", enabled=False)) == ["c"]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines if line.startswith("convert:")] == [
        "convert: 1/2 files (50%)",
        "convert: 2/2 files (100%)",
    ]
    assert not [line for line in lines if line.startswith("quiet:")]
