"""Profiles (gentg_jax.profiling.profile) and experiments/profile.py; tiny shapes only.

XLA's FLOP counts are checked against hand-counted matmul FLOPs; the GPC refinement cost against
the denoiser/TGT ratio times the number of denoiser passes.
"""

import json
import math
import os
import subprocess
import sys

import jax
import pytest

from configs import gpc_base, tgt_base
from gentg_jax import checkpoint, profiling
from gentg_jax.train import registry
from tests import helpers

ROOT = helpers.REPO
FRAMES = 9


def small_tgt_config():
    config = tgt_base.get_config("tiny")
    config.data.num_frames = FRAMES
    config.model.update(dim=32, depth=1, num_heads=2, max_frames=FRAMES)
    return config


def small_gpc_config():
    config = gpc_base.get_config("tiny")
    config.data.num_frames = FRAMES
    config.model.update(dim=16, depth=1, num_heads=2, max_frames=FRAMES)
    config.refine.update(num_hypotheses=2, num_steps=2)
    return config


def test_tgt_profile_has_sane_numbers():
    config = small_tgt_config()
    result = profiling.profile(config, batch_size=1, repeats=1)
    for key in ("params", "flops_per_frame", "frames_per_s", "latency_ms", "train_clips_per_s"):
        assert result[key] > 0, key
    assert isinstance(result["params"], int)
    assert result["dtype"] == "float32" and result["frames"] == FRAMES
    # XLA counts the matmuls and the elementwise work (norms, softmax, GELU) on top.
    ratio = result["flops_per_frame"] / result["analytic_flops_per_frame"]
    assert 1.0 <= ratio < 1.3, ratio
    for program in ("predict", "train"):
        assert result["memory"][program]["temp_bytes"] > 0
    assert result["memory"]["device_peak_bytes"] is None  # CPU keeps no allocator stats
    assert "train_clips_per_s" in profiling.format_table(result)


def test_gpc_refinement_cost_is_passes_times_flop_ratio():
    result = profiling.profile(
        small_gpc_config(), small_tgt_config(), batch_size=1, train=False, repeats=1
    )
    assert result["denoiser_passes"] == 4
    for key in ("params", "tgt_params", "frames_per_s", "refine_frames_per_s", "refine_tgt_passes"):
        assert result[key] > 0, key
    expected = 4 * result["flops_per_frame"] / result["tgt_flops_per_frame"]
    # Refinement adds a little elementwise work and shares the per-window timestep embedding
    # across hypotheses; the denoiser passes dominate.
    assert result["refine_tgt_passes"] == pytest.approx(expected, rel=0.05)


def test_profile_cli_writes_json(tmp_path, compilation_cache):
    tgt_workdir = tmp_path / "tgt"
    checkpoint.save_config(tgt_workdir, small_tgt_config())
    out = tmp_path / "profile.json"
    # small_gpc_config's sizes: the subprocess finds the programs compiled above in the cache.
    overrides = {"data.num_frames": FRAMES, "model.dim": 16, "model.depth": 1}
    overrides.update({"model.num_heads": 2, "model.max_frames": FRAMES})
    overrides.update({"refine.num_hypotheses": 2, "refine.num_steps": 2})
    overrides["tgt_workdir"] = tgt_workdir
    command = [sys.executable, "-m", "experiments.profile", "--config=configs/gpc_base.py:tiny"]
    command += [f"--config.{k}={v}" for k, v in overrides.items()]
    command += [f"--json={out}", "--skip_train", "--repeats=1", "--batch=1"]
    env = helpers.subprocess_env(compilation_cache, 1)
    # Any XLA_FLAGS value changes the compilation cache key: keep this process's (none).
    env.pop("XLA_FLAGS")
    if "XLA_FLAGS" in os.environ:
        env["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads(out.read_text())
    assert written["config"] == "configs/gpc_base.py:tiny"
    assert isinstance(written["params"], int) and written["params"] > 0
    assert written["flops_per_frame"] > 0 and written["frames_per_s"] > 0
    assert written["denoiser_passes"] == 4
    # The TGT came from tgt_workdir's saved config (dim 32, depth 1), not tgt_base:tiny.
    shapes = jax.eval_shape(
        lambda: profiling.init_params(
            registry.get_task(small_tgt_config()), profiling.synthetic_batch(1, FRAMES)
        )
    )
    assert written["tgt_params"] == profiling.param_count(shapes)
    assert "train_clips_per_s" not in written
    assert math.isfinite(written["refine_tgt_passes"]) and written["refine_tgt_passes"] > 0
    assert "refine_tgt_passes" in result.stdout
