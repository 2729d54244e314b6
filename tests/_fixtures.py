"""Shared test helpers for the training tests: a tiny synthetic dataset and a tiny TGT config.

Each test module wraps these in its own session fixtures; the dataset is built once per pytest
session (the helper reuses an existing build) and a persistent XLA compilation cache in the
session's temp dir lets repeated runs and subprocesses skip recompiling the same programs.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections

from configs import tgt_base

_TESTS = pathlib.Path(__file__).resolve().parent
REPO = _TESTS.parent

# Small enough to train and evaluate in seconds on 2 CPU cores; 3 actions so per-action tables
# have several rows.
SUBJECTS_TRAIN = ("S1",)
SUBJECTS_TEST = ("S9",)
ACTIONS = ("Directions", "Sitting", "Walking")
FRAMES_PER_SEQUENCE = 60


def build_tiny_dataset(base: pathlib.Path) -> str:
    """Builds synthetic_h36m/detector (S1 train, S9 test, 3 actions) under `base` once."""
    from gentg_jax.data import synthetic, tfds_builders

    data_dir = base / "tiny_tfds"
    if not (data_dir / "synthetic_h36m" / "detector").is_dir():
        generator = dataclasses.replace(
            synthetic.SyntheticConfig(),
            subjects=SUBJECTS_TRAIN + SUBJECTS_TEST,
            actions=ACTIONS,
            frames_per_sequence=FRAMES_PER_SEQUENCE,
        )
        tfds_builders.build_synthetic_h36m(
            data_dir,
            generator=generator,
            configs=("detector",),
            train_subjects=SUBJECTS_TRAIN,
            test_subjects=SUBJECTS_TEST,
        )
    return str(data_dir)


def enable_compilation_cache(base: pathlib.Path) -> str:
    """Turns on JAX's persistent compilation cache in `base` (also for subprocesses via env)."""
    from jax.experimental.compilation_cache import compilation_cache

    cache_dir = str(base / "jax_cache")
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    return cache_dir


def subprocess_env(cache_dir: str, num_devices: int) -> dict[str, str]:
    """Environment for a subprocess with `num_devices` CPU devices and the shared cache.

    LLVM optimisation is off in subprocesses: it halves compile time, and the tiny programs run
    in milliseconds either way. The flag costs no cache hits: another device count alone gives
    every program (single-device ones too) a new cache key, so these subprocesses never share
    the parent's entries.
    """
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=(
            f"--xla_force_host_platform_device_count={num_devices} "
            "--xla_backend_optimization_level=0"
        ),
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache_dir,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=os.pathsep.join([str(REPO), str(_TESTS)]),
    )
    return env


def run_device_script(script: str, args: list[str], cache_dir: str, num_devices: int) -> dict:
    """Runs `python -c script *args` with `num_devices` CPU devices; returns the JSON it prints
    on its `RESULT ` line (a failed run fails the test with the script's stderr)."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=subprocess_env(cache_dir, num_devices),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line.split(" ", 1)[1])


def tiny_config(data_dir: str, **train: object) -> ml_collections.ConfigDict:
    """configs/tgt_base.py:tiny shrunk further: T=9, dim 32, one layer, batch 8."""
    config = tgt_base.get_config("tiny")
    config.data.data_dir = data_dir
    config.data.num_frames = 9
    config.model.update(dim=32, depth=1, num_heads=2, max_frames=9)
    config.train.update(
        num_steps=4,
        batch_size=8,
        micro_batch_size=0,  # whole batches: the layouts' results compare exactly
        learning_rate=1e-3,
        warmup_steps=2,
        log_every=1,
        eval_every=0,
        checkpoint_every=0,
        parallel="single",
    )
    config.train.update(**train)
    config.eval.batch_size = 16
    return config
