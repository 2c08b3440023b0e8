"""`nucgen train --stage N --flagfile=configs/<preset>/stageN.flags`: train one stage.

Resumes from the workdir's last checkpoint by default, exports the generator at the end.
`python -m nucgen_tf.trainers.stageN` runs the same command with the stage fixed.
"""

from __future__ import annotations

import sys

from absl import app, flags

from nucgen_tf import io
from nucgen_tf.commands import flagsets


def define_flags(stage: int | None = None) -> None:
    flagsets.define_stage_flags(stage)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from nucgen_tf.trainers import loop, stages

    cfg = flagsets.stage_config_from_flags()
    try:
        stages.train(cfg, flags.FLAGS.workdir, flags.FLAGS.export_dir)
    except (io.DataError, loop.NonFiniteLossError) as error:  # one plain line, no log line repeating it
        sys.exit(f"nucgen train: {error}")
    except loop.Interrupted as stop:
        sys.stderr.write(f"nucgen train: {stop}\n")
        sys.exit(130)


def run_stage(stage: int) -> None:
    """`python -m nucgen_tf.trainers.stageN`: this command with --stage defaulting to N."""
    define_flags(stage)
    app.run(main)


if __name__ == "__main__":
    define_flags()
    app.run(main)
