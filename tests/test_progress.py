"""Progress lines when stderr is not a terminal (issue 18, item 5: tqdm hid its bar there)."""

from __future__ import annotations

import io as stdio

from absl import logging

from nucgen_tf.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_logs_every_tenth_when_not_a_terminal(caplog):
    with caplog.at_level(logging.INFO), Progress(20, "synthesize", "sample", stream=stdio.StringIO()) as bar:
        for _ in range(20):
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("synthesize:")]
    assert len(lines) == 10
    assert lines[0].startswith("synthesize: 2/20 samples (10%)")
    assert lines[-1].startswith("synthesize: 20/20 samples (100%)")


def test_logs_after_30_seconds_even_between_tenths(caplog):
    clock = _Clock()
    with caplog.at_level(logging.INFO):
        bar = Progress(1000, "convert", "file", stream=stdio.StringIO(), clock=clock)
        bar.update(1)
        clock.now = 31.0
        bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("convert:")]
    assert lines == ["convert: 2/1000 files (0%), 31 s elapsed"]
