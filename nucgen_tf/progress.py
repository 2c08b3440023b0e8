"""Progress of a long loop: a tqdm bar on a terminal, log lines elsewhere.

tqdm with `disable=None` hides its bar when stderr is not a terminal (a log file, a batch job,
`nohup`), so such runs showed nothing until the end. There, `Progress` logs one line per
tenth of the total, and at least every 30 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO, TypeVar

from absl import logging

Item = TypeVar("Item")


class Progress:
    """Counts finished items of `total`; use as a context manager.

    Args:
        total: number of items.
        desc: what runs, the start of every line.
        unit: item name (plural: + "s").
        initial: items already done (a resumed job).
        every_seconds: longest time between two log lines.
        stream: where a terminal would be (default stderr); a tqdm bar if it is a terminal.
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "item",
        initial: int = 0,
        every_seconds: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, int(initial)
        self.every_seconds, self.clock = every_seconds, clock
        self.started = self.last_time = clock()
        self.last_tenth = self._tenth()
        self.bar = None
        self.postfix: dict[str, str] = {}
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream)

    def _tenth(self) -> int:
        return self.done * 10 // self.total if self.total else 10

    def update(self, n: int = 1) -> None:
        """Adds `n` finished items."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now, tenth = self.clock(), self._tenth()
        if tenth > self.last_tenth or now - self.last_time >= self.every_seconds:
            self.last_tenth, self.last_time = tenth, now
            percent = 100 * self.done // self.total if self.total else 100
            extra = "".join(f", {key} {value}" for key, value in self.postfix.items())
            logging.info("%s: %d/%d %ss (%d%%), %.0f s elapsed%s", self.desc, self.done, self.total,
                         self.unit, percent, now - self.started, extra)  # fmt: skip

    def set_postfix(self, values: dict[str, str]) -> None:
        """Latest figures (e.g. losses): beside the bar, or at the end of the next log line."""
        if self.bar is not None:
            self.bar.set_postfix(values)
        self.postfix = dict(values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Sequence[Item], desc: str, unit: str = "item", enabled: bool = True) -> Iterator[Item]:
    """Yields `items`, counting them with a `Progress` when `enabled` (tqdm's iterable form)."""
    if not enabled:
        yield from items
        return
    with Progress(len(items), desc, unit) as bar:
        for item in items:
            yield item
            bar.update(1)
