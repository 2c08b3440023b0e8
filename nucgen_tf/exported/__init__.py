"""The exported-generator format: what `nucgen train` writes and everything else reads.

An export is a folder holding `nucgen_manifest.json` (stage, ndim, channel layouts, size
divisor, intensity statistics, full config) and the network, either as a SavedModel with one
`serve` endpoint or, for bundles, as compact float16 `weights.npz` rebuilt from the manifest's
config. It lives at the base so that synthesis, the bundled models and the baselines read it
without importing any training code.

- `manifest`: file names, reading, writing and checking a manifest, content hash (no TensorFlow).
- `generator`: load an export (either form) and write the compact form.

Submodules are imported on demand; this file imports nothing (no TensorFlow).
"""
