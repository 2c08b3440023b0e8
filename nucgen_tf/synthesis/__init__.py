"""`nucgen synthesize` and `nucgen paint` as library calls, and their pieces.

- `run`: a synthesis job, `synthesize(SynthesisOptions)`: run or resume, manifests, realism report.
- `paint`: a paint job, `paint(PaintOptions)`: stage 3 alone on given masks (`paint_labels`).
- `models`: load stage1/2/3 exported generators, check they chain, hash them.
- `sampling`: per-sample random streams, seed arrangements, seed CSVs.
- `arrangement_fit`: the "fitted" arrangement: layout statistics of real masks, seeds drawn from them.
- `tiling`: pad to the network's size multiple; overlapping tiles with linear cross-fade.
- `pipeline`: the three-stage chain for a batch of samples (decode, recolor, denormalize).
- `alignment`: per-sample check that the image shows the mask's nuclei.
- `writers`: output layouts (StarDist / Cellpose), previews, manifests.

Submodules are imported on demand; this file imports nothing (no TensorFlow).
"""
