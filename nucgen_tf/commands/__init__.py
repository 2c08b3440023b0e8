"""Every entry point: one module per command, absl flags only here.

`nucgen` (the `nucgen` console script, module `nucgen`) dispatches to the others: `preview`,
`fetch`, `phantom3d`, `train`, `synthesize`, `paint`, `segment`, `experiment`, `evaluate`,
`realism`; `bundle` and `gallery` run as `python -m nucgen_tf.commands.<name>`. Each defines
its flags (`define_flags()`) and an absl `main(argv)`; `flagsets` defines every config's flags
once and parses them into the frozen configs that library code takes.

Submodules are imported on demand; this file imports nothing (no TensorFlow).
"""
