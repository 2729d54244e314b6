"""Smoke test of the user-facing predict benchmark at a tiny size (no timing assertions)."""

import json

from benchmarks import predict_latency
from tests import helpers

ROOT = helpers.REPO


def test_predict_latency_writes_positive_numbers(tmp_path, capsys):
    out = tmp_path / "predict_latency.json"
    config = f"{ROOT / 'configs' / 'tgt_base.py'}:tiny"
    argv = ["--config", config, "--frames", "30", "--batch", "2", "--iters", "1"]
    predict_latency.main(argv + ["--json", str(out)])

    results = json.loads(out.read_text())
    assert results["config"] == config and results["checkpoint"] is None
    assert results["frames"] == 30 and results["batch"] == 2 and results["window_frames"] == 27
    assert results["machine"]["device_kind"] and results["machine"]["cpu_count"] >= 1
    assert not results["has_refiner"]
    (row,) = results["rows"]  # a TGT-only checkpoint: refine=False only
    assert row["refine"] is False
    for part in ("latency", "throughput"):
        assert row[part]["first_s"] > 0 and row[part]["warm_s"] > 0
        assert row[part]["trace_count_after_warm"] == row[part]["trace_count_after_first"] >= 1
    assert row["throughput"]["frames_per_s"] > 0
    assert "latency ms, warm" in capsys.readouterr().out
