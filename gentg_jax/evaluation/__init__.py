"""Evaluation with the Human3.6M protocol.

evaluate.py  windows -> predictions and per-frame metrics on device -> `EvalResult`
tables.py    stitching frames into sequences, per-action protocol and refinement tables
report.py    writing the tables (JSON, CSV, Markdown) and reading them back for plots
curves.py    per-joint errors, the 3DPCK curve and sigma calibration bins (for plots)
"""

from gentg_jax.evaluation.curves import evaluation_curves
from gentg_jax.evaluation.evaluate import eval_outputs, evaluate, evaluate_config
from gentg_jax.evaluation.report import (
    latest_eval_json,
    per_action_from_tables,
    per_action_methods,
    read_for_plots,
    write_tables,
)
from gentg_jax.evaluation.tables import EvalResult, sigma_error_correlation

__all__ = [
    "EvalResult",
    "eval_outputs",
    "evaluate",
    "evaluate_config",
    "evaluation_curves",
    "latest_eval_json",
    "per_action_from_tables",
    "per_action_methods",
    "read_for_plots",
    "sigma_error_correlation",
    "write_tables",
]
