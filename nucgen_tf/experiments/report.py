"""The experiment's report: a Markdown table shaped like the paper's Table I, PNG charts, a JSON.

Per evaluation set and training amount, each condition's pixel F1, the paper's instance F1
and object F1 at IoU 0.5 are summarized over seeds as mean ± sample standard deviation
(no deviation from a single seed), and the relative cut in instance-F1 error against
"none", (err_none - err_cond) / err_none with err = 1 - mean instance F1: +10% means the
condition removed a tenth of the errors left without synthetic data, a negative value
means it added errors.

With several segmenter families (U-Net and StarDist, as the paper's Table I has U-Net and
Mask R-CNN), each table gets one block of condition rows per family, its first row naming
the model, and the error cut compares each condition with "none" of the same family.

Charts are drawn with Pillow (matplotlib is not a dependency): grouped bars with error
bars per amount (`bars.png`) and, with several amounts, instance F1 and the error cut
against the amount (`gain_vs_amount.png`); one of each per family.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nucgen_tf import io, viz
from nucgen_tf.charts import COLORS, Canvas, line_chart, tick_range
from nucgen_tf.eval.metrics import F1_FIGURES

METRICS = F1_FIGURES
METRIC_LABELS = {
    "pixel_f1": "Pixel F1",
    "instance_f1": "Instance F1 (paper)",
    "instance_matched_f1": "Instance F1 (matched pairs)",
    "object_f1": "Object F1@0.5",
    "touching_instance_f1": "Touching: instance F1 (matched)",
    "touching_object_f1": "Touching: object F1@0.5",
}


def metric_labels(ndim: int = 2) -> dict[str, str]:
    """Column names: "pixel_f1" is a voxel F1 in 3D, as in the paper's Tables II and III."""
    return {**METRIC_LABELS, "pixel_f1": "Voxel F1"} if ndim == 3 else dict(METRIC_LABELS)
BASELINE = "none"
# Series colors (the "tab10" colors, which stay apart for color-blind readers).


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std" (sample, ddof=1; None for fewer than 2 values), "n", "values"}."""
    values = [float(v) for v in values]
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "n": len(values), "values": values}


def error_cut(baseline_f1: float | None, condition_f1: float | None) -> float | None:
    """(err_none - err_cond) / err_none with err = 1 - F1; None when undefined (err_none = 0)."""
    if baseline_f1 is None or condition_f1 is None:
        return None
    baseline_error = 1.0 - baseline_f1
    if baseline_error <= 0:
        return None
    return (baseline_error - (1.0 - condition_f1)) / baseline_error


def summarize(
    cells: Sequence[Mapping[str, Any]], conditions: Sequence[str], amounts: Sequence[int], eval_set: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """{amount (str): {condition: {metric: mean_std, "instance_error_cut": float | None, "seeds": [...]}}}.

    Cells without `eval_set` among their evaluations are left out.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for amount in amounts:
        row: dict[str, dict[str, Any]] = {}
        for condition in conditions:
            chosen = [
                c
                for c in cells
                if c["n_train"] == amount and c["condition"] == condition and eval_set in c["evals"]
            ]
            chosen.sort(key=lambda c: c["seed"])
            entry = {m: mean_std([c["evals"][eval_set][m] for c in chosen if m in c["evals"][eval_set]])
                     for m in METRICS}
            entry["seeds"] = [c["seed"] for c in chosen]
            row[condition] = entry
        base = row.get(BASELINE, {}).get("instance_f1", {}).get("mean")
        for condition, entry in row.items():
            entry["instance_error_cut"] = (
                None if condition == BASELINE else error_cut(base, entry["instance_f1"]["mean"])
            )
        out[str(amount)] = row
    return out


def _cell(stat: Mapping[str, Any]) -> str:
    if stat["n"] == 0:
        return "not run"
    if stat["std"] is None:
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def markdown_table(
    row: Mapping[str, Mapping[str, Any]], conditions: Sequence[str], model: str, ndim: int = 2
) -> str:
    """Table I's layout for one amount: Model | Aug method | Pixel | Instance | Object F1 | error cut."""
    return models_table({model: row}, conditions, ndim)


def models_table(
    rows: Mapping[str, Mapping[str, Mapping[str, Any]]], conditions: Sequence[str], ndim: int = 2
) -> str:
    """Table I with one block of condition rows per model: {model name: row of `summarize`}."""
    labels = metric_labels(ndim)
    header = ["Model", "Aug method", *(labels[m] for m in METRICS), "Instance-F1 error cut vs none"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for model, row in rows.items():
        for i, condition in enumerate(conditions):
            entry = row[condition]
            cells = [model if i == 0 else "", condition]
            cells += [_cell(entry[m]) if entry[m]["n"] or not entry["seeds"] else "–" for m in METRICS]
            cells.append(_percent(entry["instance_error_cut"]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def amount_table(summary: Mapping[str, Mapping[str, Any]], conditions: Sequence[str]) -> str:
    """Instance F1 (and error cut vs none) per condition and training amount."""
    amounts = list(summary)
    header = ["Aug method", *(f"n_train = {a}" for a in amounts)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for condition in conditions:
        cells = [condition]
        for amount in amounts:
            entry = summary[amount][condition]
            text = _cell(entry["instance_f1"])
            if entry["instance_error_cut"] is not None:
                text += f" ({_percent(entry['instance_error_cut'])})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seeds_note(row: Mapping[str, Mapping[str, Any]]) -> str:
    counts = sorted({len(entry["seeds"]) for entry in row.values()})
    return "/".join(str(c) for c in counts)


def markdown_report(
    summaries: Mapping[str, Mapping[str, Mapping[str, Any]]],
    conditions: Sequence[str],
    model: str,
    files: Mapping[str, str] | None = None,
    ndim: int = 2,
) -> str:
    """The whole `table.md`: one Table I per evaluation set and amount, then gain vs amount."""
    return models_report({model: summaries}, conditions, files, ndim)


def models_report(
    by_model: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    conditions: Sequence[str],
    files: Mapping[str, str] | None = None,
    ndim: int = 2,
) -> str:
    """`table.md` for one or more models: {model name: {eval set: summary}} (same sets and amounts)."""
    several = len(by_model) > 1
    first = next(iter(by_model.values()))
    element = "voxels" if ndim == 3 else "pixels"
    lines = [
        f"# Does synthetic data help? (nucgen-tf, paper {'Tables II/III' if ndim == 3 else 'Table I'})",
        "",
        "Figures are pooled over the images of a set (counts summed, then the ratios), mean ± sample std "
        f"over segmenter seeds. Instance F1 (paper) counts the {element} of predicted instances matched at "
        f"IoU >= 0.5 that lie on any true nucleus (the paper's wording); the matched-pairs reading counts "
        f"only the {element} shared by each matched pair, so merges cost. Object F1 counts instances matched "
        "at IoU >= 0.5. Touching: the same on the true nuclei that touch another one (and the predictions "
        "overlapping them most). Error cut = (err_none - err_cond) / err_none with err = 1 - instance F1 "
        "(paper) (positive = fewer errors than without synthetic data). '–': not measured by that run.",
        "",
    ]
    for eval_set, summary in first.items():
        for amount in summary:
            rows = {model: summaries[eval_set][amount] for model, summaries in by_model.items()}
            note = _seeds_note({f"{m}/{c}": e for m, row in rows.items() for c, e in row.items()})
            lines += [
                f"## {eval_set}: n_train = {amount} real images (seeds per condition: {note})",
                "",
                models_table(rows, conditions, ndim),
                "",
            ]
        if len(summary) > 1:
            for model, summaries in by_model.items():
                lines += [
                    f"## {eval_set}: instance F1 vs training amount" + (f", {model}" if several else ""),
                    "",
                    amount_table(summaries[eval_set], conditions),
                    "",
                ]
    if files:
        lines += ["Files: " + ", ".join(f"`{name}`" for name in files.values()), ""]
    return "\n".join(lines)


# ----- charts --------------------------------------------------------------------------------


def bar_chart(
    row: Mapping[str, Mapping[str, Any]], conditions: Sequence[str], title: str, ndim: int = 2
) -> np.ndarray:
    """(H, W, 3) uint8 grouped bars: one group per condition, one bar per metric, ± std error bars.

    The y axis starts near the smallest value, not at 0 (the differences are in the third
    decimal); its ticks say where.
    """
    shown = [c for c in conditions if row[c]["instance_f1"]["n"] > 0]
    if not shown:
        raise ValueError(f"No condition has results to plot. Received: conditions={list(conditions)}")
    # Metrics every shown condition has (older runs lack the later ones).
    metrics = [m for m in METRICS if all(row[c][m]["n"] > 0 for c in shown)]
    values = [(row[c][m]["mean"], row[c][m]["std"]) for c in shown for m in metrics]
    ticks = tick_range(values, floor_at_zero=True)
    width = max(420, (30 * len(metrics) + 50) * len(shown) + 100)
    canvas = Canvas(width, 340, ticks, title, "F1 (mean ± std over seeds)")
    group = (canvas.right - canvas.left) / len(shown)
    bar = group * 0.8 / len(metrics)
    for g, condition in enumerate(shown):
        start = canvas.left + g * group + group * 0.1
        for k, metric in enumerate(metrics):
            mean, std = row[condition][metric]["mean"], row[condition][metric]["std"]
            x0 = start + k * bar
            top = min(canvas.y(min(max(mean, canvas.low), canvas.high)), canvas.bottom - 1)
            canvas.draw.rectangle([x0 + 1, top, x0 + bar - 1, canvas.bottom - 1], fill=COLORS[k])
            canvas.error_bar(x0 + bar / 2, mean, std)
        canvas.x_label(canvas.left + (g + 0.5) * group, condition)
    canvas.legend([metric_labels(ndim)[m] for m in metrics])
    return canvas.array()


def _stack(charts: Sequence[np.ndarray]) -> np.ndarray:
    width = max(c.shape[1] for c in charts)
    padded = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0)), constant_values=255) for c in charts]
    return viz.stack_rows(padded)


def gain_chart(summary: Mapping[str, Mapping[str, Any]], conditions: Sequence[str]) -> np.ndarray:
    """Instance F1 (± std) and the instance-F1 error cut vs none, against the training amount."""
    amounts = list(summary)
    labels = [f"n={a}" for a in amounts]
    f1 = {
        c: [(summary[a][c]["instance_f1"]["mean"], summary[a][c]["instance_f1"]["std"]) for a in amounts]
        for c in conditions
    }
    cut = {
        c: [
            (
                None
                if summary[a][c]["instance_error_cut"] is None
                else 100 * summary[a][c]["instance_error_cut"],
                None,
            )
            for a in amounts
        ]
        for c in conditions
        if c != BASELINE
    }
    color = {c: COLORS[i % len(COLORS)] for i, c in enumerate(conditions)}
    charts = [
        line_chart(
            labels, f1, "Instance F1 vs real training images", "instance F1", colors=list(color.values())
        )
    ]
    if any(m is not None for values in cut.values() for m, _ in values):
        charts.append(
            line_chart(
                labels,
                cut,
                "Cut in instance-F1 error vs none",
                "error cut (%)",
                zero_line=True,
                colors=[color[c] for c in cut],
            )  # fmt: skip
        )
    return _stack(charts)


def val_curve_chart(
    cells: Sequence[Mapping[str, Any]], conditions: Sequence[str], amount: int, title: str
) -> np.ndarray | None:
    """Validation instance F1 against training step, per condition (mean ± std over seeds), of
    the cells of one amount: a run long enough ends flat. None when no cell has a curve."""
    chosen = [c for c in cells if c["n_train"] == amount and c.get("val_curve")]
    steps = sorted({p["step"] for c in chosen for p in c["val_curve"] if "instance_f1" in p})
    if not steps:
        return None
    series = {}
    for condition in conditions:
        curves = [
            {p["step"]: p["instance_f1"] for p in c["val_curve"] if "instance_f1" in p}
            for c in chosen
            if c["condition"] == condition
        ]
        if curves:
            points = [mean_std([curve[s] for curve in curves if s in curve]) for s in steps]
            series[condition] = [(p["mean"], p["std"]) for p in points]
    color = {c: COLORS[i % len(COLORS)] for i, c in enumerate(conditions)}
    chart = line_chart(
        [str(s) for s in steps], series, title, "val instance F1", colors=[color[c] for c in series]
    )
    return chart


def _family(cell: Mapping[str, Any]) -> str:
    # Cells written before StarDist existed carry no family: they are U-Net cells.
    return cell.get("segmenter_family", "unet")


def write_report(
    out_dir: str | pathlib.Path,
    cells: Sequence[Mapping[str, Any]],
    conditions: Sequence[str],
    amounts: Sequence[int],
    eval_sets: Sequence[str] = ("test",),
    model: str | Mapping[str, str] = "U-Net",
    meta: Mapping[str, Any] | None = None,
    ndim: int = 2,
) -> dict[str, Any]:
    """Writes `table.md`, `results.json`, `bars.png` (and `gain_vs_amount.png`, `val_curves.png`)
    into `out_dir`.

    Args:
        out_dir: report folder.
        cells: finished cells, each {"n_train", "condition", "seed", "evals": {set: {metric: value}}},
            optionally "val_curve" ([{"step", "instance_f1"}, ...]) and, with several families,
            "segmenter_family" (default "unet").
        conditions: in table order.
        amounts: training amounts, in order.
        eval_sets: evaluation sets to report ("test" first; extra sets get their own tables).
        model: the "Model" column: one name for all cells, or {family: name} to report each
            family's cells as its own block of rows, in this order.
        meta: anything else to keep in the JSON (the config).
        ndim: 3 names the first metric voxel F1 (tables, legends).

    Returns:
        The JSON document: summary per set and amount (of the first model; every model's in
        "summary_by_model"), every cell, file names.
    """
    out_dir = pathlib.Path(out_dir)
    families = {None: model} if isinstance(model, str) else dict(model)
    if not families:
        raise ValueError(f"`model` needs at least one name. Received: model={model!r}")
    order = list(families)
    by_model = {
        name: {
            s: summarize([c for c in cells if family is None or _family(c) == family], conditions, amounts, s)
            for s in eval_sets
        }
        for family, name in families.items()
    }
    several = len(by_model) > 1
    files = {"table": "table.md", "json": "results.json"}
    bars, gains, curves = [], [], []
    for family, (name, summaries) in zip(families, by_model.items()):
        test = summaries[eval_sets[0]]
        suffix = f", {name.split(' (')[0]}" if several else ""
        finished = [a for a, row in test.items() if any(row[c]["instance_f1"]["n"] for c in conditions)]
        own = [c for c in cells if family is None or _family(c) == family]
        for a in finished:
            chart = val_curve_chart(own, conditions, int(a), f"val instance F1 by training step, n_train = {a}{suffix}")
            if chart is not None:
                curves.append(chart)
        bars += [
            bar_chart(test[a], conditions, f"{eval_sets[0]}, n_train = {a}{suffix}", ndim) for a in finished
        ]
        if len(finished) > 1:
            gains.append(gain_chart({a: test[a] for a in finished}, conditions))
    if bars:
        io.write_png(out_dir / "bars.png", _stack(bars))
        files["bars"] = "bars.png"
    if gains:
        io.write_png(out_dir / "gain_vs_amount.png", _stack(gains))
        files["gain_vs_amount"] = "gain_vs_amount.png"
    if curves:
        io.write_png(out_dir / "val_curves.png", _stack(curves))
        files["val_curves"] = "val_curves.png"
    text = models_report(by_model, conditions, files, ndim)
    with io.atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(text, encoding="utf-8")

    def sort_key(c):
        family_index = order.index(_family(c)) if None not in families and _family(c) in order else 0
        return (family_index, c["n_train"], list(conditions).index(c["condition"]), c["seed"])

    document = {
        "model": next(iter(by_model)),
        "models": list(by_model),
        "conditions": list(conditions),
        "amounts": list(amounts),
        "eval_sets": list(eval_sets),
        "metrics": list(METRICS),
        "summary": next(iter(by_model.values())),
        "cells": sorted(cells, key=sort_key),
        "files": files,
        "meta": dict(meta or {}),
    }
    if several:
        document["summary_by_model"] = by_model
    io.write_json(out_dir / "results.json", document)
    return document
