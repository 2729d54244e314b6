"""Writers of an `EvalResult`: JSON (everything), CSV (one row per table) and Markdown."""

import csv
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from gentg_jax import files, metrics
from gentg_jax.evaluation_tables import AGGREGATES, EvalResult

# Row name of the per-action sigma-error correlation table in the CSV and Markdown.
CORRELATION = "Sigma-error corr"


def _csv_text(tables: Mapping[str, metrics.ProtocolTable]) -> str:
    actions = sorted({a for t in tables.values() for a in t.actions}, key=str.lower)
    lines = [["metric", *actions, "Avg"]]
    for name, table in tables.items():
        cells = [f"{table.actions[a]:.4f}" if a in table.actions else "" for a in actions]
        lines.append([name, *cells, f"{table.mean:.4f}"])
    with tempfile.TemporaryFile("w+", newline="") as f:
        csv.writer(f).writerows(lines)
        f.seek(0)
        return f.read()


def _markdown(result: EvalResult) -> str:
    """The protocol table, then the refinement and correlation tables when present."""
    markdown = metrics.format_markdown(result.tables)
    if result.refinement:
        deployed = next((p for p, (_, n) in AGGREGATES.items() if n == result.deployable), None)
        rows = {
            f"{name} (deployed)" if deployed and name.startswith(f"{deployed} ") else name: table
            for name, table in result.refinement.items()
        }
        markdown += (
            "\nRefinement (mm; Resampled in % of the 16 non-root joints; errors over the "
            "resampled / kept non-root joints; the deployed aggregate is the P1/P2 above):\n\n"
            + metrics.format_markdown(rows)
        )
    if result.correlation is not None:
        markdown += "\n" + metrics.format_markdown({CORRELATION: result.correlation}, digits=3)
    if "sigma_error_corr" in result.summary:
        markdown += f"\nsigma-error correlation: {result.summary['sigma_error_corr']:.3f}\n"
    return markdown


def write_tables(
    result: EvalResult, directory: str, *, name: str = "eval", info: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Writes `<name>.json`, `<name>.csv` and `<name>.md` into `directory` (atomically).

    The JSON holds everything; the CSV the protocol rows and, for a refining predict, the
    refinement and correlation rows; the Markdown all tables.

    Returns:
      {"json": path, "csv": path, "md": path, "markdown": the Markdown text}.
    """
    os.makedirs(directory, exist_ok=True)
    paths = {ext: os.path.join(directory, f"{name}.{ext}") for ext in ("json", "csv", "md")}
    payload = {
        **dict(info or {}),
        "units": "P1/P2/N-MPJPE in mm, MPJVE in mm/frame, 3DPCK@150mm and AUC in percent",
        "summary": result.summary,
        "tables": {metric: table.as_dict() for metric, table in result.tables.items()},
    }
    csv_tables = dict(result.tables)
    if result.correlation is not None:
        payload["correlation"] = result.correlation.as_dict()
    if result.refinement:
        payload["refinement"] = {row: table.as_dict() for row, table in result.refinement.items()}
        payload["deployable"] = result.deployable
        csv_tables.update(result.refinement)
        if result.correlation is not None:
            csv_tables[CORRELATION] = result.correlation
    markdown = _markdown(result)
    files.write_text(paths["json"], json.dumps(payload, indent=2, sort_keys=True) + "\n")
    files.write_text(paths["csv"], _csv_text(csv_tables))
    files.write_text(paths["md"], markdown)
    return {**paths, "markdown": markdown}
