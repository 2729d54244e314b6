"""Training curves of a run: `plot_training_curves(rows, path)` for the rows of metrics.jsonl
(`gentg_jax.train.writers.read_metrics`), one panel per quantity that the rows hold.

The panels and the keys they look for (the training loop logs `train/*` at log cadence and
`eval/*` at every evaluation; TGT, GPC and e2e runs log different subsets):

  loss                        train/loss (log scale)
  training error (mm)         train/mpjpe_mm (TGT), train/x0_mpjpe_mm and train/coarse_mpjpe_mm
                              (GPC: the denoised and the coarse pose), train/tgt_mpjpe_mm (e2e)
  learning rate               train/learning_rate
  gradient norm               train/grad_norm (log scale)
  evaluation P1 / P2 (mm)     eval/p1, eval/p2 (the deployed pose) and eval/coarse_p1,
                              eval/coarse_p2 (the TGT's, when refining)
  sigma vs error (train, mm)  train/sigma_mm (mean predicted sigma) beside train/mpjpe_mm
  sigma calibration (eval)    eval/sigma_error_corr (Pearson r) and eval/sigma_error_slope
                              (RMS error / RMS sigma; 1 is calibrated)
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from gentg_jax.viz.plots import _save_figure

# (title, keys, y scale)
PANELS = (
    ("loss", ("train/loss",), "log"),
    (
        "training error (mm)",
        ("train/mpjpe_mm", "train/x0_mpjpe_mm", "train/coarse_mpjpe_mm", "train/tgt_mpjpe_mm"),
        "linear",
    ),
    ("learning rate", ("train/learning_rate",), "linear"),
    ("gradient norm", ("train/grad_norm",), "log"),
    (
        "evaluation P1 / P2 (mm)",
        ("eval/p1", "eval/p2", "eval/coarse_p1", "eval/coarse_p2"),
        "linear",
    ),
    ("sigma vs error (train, mm)", ("train/sigma_mm", "train/mpjpe_mm"), "linear"),
    ("sigma calibration (eval)", ("eval/sigma_error_corr", "eval/sigma_error_slope"), "linear"),
)


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(row["step"]), float(row[key])) for row in rows if key in row]
    return [s for s, _ in points], [v for _, v in points]


def plot_training_curves(
    rows: Sequence[Mapping[str, float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    columns: int = 3,
    dpi: int = 100,
) -> pathlib.Path:
    """Writes a PNG of the panels (module docstring) that `rows` have data for; returns `path`.

    Args:
      rows: dicts with "step" and logged scalars, e.g. `writers.read_metrics(workdir)`.
      path: the PNG to write.
      title: the figure's title (e.g. the workdir).
      columns: panels per row.
      dpi: image resolution.

    Raises:
      ValueError: no row holds any of the panels' keys.
    """
    panels = [
        (name, [(key, *_series(rows, key)) for key in keys if _series(rows, key)[0]], scale)
        for name, keys, scale in PANELS
    ]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        keys = sorted({key for row in rows for key in row})
        raise ValueError(f"no training or evaluation scalars to plot; the rows have {keys}")
    grid_rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * grid_rows), dpi=dpi, layout="constrained")
    if title:
        figure.suptitle(title, fontsize=11)
    for index, (name, series, scale) in enumerate(panels):
        ax = figure.add_subplot(grid_rows, columns, index + 1)
        for key, steps, values in series:
            few = len(steps) < 8  # evaluations: few points, shown as markers
            ax.plot(steps, values, "o-" if few else "-", ms=4, lw=1.3, label=key.split("/", 1)[1])
        ax.set_yscale(scale if all(v > 0 for _, _, vs in series for v in vs) else "linear")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    return _save_figure(figure, path)
