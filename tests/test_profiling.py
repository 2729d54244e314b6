"""Tests for gentg_jax.profiling and experiments/profile.py; tiny shapes only.

XLA's FLOP counts are checked against hand-counted matmul FLOPs; the GPC refinement cost against
the denoiser/TGT ratio times the number of denoiser passes.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import time

import _fixtures
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import gpc_base, tgt_base
from gentg_jax import checkpoint, profiling
from gentg_jax.models import layers

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMES = 9


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    return _fixtures.enable_compilation_cache(tmp_path_factory.getbasetemp())


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


def compiled_flops(fn, *args) -> float:
    return profiling.xla_flops(jax.jit(fn).lower(*args).compile())


def test_param_count_matches_hand_count():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(5)])
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    assert profiling.param_count(params) == (3 * 8 + 8) + (8 * 5 + 5)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 3)))
    assert profiling.param_count(shapes) == 77


def test_mlp_flops_match_analytic_count():
    model = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(16)])
    x = jnp.ones((64, 32))
    params = model.init(jax.random.key(0), x)
    flops = compiled_flops(model.apply, params, x)
    expected = profiling.dense_flops(64, 32, 128) + profiling.dense_flops(64, 128, 16)
    assert expected == 64 * (128 * (2 * 32 + 1) + 16 * (2 * 128 + 1))
    assert flops == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("implementation", ["xla", "einsum"])
def test_attention_flops_match_analytic_count(implementation):
    batch, length, dim = 4, 16, 64
    model = layers.Attention(num_heads=4, implementation=implementation)
    x = jnp.ones((batch, length, dim))
    params = model.init(jax.random.key(0), x)
    flops = compiled_flops(model.apply, params, x)
    # qkv (3 D^2) and output (D^2) projections, q k^T and p v (L D each), 2 FLOPs per MAC.
    by_hand = batch * length * (2 * 4 * dim * dim + 2 * 2 * length * dim)
    assert profiling.attention_flops(batch, length, dim) == by_hand
    assert flops == pytest.approx(by_hand, rel=0.1)


def test_median_times_separates_wall_from_cpu_time():
    wall, cpu_bound = profiling.median_times(lambda: time.sleep(0.02), repeats=3)
    assert wall >= 0.02 and cpu_bound < 0.005  # sleeping takes time but no CPU

    def spin():  # one thread busy for 20 ms of CPU time
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass

    wall, cpu_bound = profiling.median_times(spin, repeats=3)
    assert wall >= 0.02
    assert cpu_bound == pytest.approx(0.02 / os.cpu_count(), rel=0.25)


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


def test_profile_cli_writes_json(tmp_path, cache_dir):
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
    env = _fixtures.subprocess_env(cache_dir, 1)
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
            profiling.tasks.get_task(small_tgt_config()), profiling.synthetic_batch(1, FRAMES)
        )
    )
    assert written["tgt_params"] == profiling.param_count(shapes)
    assert "train_clips_per_s" not in written
    assert math.isfinite(written["refine_tgt_passes"]) and written["refine_tgt_passes"] > 0
    assert "refine_tgt_passes" in result.stdout
