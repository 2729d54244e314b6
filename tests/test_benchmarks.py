"""Smoke tests of the benchmarks at tiny sizes (no timing assertions)."""

import json
import subprocess
import sys

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


def test_tgt_throughput_times_tgt_and_reference_in_one_run(tmp_path, capsys):
    from benchmarks import tgt_throughput

    out = tmp_path / "tgt_throughput.json"
    argv = ["--config", "tiny", "--reference", "tiny", "--frames", "9", "--quick"]
    tgt_throughput.main(argv + ["--figures", "infer_b1,train_b8", "--json", str(out)])

    results = json.loads(out.read_text())
    assert results["figures"] == ["infer_b1", "train_b8"] and results["iters"] == 1
    assert results["machine"]["cpu_count"] >= 1 and "load_before" in results["machine"]
    assert results["sizes"]["ref"]["flops_per_frame"] > 0 and results["flops_ratio"] > 0
    for figure in results["figures"]:
        row = results[figure]
        assert row["ratio"] > 0 and row["work_ratio"] > 0
        for name in ("tgt", "ref"):
            assert len(row[name]["wall"]) == len(row[name]["cpu"]) == 1
            assert row[name]["rate"] > 0 and row[name]["util"] > 0
    assert results["train_b8"]["tgt"]["memory"]["peak_gib"] > 0
    table = capsys.readouterr().out
    assert "ours/ref" in table and "training, batch 8 (clips/s)" in table


def test_accelerator_check_cpu_path(tmp_path, compilation_cache):
    out = tmp_path / "accelerator_check.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.accelerator_check", "--json", str(out)],
        env=helpers.subprocess_env(compilation_cache, 1),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "No accelerator" in result.stdout and 'pip install "jax[cuda12]==' in result.stdout
    results = json.loads(out.read_text())
    assert not results["accelerator"] and results["variant"] == "cpu"
    assert "model_tests" not in results["checks"]  # the CPU test suite covers them here
    assert all(check["ok"] for check in results["checks"].values()), results["checks"]
    assert results["checks"]["train"]["mfu"] > 0
    assert results["checks"]["inference"]["best"]["frames_per_s"] > 0
    assert results["checks"]["gpc"]["refine_tgt_forwards"] > 0


def _cpu_layouts(cache_dir, *flags):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_layouts", "--config", "tiny", *flags],
        env=helpers.subprocess_env(cache_dir, 2),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cpu_layouts_times_every_layout_on_two_devices(tmp_path, compilation_cache):
    out = tmp_path / "cpu_layouts.json"
    result = _cpu_layouts(compilation_cache, "--batch", "4", "--iters", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["machine"]["device_count"] == 2 and results["batch"] == 4
    for figure in ("forward", "train_step"):
        row = results[figure]
        assert set(row) == {"single", "pmap", "sharded"}
        assert all(len(row[m]["wall"]) == 1 and row[m]["wall_s"] > 0 for m in row)
        for mode in ("pmap", "sharded"):
            expected = row["single"]["wall_s"] / row[mode]["wall_s"]
            assert abs(row[mode]["speedup_over_single"] - expected) < 1e-12
    assert "single/pmap" in result.stdout


def test_cpu_layouts_refuses_a_batch_the_devices_do_not_divide(compilation_cache):
    result = _cpu_layouts(compilation_cache, "--batch", "3")
    assert result.returncode == 2
    assert "--batch 3 is not divisible by --devices 2" in result.stderr
