"""Evaluation files: `write_tables` writes an `EvalResult` as JSON (everything), CSV (one row per
table) and Markdown; `read_for_plots` reads such JSON files (or hand-made plot inputs) back for
`gentg_jax.viz.plot_evaluation`.

Plot inputs, millimetres throughout, of either shape:

  {"per_action": {"tgt":     {"Walking": {"p1": 45.1, "p2": 35.2}, "Eating": {...}, ...},
                  "refined": {"Walking": {"p1": 43.0, "p2": 34.0}, ...}},
   "calibration": {"sigma_mm": [12.0, 30.5, ...], "error_mm": [10.2, 41.0, ...]}}

  {"tables": {"P1": {"actions": {"Walking": 45.1, ...}, ...}, "P2": {...}, ...}, ...}

The first maps each method to action -> metrics ("p1" required, "p2" plotted when every entry
has one; rows named Average/mean are ignored, the mean over actions is recomputed);
`calibration` holds one (predicted sigma, actual error) pair per joint and frame, or already
binned means. Either section may be left out. The second is what `write_tables` writes
(`<workdir>/eval/*.json`): one method, named after the workdir (the file name elsewhere), and
its binned calibration when the JSON has one (`curves`, see `gentg_jax.evaluation.curves`).
"""

import csv
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from gentg_jax import files, metrics
from gentg_jax.evaluation.tables import AGGREGATES, EvalResult

# Row name of the per-action sigma-error correlation table in the CSV and Markdown.
CORRELATION = "Sigma-error corr"


def _csv_text(tables: Mapping[str, metrics.ProtocolTable], mean_label: str = "Avg") -> str:
    actions = sorted({a for t in tables.values() for a in t.actions}, key=str.lower)
    lines = [["metric", *actions, mean_label]]
    for name, table in tables.items():
        cells = [f"{table.actions[a]:.4f}" if a in table.actions else "" for a in actions]
        lines.append([name, *cells, f"{table.mean:.4f}"])
    with tempfile.TemporaryFile("w+", newline="") as f:
        csv.writer(f).writerows(lines)
        f.seek(0)
        return f.read()


def _markdown(result: EvalResult) -> str:
    """The protocol table, then the refinement and correlation tables when present."""
    label = result.mean_label
    markdown = metrics.format_markdown(result.tables, mean_label=label)
    if result.refinement:
        deployed = next((p for p, (_, n) in AGGREGATES.items() if n == result.deployable), None)
        rows = {
            f"{name} (deployed)" if deployed and name.startswith(f"{deployed} ") else name: table
            for name, table in result.refinement.items()
        }
        markdown += (
            "\nRefinement (mm; Resampled in % of the 16 non-root joints; errors over the "
            "resampled / kept non-root joints; the deployed aggregate is the P1/P2 above):\n\n"
            + metrics.format_markdown(rows, mean_label=label)
        )
    if result.correlation is not None:
        correlation = {CORRELATION: result.correlation}
        markdown += "\n" + metrics.format_markdown(correlation, digits=3, mean_label=label)
    if "sigma_error_corr" in result.summary:
        markdown += (
            f"\nsigma-error correlation: {result.summary['sigma_error_corr']:.3f} (a perfectly "
            f"calibrated sigma of this spread: {result.summary['sigma_corr_ceiling']:.3f}), "
            f"calibration slope (RMS error / RMS sigma): "
            f"{result.summary['sigma_error_slope']:.3f}\n"
        )
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
    if result.curves:
        payload["curves"] = result.curves
    if result.split_actions is not None:
        payload["actions_in_split"] = result.split_actions
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
    files.write_text(paths["csv"], _csv_text(csv_tables, result.mean_label))
    files.write_text(paths["md"], markdown)
    return {**paths, "markdown": markdown}


def per_action_from_tables(tables: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{action: {"p1": mm, "p2": mm}} from protocol tables as `write_tables` writes them:
    {"P1": {"actions": {action: mm}, ...}, "P2": {...}, ...}, P2 optional."""
    try:
        p1 = tables["P1"]["actions"]
    except (KeyError, TypeError) as error:
        raise ValueError("evaluation tables need a 'P1' table with 'actions'") from error
    p2 = tables.get("P2", {}).get("actions", {})
    return {
        action: {"p1": mm, **({"p2": p2[action]} if action in p2 else {})}
        for action, mm in p1.items()
    }


def _read_plot_input(path: str | os.PathLike) -> dict:
    """One file's plot input; a `write_tables` JSON becomes one method named after its run."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation JSON at {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not {"per_action", "calibration", "tables"} & set(data):
        raise ValueError(f"{path} has none of 'per_action', 'calibration', 'tables'")
    if "tables" in data:
        path = path.resolve()
        name = path.parent.parent.name if path.parent.name == "eval" else path.stem
        found = {"per_action": {name: per_action_from_tables(data["tables"])}}
        if "calibration" in data.get("curves", {}):
            bins = data["curves"]["calibration"]
            found["calibration"] = {"sigma_mm": bins["sigma_mm"], "error_mm": bins["error_mm"]}
        return found
    if not isinstance(data.get("per_action", {}), dict):
        raise ValueError(f"{path}: 'per_action' must map method -> {{action: {{'p1': mm}}}}")
    return data


def read_for_plots(paths: Sequence[str | os.PathLike]) -> dict:
    """Merges the files' methods (each name once) and takes the last calibration section."""
    merged: dict = {}
    for path in paths:
        data = _read_plot_input(path)
        for method, table in data.get("per_action", {}).items():
            if method in merged.setdefault("per_action", {}):
                raise ValueError(f"method '{method}' is in more than one evaluation file")
            merged["per_action"][method] = table
        if "calibration" in data:
            merged["calibration"] = data["calibration"]
    return merged


def per_action_methods(payload: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{"tgt": {action: {"p1", "p2"}}, and "refined" for a refining evaluation} from a
    `write_tables` JSON: there the protocol tables are the deployed refined pose's and the
    refinement rows "Coarse P1/P2" the TGT's; otherwise the protocol tables are the TGT's."""
    deployed = per_action_from_tables(payload["tables"])
    refinement = payload.get("refinement") or {}
    if "Coarse P1" not in refinement:
        return {"tgt": deployed}
    coarse = {"P1": refinement["Coarse P1"]}
    if "Coarse P2" in refinement:
        coarse["P2"] = refinement["Coarse P2"]
    return {"tgt": per_action_from_tables(coarse), "refined": deployed}


def latest_eval_json(workdir: str | os.PathLike) -> pathlib.Path:
    """The newest evaluation JSON in `<workdir>/eval/`: a training run's last `step_*.json`,
    else `eval.json` (`experiments.evaluate`)."""
    directory = pathlib.Path(workdir) / "eval"
    found = sorted(directory.glob("step_*.json")) or sorted(directory.glob("eval.json"))
    if not found:
        raise FileNotFoundError(f"no evaluation tables in {directory}")
    return found[-1]
