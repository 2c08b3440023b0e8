"""`nucgen synthesize`: three exported generators -> aligned image + instance-mask pairs.

    nucgen synthesize --models runs/exported --n 1000 --out synthetic/
    nucgen synthesize --models M --n 1000 --out S --num_shards 4 --shard_index 2   # one of 4 workers
    nucgen synthesize --models M --seeds_csv my_seeds.csv --shape 520,696 --out S
    nucgen synthesize --n 100 --out S --arrangement fitted --arrangement_data data/bbbc039/train

`--models` holds stage1/, stage2/ and stage3/ (folders written by `nucgen train`); without it
the generators bundled in `nucgen_tf/pretrained/bbbc039_2d` are used. The job itself is
`nucgen_tf.synthesis.run.synthesize`; a rerun resumes it.
"""

from __future__ import annotations

import sys

from absl import app

from nucgen_tf.commands import flagsets
from nucgen_tf.commands.flagsets import synthesis_options_from_flags as options_from_flags
from nucgen_tf.io import DataError
from nucgen_tf.synthesis.run import Interrupted, synthesize


def define_flags() -> None:
    flagsets.define_synthesis_flags()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        options = options_from_flags()
        synthesize(options)
    except (DataError, ValueError) as error:  # one plain line: the log line would repeat it
        raise SystemExit(f"nucgen synthesize: {error}") from error
    except Interrupted as stop:
        sys.stderr.write(f"nucgen synthesize: {stop}\n")
        raise SystemExit(130) from stop


if __name__ == "__main__":
    define_flags()
    app.run(main)
