"""Reading a run's metrics.jsonl back (gentg_jax.train.writers.read_metrics)."""

import json

import pytest

from gentg_jax.train import writers


def test_read_metrics_merges_rows_per_step_in_step_order(tmp_path):
    rows = [
        {"step": 2, "train/loss": 0.5},
        {"step": 4, "train/loss": 0.3},
        {"step": 4, "eval/p1": 80.0},
        {"step": 2, "train/loss": 0.4},  # written again (a resumed run): the later value wins
    ]
    text = "".join(json.dumps(row) + "\n" for row in rows) + '{"step": 6, "train/lo'  # cut short
    (tmp_path / "metrics.jsonl").write_text(text)
    assert writers.read_metrics(tmp_path) == [
        {"step": 2, "train/loss": 0.4},
        {"step": 4, "train/loss": 0.3, "eval/p1": 80.0},
    ]
    assert writers.read_metrics(tmp_path / "metrics.jsonl") == writers.read_metrics(tmp_path)
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        writers.read_metrics(tmp_path / "missing")
