"""Evaluation files: the tables written (JSON, CSV, Markdown) and read back for plots."""

import csv
import json

import numpy as np
import pytest

from gentg_jax import evaluation, metrics
from tests import helpers


def test_per_action_from_evaluator_tables():
    per_action = evaluation.per_action_from_tables(
        json.loads(json.dumps(helpers.evaluator_tables()))
    )
    assert sorted(per_action) == ["Eating", "Sitting", "Walking"]
    np.testing.assert_allclose(per_action["Walking"]["p1"], 42.0)  # mean of 40 and 44 mm
    np.testing.assert_allclose(per_action["Sitting"]["p2"], 0.8 * 60.0)
    with pytest.raises(ValueError, match="'P1' table"):
        evaluation.per_action_from_tables({"P2": {"actions": {}}})


def _result() -> evaluation.EvalResult:
    errors = {"Walking 1": [0.040, 0.044], "Eating": [0.050], "Sitting 2": [0.061, 0.059]}
    tables = {
        name: metrics.protocol_table(
            {("S9", action, "54138969"): scale * np.array(v) for action, v in errors.items()},
            scale=1000.0,
        )
        for name, scale in (("P1", 1.0), ("P2", 0.8))
    }
    summary = {"p1": tables["P1"].mean, "p2": tables["P2"].mean, "num_frames": 5.0}
    return evaluation.EvalResult(tables=tables, summary=summary)


def test_write_tables(tmp_path):
    result = _result()
    written = evaluation.write_tables(result, str(tmp_path), name="eval", info={"step": 7})
    payload = json.loads((tmp_path / "eval.json").read_text())
    assert payload["step"] == 7
    assert payload["tables"]["P1"]["actions"] == pytest.approx(result.tables["P1"].actions)
    with open(tmp_path / "eval.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "Eating", "Sitting", "Walking", "Avg"]
    assert [r[0] for r in rows[1:]] == list(result.tables)
    assert float(rows[1][-1]) == pytest.approx(result.summary["p1"], abs=1e-3)
    assert float(rows[1][-1]) == pytest.approx((50.0 + 60.0 + 42.0) / 3, abs=1e-3)
    markdown = (tmp_path / "eval.md").read_text()
    assert markdown == written["markdown"] and "| P1 |" in markdown and "| P2 |" in markdown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "eval.json", "eval.md"]


def test_tables_of_a_refining_run_read_back_for_plots(tmp_path):
    result = _result()
    coarse = {"Coarse P1": result.tables["P1"], "Coarse P2": result.tables["P2"]}
    bins = {"sigma_mm": [10.0, 20.0], "error_mm": [12.0, 25.0], "rms_error_mm": [1, 2]}
    refining = evaluation.EvalResult(
        tables=result.tables,
        summary=result.summary,
        refinement=coarse,
        curves={"calibration": bins},
        split_actions=5,
    )
    (tmp_path / "gpc" / "eval").mkdir(parents=True)
    for step in (3, 12):
        evaluation.write_tables(refining, str(tmp_path / "gpc" / "eval"), name=f"step_{step:08d}")
    path = evaluation.latest_eval_json(tmp_path / "gpc")
    assert path.name == "step_00000012.json"
    payload = json.loads(path.read_text())
    methods = evaluation.per_action_methods(payload)
    assert sorted(methods) == ["refined", "tgt"]
    assert methods["tgt"]["Walking"]["p1"] == pytest.approx(42.0)
    assert evaluation.per_action_methods({"tables": payload["tables"]}).keys() == {"tgt"}
    plots = evaluation.read_for_plots([path])
    assert plots["calibration"] == {"sigma_mm": [10.0, 20.0], "error_mm": [12.0, 25.0]}
    assert "Avg (3 of 5 actions)" in path.with_suffix(".md").read_text()
    with pytest.raises(FileNotFoundError, match="no evaluation tables"):
        evaluation.latest_eval_json(tmp_path)
