"""Evaluation plots: per-action bars, uncertainty calibration, an evaluation dict's set, error by
joint, the 3DPCK curve and the resampled / kept joints' errors.

Figures are built without pyplot (no display needed) and written atomically as PNGs.
"""

from __future__ import annotations

import numbers
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gentg_jax import files, skeleton

_SUMMARY_ACTIONS = frozenset({"average", "avg", "mean", "all"})


def _save_figure(figure: Figure, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    with files.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _clean_table(method: str, table: Any) -> dict[str, float]:
    """Drops summary rows (the mean is recomputed) and checks that every value is a number."""
    if not isinstance(table, Mapping):
        raise ValueError(f"per-action results of '{method}' must map action -> mm, got {table!r}")
    clean = {}
    for action, value in table.items():
        if action.lower() in _SUMMARY_ACTIONS:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"'{method}' action '{action}' has value {value!r}; expected mm")
        clean[action] = float(value)
    if not clean:
        raise ValueError(f"'{method}' has no per-action values")
    return clean


def plot_per_action(
    results: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    *,
    ylabel: str = "P1 (mm)",
    dpi: int = 100,
) -> pathlib.Path:
    """Grouped bars per action, one bar per method, then the mean over actions; returns `path`.

    Args:
      results: method -> {action: value in mm}, e.g. {"tgt": {...}, "refined": {...}}. Rows named
        average/avg/mean/all are ignored: the last group is recomputed as the unweighted mean over
        actions, as the protocol reports it. Every method must cover the same actions.
      path: the PNG to write.
      ylabel: the metric's axis label.
      dpi: image resolution.
    """
    if not results:
        raise ValueError("plot_per_action needs at least one method")
    tables = {method: _clean_table(method, table) for method, table in results.items()}
    actions = sorted(set().union(*tables.values()), key=str.lower)
    for method, table in tables.items():
        if missing := [action for action in actions if action not in table]:
            raise ValueError(f"'{method}' has no value for action(s) {missing}")
    x, width = np.arange(len(actions) + 1), 0.8 / len(tables)
    size = (max(6.0, 0.45 * len(x) * len(tables)), 3.6)
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    for i, (method, table) in enumerate(tables.items()):
        values = [table[action] for action in actions]
        mean = float(np.mean(values))
        offset = (i - (len(tables) - 1) / 2) * width
        bars = ax.bar(x + offset, [*values, mean], width, label=method)
        ax.bar_label(bars, labels=[""] * len(values) + [f"{mean:.1f}"], fontsize=7)
    ax.set_xticks(x, [*actions, "Average"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never on bars
    return _save_figure(figure, path)


def calibration_bins(
    sigma: Sequence[float] | np.ndarray, error: Sequence[float] | np.ndarray, num_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Sorts (sigma, error) pairs by sigma into equal-count bins; returns each bin's means.

    With no more pairs than bins every pair is its own bin, so already-binned input (one mean
    sigma and one mean error per bin) passes through unchanged (sorted by sigma).
    """
    sigma, error = np.asarray(sigma, np.float64), np.asarray(error, np.float64)
    if sigma.ndim != 1 or sigma.shape != error.shape or not len(sigma):
        raise ValueError(
            f"calibration needs sigma and error of equal shape (N,), N >= 1; got {sigma.shape} "
            f"and {error.shape}"
        )
    values = np.concatenate([sigma, error])
    if not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError("calibration sigma and error must be finite and non-negative")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    bins = np.array_split(np.argsort(sigma, kind="stable"), min(num_bins, len(sigma)))
    return np.array([sigma[b].mean() for b in bins]), np.array([error[b].mean() for b in bins])


def plot_calibration(
    sigma_mm: Sequence[float] | np.ndarray,
    error_mm: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    num_bins: int = 10,
    dpi: int = 100,
) -> pathlib.Path:
    """Actual error against predicted sigma (both mm): the pairs, their binned means, y = x."""
    bin_sigma, bin_error = calibration_bins(sigma_mm, error_mm, num_bins)
    sigma, error = np.asarray(sigma_mm, np.float64), np.asarray(error_mm, np.float64)
    figure = Figure(figsize=(4.2, 4.0), dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    shown = slice(None, None, max(1, len(sigma) // 5000))  # thin out large sets, deterministically
    ax.scatter(sigma[shown], error[shown], s=3, color="0.6", alpha=0.3, lw=0, label="joints")
    ax.plot(bin_sigma, bin_error, "o-", color="tab:orange", label=f"{len(bin_sigma)} bins (mean)")
    # Scaled to the binned means, not to the widest single errors, which would squeeze them.
    top = 1.25 * max(np.percentile(sigma, 99), bin_sigma.max(), bin_error.max(), 1e-3)
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = x")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="predicted sigma (mm)", ylabel="error (mm)")
    if np.std(sigma) > 0 and np.std(error) > 0:
        ax.set_title(f"Pearson r = {np.corrcoef(sigma, error)[0, 1]:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    return _save_figure(figure, path)


def _metric_tables(per_action: Mapping[str, Any], metric: str) -> dict[str, dict] | None:
    """method -> {action: value} for one metric; None unless every entry has that metric."""
    tables = {}
    for method, actions in per_action.items():
        entries = actions.values() if isinstance(actions, Mapping) else [None]
        if not all(isinstance(entry, Mapping) for entry in entries):
            raise ValueError(f"per_action['{method}'] must map action -> {{'p1': mm, ...}}")
        if not all(metric in entry for entry in entries):
            return None
        tables[method] = {action: entry[metric] for action, entry in actions.items()}
    return tables


def plot_evaluation(
    evaluation: Mapping[str, Any], out_dir: str | os.PathLike
) -> list[pathlib.Path]:
    """Plots an evaluation dict (`gentg_jax.evaluation.read_for_plots`; shapes documented in
    gentg_jax/evaluation/report.py).

    Writes `per_action_p1.png`, `per_action_p2.png` (when every entry has a p2) and
    `calibration.png` (when there is a calibration section); returns the paths written.
    """
    per_action, calibration = evaluation.get("per_action"), evaluation.get("calibration")
    if per_action is None and calibration is None:
        raise ValueError(
            f"evaluation has no 'per_action' or 'calibration'; has {sorted(evaluation)}"
        )
    out_dir, paths = pathlib.Path(out_dir), []
    if per_action is not None:
        if not isinstance(per_action, Mapping) or not per_action:
            raise ValueError("evaluation['per_action'] must map method -> {action: {'p1': mm}}")
        if _metric_tables(per_action, "p1") is None:
            raise ValueError("every evaluation['per_action'] entry needs a 'p1'")
        for metric in ("p1", "p2"):
            if (tables := _metric_tables(per_action, metric)) is not None:
                path = out_dir / f"per_action_{metric}.png"
                paths.append(plot_per_action(tables, path, ylabel=f"{metric.upper()} (mm)"))
    if calibration is not None:
        if not isinstance(calibration, Mapping) or not {"sigma_mm", "error_mm"} <= set(calibration):
            raise ValueError("evaluation['calibration'] must hold 'sigma_mm' and 'error_mm' lists")
        sigma, error = calibration["sigma_mm"], calibration["error_mm"]
        paths.append(plot_calibration(sigma, error, out_dir / "calibration.png"))
    return paths


def _tgt_first(by_method: Mapping[str, Any]) -> dict[str, Any]:
    """The methods with "tgt" before "refined" (JSON files store them sorted by name)."""
    order = {"tgt": 0, "refined": 1}
    return dict(sorted(by_method.items(), key=lambda item: order.get(item[0], 2)))


def plot_joint_errors(
    per_joint: Mapping[str, Sequence[float]], path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
    """Grouped bars of the error of each of the 17 joints (mm), one bar per method, e.g. an
    evaluation's `curves["per_joint"]` ({"tgt": [...], "refined": [...]})."""
    if not per_joint:
        raise ValueError("plot_joint_errors needs at least one method")
    for method, values in per_joint.items():
        if len(values) != skeleton.NUM_JOINTS:
            raise ValueError(f"'{method}' has {len(values)} joint errors; expected 17")
    x, width = np.arange(skeleton.NUM_JOINTS), 0.8 / len(per_joint)
    figure = Figure(figsize=(8.0, 3.4), dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    for i, (method, values) in enumerate(_tgt_first(per_joint).items()):
        ax.bar(x + (i - (len(per_joint) - 1) / 2) * width, values, width, label=method)
    ax.set_xticks(x, skeleton.JOINT_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean error (mm)")
    ax.set_title("error by joint (mean over actions)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save_figure(figure, path)


def plot_pck_curve(
    pck_curve: Mapping[str, Sequence[float]], path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
    """3DPCK (%) against the threshold (mm), one line per method, e.g. an evaluation's
    `curves["pck_curve"]` ({"thresholds_mm": [...], "tgt": [...], ...}); the legend gives
    each curve's AUC (its mean)."""
    thresholds = np.asarray(pck_curve.get("thresholds_mm", []), np.float64)
    methods = {k: np.asarray(v, np.float64) for k, v in pck_curve.items() if k != "thresholds_mm"}
    if not len(thresholds) or not methods:
        raise ValueError("pck_curve needs 'thresholds_mm' and at least one method's curve")
    figure = Figure(figsize=(4.6, 3.6), dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    for method, curve in _tgt_first(methods).items():
        if curve.shape != thresholds.shape:
            raise ValueError(f"'{method}' has {len(curve)} values for {len(thresholds)} thresholds")
        ax.plot(thresholds, curve, lw=1.5, label=f"{method} (AUC {curve.mean():.1f})")
    ax.set(xlabel="threshold (mm)", ylabel="3DPCK (%)", ylim=(0, 100), xlim=(0, thresholds[-1]))
    ax.set_title("joints within the threshold", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save_figure(figure, path)


def plot_resampling(
    summary: Mapping[str, float], path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
    """Bars of the error (mm) of the resampled and of the kept non-root joints before and after
    refinement, from a refining evaluation's summary (`{resampled,kept}_error_{before,after}`,
    `resampled_fraction`); kept joints are returned unchanged, so their bars are equal."""
    groups = [g for g in ("resampled", "kept") if f"{g}_error_before" in summary]
    if not groups:
        raise ValueError("the summary has no resampled/kept errors (not a refining evaluation)")
    figure = Figure(figsize=(4.6, 3.6), dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    x = np.arange(len(groups))
    for offset, when in ((-0.2, "before"), (0.2, "after")):
        values = [summary[f"{g}_error_{when}"] for g in groups]
        bars = ax.bar(x + offset, values, 0.4, label=f"{when} refinement")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    share = 100 * summary.get("resampled_fraction", float("nan"))
    ax.set_xticks(x, [f"{g} joints" for g in groups])
    ax.set_ylabel("mean error (mm)")
    ax.set_title(f"resampled: {share:.0f} % of the non-root joints", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save_figure(figure, path)
