"""The experiment loop: per training amount, per condition, per seed, one resumable cell.

A cell trains the segmenter of `config.segmenter_family` (its `segment.family.FAMILIES` entry:
the U-Net of `segment.training`, or StarDist of `segment.stardist`)
on the real subset plus the condition's synthetic folder, with the same steps for every
condition, selects the model on the validation set (`select_on` of its config), predicts the test set and
every `extra_eval` folder, scores them (`eval.evaluate_folders`, pooled over the images)
and writes `result.json` atomically. A rerun skips cells with a result (scoring extra
folders they lack) and resumes an interrupted cell from the segmenter's checkpoints. The
report (`report.write_report`) is rewritten after every cell, so it always shows what is
finished.

Both families can share a workdir (the same real subsets, generators and synthetic data):
`experiment.json` holds the common settings and one entry per family that has run there
("segmenter" for the U-Net, as in workdirs written before StarDist existed, "stardist" for
StarDist); a run must match the common settings and its own family's entry, and adds that
entry on its family's first run. The report shows every family with finished cells, one
block of rows per family (Table I's Model column).

Exported generators given on the command line (`ours_models`, ...) are recorded by content
(`config.MODEL_FIELDS`): a rerun with changed generators is refused, one with the same
generators in another folder is not. `config.migrate` reads the records of older versions.

Workdir layout:
    experiment.json                 the settings of the first run; a rerun must match
    data/                           links: train_n<N>/, val/, test/ subsets
    gans/n<N>/                      GAN runs and models/ exports (see `conditions`)
    synthetic/n<N>/<condition>/     synthetic images/ + masks/
    cells/n<N>/<condition>/seed<S>/ U-Net cells: segmenter/, pred/<set>/, result.json
    cells/stardist/n<N>/<condition>/seed<S>/   StarDist cells, the same layout
    report/                         table.md, results.json, bars.png, gain_vs_amount.png
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import types

from absl import logging

from nucgen_tf import io
from nucgen_tf.config import to_dict
from nucgen_tf.experiments import conditions as cond
from nucgen_tf.experiments import config as C
from nucgen_tf.experiments import report
from nucgen_tf.experiments.config import FAMILIES, SLUGS, ExperimentConfig
from nucgen_tf.segment import data as seg_data
from nucgen_tf.segment import family as seg_family

RESULT = "result.json"
SETTINGS = "experiment.json"
# Fields that may change between runs into the same workdir: they select cells, not results.
_FREE_FIELDS = ("workdir", "conditions", "n_train", "seeds", "extra_eval", "segmenter_family")
# The settings entry of each segmenter family in experiment.json (the U-Net's keeps its old name).
FAMILY_KEYS = types.MappingProxyType({"unet": "segmenter", "stardist": "stardist"})
# Cell folders below cells/ per family; the U-Net's are where they were before StarDist existed.
_CELL_PREFIX = types.MappingProxyType({"unet": (), "stardist": ("stardist",)})


def settings_record(config: ExperimentConfig) -> dict:
    """What decides every cell's result; a rerun into the same workdir must not change it.

    The common settings plus the chosen family's segmenter config under its `FAMILY_KEYS`
    entry; the other family's config is left out (it decides no cell of this run). For the
    U-Net family this is exactly the record of workdirs written before StarDist existed.
    Given generators are recorded by content hash under "models" (their resolved folders
    under "model_paths"), settings added later only when they differ from what their absence
    means (`config.compact_record`), and the record's `config.CONFIG_VERSION`.
    """
    values = to_dict(config)
    # The same folder, however the command line spelled it.
    values["data_root"] = str(pathlib.Path(values["data_root"]).resolve())
    given = {key: str(pathlib.Path(values[key]).resolve()) for key in C.MODEL_FIELDS if values[key]}
    for key in C.MODEL_FIELDS:
        del values[key]
    if given:
        values["models"] = {key: generator_content(path) for key, path in given.items()}
        values["model_paths"] = given
    values["config_version"] = C.CONFIG_VERSION
    others = {key for family, key in FAMILY_KEYS.items() if family != config.segmenter_family}
    return C.compact_record({k: v for k, v in values.items() if k not in _FREE_FIELDS and k not in others})


def generator_content(path: str | pathlib.Path) -> str | dict[str, str]:
    """The content hash of the export at `path`, or {name: hash} of the exports inside it.

    `config.UNKNOWN_HASH` when there is none (the folder is checked when a condition uses it).
    """
    from nucgen_tf.exported.manifest import content_hash

    folder = pathlib.Path(path)
    if (folder / cond.MANIFEST).is_file():
        return content_hash(folder)
    inside = sorted(p for p in folder.iterdir() if (p / cond.MANIFEST).is_file()) if folder.is_dir() else []
    return {p.name: content_hash(p) for p in inside} or C.UNKNOWN_HASH


def read_settings(path: pathlib.Path) -> dict:
    """A workdir's experiment.json, migrated to this version's record (`config.migrate`)."""
    try:
        return C.migrate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as err:
        raise io.DataError(path, str(err)) from err


def _flatten(values: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}, so that a mismatch names the leaf that differs."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _model_differences(old: dict, new: dict) -> dict[str, tuple]:
    """{setting: (old, new)} of the given generators that differ between two records.

    Generators are compared by content hash; where either record does not know the hash
    (`config.UNKNOWN_HASH`), by resolved folder, as records without hashes were.
    """
    hashes = old.get("models", {}), new.get("models", {})
    paths = old.get("model_paths", {}), new.get("model_paths", {})
    diff = {}
    for key in sorted(set(hashes[0]) | set(hashes[1])):
        a, b = hashes[0].get(key), hashes[1].get(key)
        if C.UNKNOWN_HASH in (a, b):
            if paths[0].get(key) != paths[1].get(key):
                diff[key] = (paths[0].get(key), paths[1].get(key))
            continue
        a, b = _flatten({key: a}), _flatten({key: b})
        diff.update({k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)})
    return diff


def _learns_hashes(saved: dict, record: dict) -> bool:
    """Whether `record` knows a generator hash that `saved` does not."""
    old, new = saved.get("models", {}), record.get("models", {})
    return any(old.get(key) == C.UNKNOWN_HASH != new[key] for key in new)


def check_workdir(config: ExperimentConfig) -> None:
    """Writes `experiment.json` on the first run; refuses a workdir made with other settings.

    The common settings must match (given generators by content, `_model_differences`); so
    must the chosen family's entry if that family ran here before. Otherwise (its first run
    in this workdir) the entry is added, and the other family's entry, if any, is kept and
    not compared. The file is rewritten, as this version's record, only when it gains a
    family entry or generator hashes it did not know (an old workdir's first rerun).

    Raises:
        io.DataError: the workdir's settings differ (names the file and the fields).
    """
    path = pathlib.Path(config.workdir) / SETTINGS
    record = settings_record(config)
    if not path.is_file():
        io.write_json(path, record)
        return
    saved = read_settings(path)
    own = FAMILY_KEYS[config.segmenter_family]
    ignored = set(FAMILY_KEYS.values()) - {own}
    if own not in saved:
        ignored.add(own)  # this family's first run here: only the common settings must match
    ignored |= {"models", "model_paths"}  # compared by `_model_differences`
    old = _flatten({k: v for k, v in saved.items() if k not in ignored})
    new = _flatten({k: v for k, v in record.items() if k not in ignored})
    diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    diff.update(_model_differences(saved, record))
    if diff:
        details = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        raise io.DataError(
            path,
            f"this workdir holds results made with other settings ({details}). Use a new --workdir "
            "(only conditions, n_train, seeds, extra_eval and the segmenter family may change between "
            "runs).",
        )
    if own not in saved:
        logging.info("%s: adding the %s segmenter settings (first %s run here)", path, own,
                     config.segmenter_family)  # fmt: skip
    elif _learns_hashes(saved, record):
        logging.info("%s: recording the content hashes of the given generators", path)
    else:
        return
    io.write_json(path, {**saved, **record})


def cell_dir(
    config: ExperimentConfig, n_train: int, condition: str, seed: int, family: str | None = None
) -> pathlib.Path:
    """`<workdir>/cells/[stardist/]n<N>/<condition>/seed<S>` of `family` (default: the config's)."""
    family = config.segmenter_family if family is None else family
    return pathlib.Path(config.workdir).joinpath(
        "cells", *_CELL_PREFIX[family], f"n{n_train}", SLUGS[condition], f"seed{seed}"
    )


def _eval_sets(config: ExperimentConfig, test_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Evaluation set name -> data folder: "test" first, then the extra sets."""
    return {"test": test_dir, **{name: pathlib.Path(folder) for name, folder in config.extra_eval}}


def run_cell(
    config: ExperimentConfig,
    amount: cond.Amount,
    condition: str,
    seed: int,
    synthetic: pathlib.Path | None,
    val_dir: pathlib.Path,
    test_dir: pathlib.Path,
) -> dict:
    """One (amount, condition, seed) cell: train (or resume), select on val, score test and extras.

    Returns:
        The cell's result (also in `<cell>/result.json`).
    """
    family = seg_family.family_of(config.segmenter_config)
    folder = cell_dir(config, amount.n_train, condition, seed)
    path = folder / RESULT
    sets = _eval_sets(config, test_dir)
    if path.is_file():
        result = json.loads(path.read_text(encoding="utf-8"))
        # Sets never scored, or scored before a figure existed (predictions are kept: cheap).
        missing = [
            name
            for name in sets
            if not set(seg_data.FIGURE_KEYS) <= set(result["evals"].get(name, {}))
        ]
        if missing:
            segmenter = family.load(folder / "segmenter")
            for name in missing:
                logging.info("scoring %s for the finished cell %s", name, folder)
                result["evals"][name] = seg_family.evaluate_segmenter(
                    segmenter, sets[name], folder / "pred" / name
                )
        if missing or "val_curve" not in result:  # cells from before the curves: read them once
            result["val_curve"] = val_curve(folder / "segmenter")
            io.write_json(path, result)
        return result
    started = time.perf_counter()
    seg_config = dataclasses.replace(config.segmenter_config, seed=seed)
    if synthetic is None:  # nothing to pretrain on: the same steps, all on real data
        seg_config = dataclasses.replace(seg_config, schedule="mixed", pretrain_steps=0)
    folders = seg_data.Folders([amount.train], val_dir, [synthetic] if synthetic else ())
    trained = family.train(seg_config, folders, folder / "segmenter")
    trained_at = time.perf_counter()
    segmenter = family.load(trained.model_dir)
    evals = {
        name: seg_family.evaluate_segmenter(segmenter, d, folder / "pred" / name) for name, d in sets.items()
    }
    result = {
        "n_train": amount.n_train,
        "condition": condition,
        "seed": seed,
        "evals": evals,
        "val": trained.val_scores,
        "best_step": trained.step,
        "synthetic": None if synthetic is None else str(synthetic),
        "segmenter": str(trained.model_dir),
        "seconds": {"train": trained_at - started, "evaluate": time.perf_counter() - trained_at},
        "segmenter_family": family.name,
        "model": family.model_name(seg_config),
        "segmenter_config": to_dict(seg_config),
        "val_curve": val_curve(trained.model_dir),
    }
    io.write_json(path, result)
    import keras

    keras.backend.clear_session()
    return result


def val_curve(model_dir: pathlib.Path) -> list[dict]:
    """The validation scores of every round of a segmenter run (its `history.json`, any family):
    whether the run was long enough shows as a flat end."""
    path = pathlib.Path(model_dir) / "history.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text(encoding="utf-8")).get("history", [])
    keys = ("step", "loss", "instance_f1", "object_f1")
    return [{k: entry[k] for k in keys if k in entry} for entry in history]


def _finished_cells(config: ExperimentConfig, family: str | None = None) -> list[dict]:
    """Results of the grid's finished cells of `family` (default: the config's)."""
    family = config.segmenter_family if family is None else family
    cells = []
    for n_train in config.n_train:
        for condition in config.conditions:
            for seed in config.seeds:
                path = cell_dir(config, n_train, condition, seed, family) / RESULT
                if path.is_file():
                    # Cells written before StarDist existed are U-Net cells without the field.
                    cells.append({"segmenter_family": family, **json.loads(path.read_text(encoding="utf-8"))})
    return cells


def _family_models(config: ExperimentConfig, cells_by_family: dict[str, list]) -> dict[str, str]:
    """{family: model name} of the config's family and every other family with finished cells.

    Another family's name comes from its entry in `experiment.json` (the settings its cells
    were made with), else from this config.
    """
    from nucgen_tf.config import from_dict

    path = pathlib.Path(config.workdir) / SETTINGS
    saved = read_settings(path) if path.is_file() else {}
    models = {}
    for family in FAMILIES:
        if family != config.segmenter_family and not cells_by_family[family]:
            continue
        own = getattr(config, FAMILY_KEYS[family])
        if family != config.segmenter_family and FAMILY_KEYS[family] in saved:
            try:
                own = from_dict(seg_family.FAMILIES[family].config_type, saved[FAMILY_KEYS[family]])
            except (TypeError, ValueError) as err:
                logging.warning("%s: unreadable %s entry (%s); naming the model from this run's config",
                                path, FAMILY_KEYS[family], err)  # fmt: skip
        models[family] = seg_family.FAMILIES[family].model_name(own)
    return models


def write_report(config: ExperimentConfig) -> dict:
    """Rewrites `<workdir>/report/` from every finished cell of the config's grid, all families."""
    cells_by_family = {family: _finished_cells(config, family) for family in FAMILIES}
    models = _family_models(config, cells_by_family)
    _write_galleries(config)
    return report.write_report(
        pathlib.Path(config.workdir) / "report",
        [cell for family in models for cell in cells_by_family[family]],
        conditions=config.conditions,
        amounts=config.n_train,
        eval_sets=("test", *(name for name, _ in config.extra_eval)),
        model=models,
        meta={"config": to_dict(config), "settings_file": str(pathlib.Path(config.workdir) / SETTINGS)},
        ndim=config.ndim,
    )


def _write_galleries(config: ExperimentConfig) -> None:
    """`report/gallery_n<N>.png`: real training pairs next to each condition's synthetic pairs."""
    from nucgen_tf.experiments import gallery

    root = pathlib.Path(config.workdir)
    for n_train in config.n_train:
        if (root / "synthetic" / f"n{n_train}").is_dir() and (root / "data" / f"train_n{n_train}").is_dir():
            gallery.write_gallery(root, n_train)


def run_experiment(config: ExperimentConfig) -> dict:
    """Runs (or resumes) the whole grid and writes the report.

    Returns:
        The report's JSON document (see `report.write_report`).
    """
    root = pathlib.Path(config.workdir)
    root.mkdir(parents=True, exist_ok=True)
    check_workdir(config)
    data_root = pathlib.Path(config.data_root)
    val_dir = cond.subset_folder(data_root / "val", config.max_val_images, root / "data" / "val")
    test_dir = cond.subset_folder(data_root / "test", config.max_test_images, root / "data" / "test")
    for _, folder in config.extra_eval:
        io.list_pairs(folder)  # fail now, not after hours of training, on a bad folder
    total = len(config.n_train) * len(config.conditions) * len(config.seeds)
    done = len(_finished_cells(config))
    logging.info(
        "experiment %s: %d %s cells (%d amounts x %d conditions x %d seeds), %d finished; %d segmenter "
        "steps per cell; val %d images, test %d images",
        root, total, config.segmenter_family, len(config.n_train), len(config.conditions), len(config.seeds),
        done, config.segmenter_config.steps, len(io.list_pairs(val_dir)), len(io.list_pairs(test_dir)),
    )  # fmt: skip
    started, computed, index = time.perf_counter(), 0, 0
    for n_train in config.n_train:
        amount = cond.amount_folders(config, n_train)
        for condition in config.conditions:
            cells = [cell_dir(config, n_train, condition, s) / RESULT for s in config.seeds]
            synthetic = None
            if condition != "none" and not all(p.is_file() for p in cells):
                t0 = time.perf_counter()
                synthetic = cond.synthetic_folder(config, amount, condition)
                logging.info("n_train=%d %s: synthetic data ready in %.0f s", n_train, condition,
                             time.perf_counter() - t0)  # fmt: skip
            elif condition != "none":
                synthetic = amount.synthetic / SLUGS[condition]
            for seed in config.seeds:
                index += 1
                fresh = not cells[config.seeds.index(seed)].is_file()
                t0 = time.perf_counter()
                logging.info("[cell %d/%d] n_train=%d, %s, seed %d%s", index, total, n_train, condition, seed,
                             "" if fresh else " (finished; checking extra evaluations)")  # fmt: skip
                result = run_cell(config, amount, condition, seed, synthetic, val_dir, test_dir)
                if fresh:
                    computed += 1
                    remaining = total - index
                    per_cell = (time.perf_counter() - started) / computed
                    test = result["evals"]["test"]
                    logging.info(
                        "[cell %d/%d] done in %.0f s: test pixel F1 %.4f, instance F1 %.4f, object F1 %.4f; "
                        "about %.0f min left for the remaining %d cells",
                        index, total, time.perf_counter() - t0, test["pixel_f1"], test["instance_f1"],
                        test["object_f1"], per_cell * remaining / 60, remaining,
                    )  # fmt: skip
                write_report(config)
    document = write_report(config)
    logging.info("report: %s (%.0f s in this run)", root / "report", time.perf_counter() - started)
    return document
