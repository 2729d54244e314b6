"""Evaluation with the Human3.6M protocol.

evaluate.py  windows -> predictions and per-frame metrics on device -> `EvalResult`
tables.py    stitching frames into sequences, per-action protocol and refinement tables
report.py    writing the tables (JSON, CSV, Markdown) and reading them back for plots
"""

from gentg_jax.evaluation.evaluate import eval_outputs, evaluate, evaluate_config
from gentg_jax.evaluation.report import per_action_from_tables, read_for_plots, write_tables
from gentg_jax.evaluation.tables import EvalResult, sigma_error_correlation

__all__ = [
    "EvalResult",
    "eval_outputs",
    "evaluate",
    "evaluate_config",
    "per_action_from_tables",
    "read_for_plots",
    "sigma_error_correlation",
    "write_tables",
]
