"""The paper's experiments, end to end: does synthetic data help a segmenter? (issue 6, Table I).

- `config`: `ExperimentConfig` (conditions x training amounts x seeds), `GanSettings`, the
  "full" and "smoke" presets.
- `baselines`: "p + CycleGAN" (parametric polygon masks, unpaired CycleGAN) and "r + p2p"
  (transformed real masks through pix2pix).
- `conditions`: the real subsets and how each condition's synthetic folder is made.
- `runner`: the resumable grid of (amount, condition, seed) cells.
- `report`: Markdown table (Table I's layout), PNG charts, JSON.
- the command (`nucgen_tf.commands.experiment`):
  `nucgen experiment --flagfile=configs/bbbc039_2d/experiment.flags`.
"""

from nucgen_tf.experiments.config import (
    CONDITIONS,
    ExperimentConfig,
    GanSettings,
    full_preset,
    parse_condition,
    preset,
    smoke_preset,
    with_overrides,
)

__all__ = [
    "CONDITIONS",
    "ExperimentConfig",
    "GanSettings",
    "full_preset",
    "parse_condition",
    "preset",
    "smoke_preset",
    "with_overrides",
]
