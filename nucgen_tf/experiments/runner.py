"""The experiment loop: per training amount, per condition, per seed, one resumable cell.

A cell trains the segmenter (`segment.training.train_segmenter`) on the real subset plus
the condition's synthetic folder, with the same steps for every condition, selects the
model on the validation set (`SegmentTrainConfig.select_on`), predicts the test set and
every `extra_eval` folder, scores them (`eval.evaluate_folders`, pooled over the images)
and writes `result.json` atomically. A rerun skips cells with a result (scoring extra
folders they lack) and resumes an interrupted cell from the segmenter's checkpoints. The
report (`report.write_report`) is rewritten after every cell, so it always shows what is
finished.

Workdir layout:
    experiment.json                 the settings of the first run; a rerun must match
    data/                           links: train_n<N>/, val/, test/ subsets
    gans/n<N>/                      GAN runs and models/ exports (see `conditions`)
    synthetic/n<N>/<condition>/     synthetic images/ + masks/
    cells/n<N>/<condition>/seed<S>/ segmenter/, pred/<set>/, result.json
    report/                         table.md, results.json, bars.png, gain_vs_amount.png
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from absl import logging

from nucgen_tf import io
from nucgen_tf.config import to_dict
from nucgen_tf.experiments import conditions as cond
from nucgen_tf.experiments import report
from nucgen_tf.experiments.config import SLUGS, ExperimentConfig

RESULT = "result.json"
SETTINGS = "experiment.json"
# Fields that may change between runs into the same workdir: they select cells, not results.
_FREE_FIELDS = ("workdir", "conditions", "n_train", "seeds", "extra_eval")
_PATH_FIELDS = ("data_root", "models_dir", "ours_models", "rp2p_models", "pcyclegan_models")


def settings_record(config: ExperimentConfig) -> dict:
    """What decides every cell's result; a rerun into the same workdir must not change it."""
    values = to_dict(config)
    for key in _PATH_FIELDS:  # the same folders, however the command line spelled them
        if values.get(key):
            values[key] = str(pathlib.Path(values[key]).resolve())
    return {k: v for k, v in values.items() if k not in _FREE_FIELDS}


def _flatten(values: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}, so that a mismatch names the leaf that differs."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_workdir(config: ExperimentConfig) -> None:
    """Writes `experiment.json` on the first run; refuses a workdir made with other settings.

    Raises:
        io.DataError: the workdir's settings differ (names the file and the fields).
    """
    path = pathlib.Path(config.workdir) / SETTINGS
    record = settings_record(config)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        old, new = _flatten(saved), _flatten(record)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise io.DataError(
                path,
                f"this workdir holds results made with other settings ({details}). Use a new --workdir "
                "(only conditions, n_train, seeds and extra_eval may change between runs).",
            )
        return
    io.write_json(path, record)


def cell_dir(config: ExperimentConfig, n_train: int, condition: str, seed: int) -> pathlib.Path:
    return pathlib.Path(config.workdir) / "cells" / f"n{n_train}" / SLUGS[condition] / f"seed{seed}"


def _figures(pooled) -> dict:
    return {
        "pixel_f1": pooled.pixel_f1,
        "instance_f1": pooled.instance_f1,
        "object_f1": pooled.object_f1,
        "mean_ap": pooled.mean_ap,
        "n_images": pooled.n_images,
        "n_true": pooled.n_true,
        "n_pred": pooled.n_pred,
        "pooled": pooled.to_dict(),
    }


def evaluate_segmenter(segmenter, folder: pathlib.Path, pred_dir: pathlib.Path) -> dict:
    """Predicts every image of a data folder and scores the labels pooled over the images."""
    from nucgen_tf.eval import pool
    from nucgen_tf.eval.evaluate import evaluate_folders
    from nucgen_tf.segment.predict import predict_folder

    predict_folder(segmenter, folder, pred_dir)
    per_image = evaluate_folders(pred_dir, folder, ndim=segmenter.ndim)
    return _figures(pool(per_image.values()))


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
    from nucgen_tf.segment.predict import load_segmenter
    from nucgen_tf.segment.training import train_segmenter

    folder = cell_dir(config, amount.n_train, condition, seed)
    path = folder / RESULT
    sets = _eval_sets(config, test_dir)
    if path.is_file():
        result = json.loads(path.read_text(encoding="utf-8"))
        missing = [name for name in sets if name not in result["evals"]]
        if missing:
            segmenter = load_segmenter(folder / "segmenter")
            for name in missing:
                logging.info("scoring %s for the finished cell %s", name, folder)
                result["evals"][name] = evaluate_segmenter(segmenter, sets[name], folder / "pred" / name)
            io.write_json(path, result)
        return result
    started = time.perf_counter()
    seg_config = dataclasses.replace(config.segmenter, seed=seed)
    model_dir = train_segmenter(
        [amount.train], val_dir, folder / "segmenter", seg_config, extra_dirs=[synthetic] if synthetic else ()
    )
    trained = time.perf_counter()
    segmenter = load_segmenter(model_dir)
    evals = {name: evaluate_segmenter(segmenter, d, folder / "pred" / name) for name, d in sets.items()}
    result = {
        "n_train": amount.n_train,
        "condition": condition,
        "seed": seed,
        "evals": evals,
        "val": segmenter.meta.get("val_scores", {}),
        "best_step": segmenter.meta.get("step"),
        "synthetic": None if synthetic is None else str(synthetic),
        "segmenter": str(model_dir),
        "seconds": {"train": trained - started, "evaluate": time.perf_counter() - trained},
        "segmenter_config": to_dict(seg_config),
    }
    io.write_json(path, result)
    import keras

    keras.backend.clear_session()
    return result


def _finished_cells(config: ExperimentConfig) -> list[dict]:
    cells = []
    for n_train in config.n_train:
        for condition in config.conditions:
            for seed in config.seeds:
                path = cell_dir(config, n_train, condition, seed) / RESULT
                if path.is_file():
                    cells.append(json.loads(path.read_text(encoding="utf-8")))
    return cells


def write_report(config: ExperimentConfig) -> dict:
    """Rewrites `<workdir>/report/` from every finished cell of the config's grid."""
    return report.write_report(
        pathlib.Path(config.workdir) / "report",
        _finished_cells(config),
        conditions=config.conditions,
        amounts=config.n_train,
        eval_sets=("test", *(name for name, _ in config.extra_eval)),
        model=report.model_name(config.segmenter),
        meta={"config": to_dict(config), "settings_file": str(pathlib.Path(config.workdir) / SETTINGS)},
    )


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
        "experiment %s: %d cells (%d amounts x %d conditions x %d seeds), %d finished; %d segmenter "
        "steps per cell; val %d images, test %d images",
        root, total, len(config.n_train), len(config.conditions), len(config.seeds), done,
        config.segmenter.steps, len(io.list_pairs(val_dir)), len(io.list_pairs(test_dir)),
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
