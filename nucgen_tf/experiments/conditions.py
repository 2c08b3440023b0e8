"""How each condition's synthetic folder is made, and the real data subsets every condition shares.

Per training amount N (the first N real training images by sorted name, linked into
`<workdir>/data/train_n<N>/`), every condition gets its generators from, in this order: its
own flag (`ours_models`, `rp2p_models`, `pcyclegan_models`), `models_dir`, or a training run
on exactly those N images in `<workdir>/gans/n<N>/` (resumed from its checkpoints, skipped
when its export exists). Exports go to `<workdir>/gans/n<N>/models/{stage1,stage2,stage3,
pcyclegan}`; "ours" and "r+p2p" share stage 3 (both are pix2pix on the real pairs).

Synthetic folders (`<workdir>/synthetic/n<N>/<condition>/`, images/ + masks/) get a
`complete.json` when all samples are written; an unfinished folder resumes sample by sample.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

from absl import logging

from nucgen_tf import io
from nucgen_tf.config import to_dict
from nucgen_tf.experiments import baselines
from nucgen_tf.experiments.config import SLUGS, ExperimentConfig
from nucgen_tf.exported.manifest import MANIFEST
from nucgen_tf.trainers.config import POLYGON_CYCLEGAN

PathLike = str | pathlib.Path
COMPLETE = "complete.json"


def subset_folder(source: PathLike, n: int, dest: PathLike) -> pathlib.Path:
    """A data folder holding symbolic links to the first `n` pairs of `source` (sorted by name).

    `n == 0` means all pairs. The links point at the original files (no data is copied); an
    existing `dest` with other files is rebuilt.

    Raises:
        io.DataError: `source` is not a data folder or holds fewer than `n` pairs.
    """
    pairs = io.list_pairs(source)
    if n > len(pairs):
        raise io.DataError(source, f"holds {len(pairs)} image/mask pairs, fewer than the {n} requested")
    chosen = pairs[:n] if n else pairs
    dest = pathlib.Path(dest)
    record = {"source": str(pathlib.Path(source).resolve()), "names": [p.name for p in chosen]}
    index = dest / "subset.json"
    if index.is_file() and json.loads(index.read_text(encoding="utf-8")) == record:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    for pair in chosen:
        for kind, path in (("images", pair.image_path), ("masks", pair.mask_path)):
            link = dest / kind / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), link)
    io.write_json(index, record)
    return dest


@dataclasses.dataclass(frozen=True)
class Amount:
    """The folders of one training amount.

    Attributes:
        n_train: real training images.
        train: the real training subset (links).
        gans: GAN runs trained here.
        synthetic: root of the conditions' synthetic folders.
    """

    n_train: int
    train: pathlib.Path
    gans: pathlib.Path
    synthetic: pathlib.Path

    @property
    def models(self) -> pathlib.Path:
        return self.gans / "models"


def amount_folders(config: ExperimentConfig, n_train: int) -> Amount:
    """Links the real subset of `n_train` images and names the amount's folders."""
    root = pathlib.Path(config.workdir)
    train = subset_folder(
        pathlib.Path(config.data_root) / "train", n_train, root / "data" / f"train_n{n_train}"
    )
    return Amount(n_train, train, root / "gans" / f"n{n_train}", root / "synthetic" / f"n{n_train}")


def _is_export(path: pathlib.Path) -> bool:
    return (path / MANIFEST).is_file()


def _given(path: str | None, sub: str) -> pathlib.Path | None:
    """A given export folder, or its `sub` folder when it holds one."""
    if path is None:
        return None
    path = pathlib.Path(path)
    for candidate in (path, path / sub):
        if _is_export(candidate):
            return candidate
    raise io.DataError(path, f"neither it nor {path / sub} is an exported generator (no {MANIFEST})")


def _has_chain(path: pathlib.Path) -> bool:
    return all(_is_export(path / f"stage{k}") for k in (1, 2, 3))


def _given_chain(config: ExperimentConfig) -> pathlib.Path | None:
    if config.ours_models is not None:
        path = pathlib.Path(config.ours_models)
        if not _has_chain(path):
            raise io.DataError(path, "must hold stage1/, stage2/ and stage3/ exported generators")
        return path
    if config.models_dir is not None and _has_chain(pathlib.Path(config.models_dir)):
        return pathlib.Path(config.models_dir)
    return None


def _release_session() -> None:
    """Frees the graphs of a finished training run before the next one is built."""
    import keras

    keras.backend.clear_session()


def _folder(stage: int | str) -> str:
    """The run and export folder name of a GAN stage: stage1..stage3, or pcyclegan."""
    return "pcyclegan" if stage == POLYGON_CYCLEGAN else f"stage{stage}"


def train_stage(config: ExperimentConfig, amount: Amount, stage: int | str) -> pathlib.Path:
    """The export of paper stage 1, 2, 3 or of the "p+CycleGAN" baseline, trained on the
    amount's real subset (trained if missing; all by `trainers.stages.train`)."""
    name = _folder(stage)
    export = amount.models / name
    if _is_export(export):
        logging.info("%s generator exists: %s", name, export)
        return export
    from nucgen_tf.trainers import stages

    cfg = config.gan.stage_config(stage, str(amount.train))
    logging.info("training %s on %d real images (%d steps) in %s", name, amount.n_train,
                 cfg.train.steps, amount.gans / name)  # fmt: skip
    stages.train(cfg, amount.gans / name, export)
    _release_session()
    return export


def generator_folders(config: ExperimentConfig, amount: Amount, condition: str) -> dict[str, pathlib.Path]:
    """The exported generators `condition` uses, trained here where not given.

    Returns:
        {} for "none"; {"models": folder with stage1..3} for "ours"; {"stage3": export} for
        "r+p2p"; {"pcyclegan": export} for "p+CycleGAN".
    """
    if condition == "none":
        return {}
    if condition == "ours":
        given = _given_chain(config)
        if given is not None:
            return {"models": given}
        for stage in (1, 2, 3):
            train_stage(config, amount, stage)
        return {"models": amount.models}
    if condition == "r+p2p":
        given = _given(config.rp2p_models, "stage3") or _given_from_models_dir(config, "stage3")
        return {"stage3": given or train_stage(config, amount, 3)}
    if condition == "p+CycleGAN":
        given = _given(config.pcyclegan_models, "pcyclegan") or _given_from_models_dir(config, "pcyclegan")
        return {"pcyclegan": given or train_stage(config, amount, POLYGON_CYCLEGAN)}
    raise ValueError(f"Unknown condition. Received: condition={condition!r}")


def _given_from_models_dir(config: ExperimentConfig, sub: str) -> pathlib.Path | None:
    if config.models_dir is None:
        return None
    path = pathlib.Path(config.models_dir) / sub
    return path if _is_export(path) else None


def _complete(folder: pathlib.Path, record: dict) -> bool:
    path = folder / COMPLETE
    if not path.is_file():
        return False
    saved = json.loads(path.read_text(encoding="utf-8"))
    return {k: saved.get(k) for k in record} == record


def synthetic_folder(config: ExperimentConfig, amount: Amount, condition: str) -> pathlib.Path | None:
    """The condition's synthetic training folder for this amount (made if missing), or None for "none".

    Generators are trained first where needed (see `generator_folders`); samples are written
    with the GAN seed, so every segmenter seed of a condition sees the same synthetic set.
    """
    if condition == "none":
        return None
    out = amount.synthetic / SLUGS[condition]
    models = generator_folders(config, amount, condition)
    record = {
        "condition": condition,
        "n": config.n_synthetic,
        "shape": list(config.synth_shape),
        "seed": config.gan.seed,
        "models": {k: str(v.resolve()) for k, v in models.items()},
    }
    if condition == "ours" and config.ours_require_seed:
        record["require_seed"] = True  # (absent when off: folders written before it stay complete)
    if condition in ("ours", "r+p2p") and config.sensor_noise:
        record["sensor_noise"] = True  # (absent when off: folders written before it had no noise)
    if condition == "ours" and config.ours_margin:
        record["margin"] = config.ours_margin  # (absent when 0: folders written before it)
    if _complete(out, record):
        logging.info("%s: %d synthetic samples exist in %s", condition, config.n_synthetic, out)
        return out
    seed = config.gan.seed
    if condition == "ours":
        from nucgen_tf.synthesis.options import SynthesisOptions
        from nucgen_tf.synthesis.run import synthesize

        manifest = synthesize(
            SynthesisOptions(
                models=str(models["models"]), out=str(out), n=config.n_synthetic, seed=seed,
                shape=config.synth_shape, require_seed=config.ours_require_seed,
                sensor_noise="fitted" if config.sensor_noise else "none", margin=config.ours_margin,
            )
        )  # fmt: skip
        record["summary"] = manifest.get("summary", {})
    elif condition == "r+p2p":
        baselines.generate_real_pix2pix(
            models["stage3"], amount.train, out, config.n_synthetic, config.synth_shape, seed,
            config.elastic_alpha, config.elastic_sigma, sensor_noise=config.sensor_noise,
        )  # fmt: skip
    else:
        baselines.generate_polygon_cyclegan(
            models["pcyclegan"], out, config.n_synthetic, config.synth_shape, seed
        )
    _release_session()
    pairs = io.list_pairs(out)
    record["pairs"] = len(pairs)
    record["instances"] = int(sum(int(io.read_labels(p.mask_path).max(initial=0)) for p in pairs))
    io.write_json(out / COMPLETE, {**record, "gan": to_dict(config.gan)})
    logging.info(
        "%s: %d synthetic samples (%d nuclei) in %s", condition, len(pairs), record["instances"], out
    )
    return out
