"""Shared test helpers: the repository paths, a tiny synthetic dataset, a tiny TGT config and
multi-device subprocesses.

tests/conftest.py wraps the dataset and the compilation cache in session fixtures: the dataset
is built once per pytest session, and a persistent XLA compilation cache in the session's temp
dir lets repeated runs and subprocesses skip recompiling the same programs.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np

from configs import tgt_base
from gentg_jax import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"  # small real-motion files in the VideoPose3D format

# Small enough to train and evaluate in seconds on 2 CPU cores; 3 actions so per-action tables
# have several rows.
SUBJECTS_TRAIN = ("S1",)
SUBJECTS_TEST = ("S9",)
ACTIONS = ("Directions", "Sitting", "Walking")
FRAMES_PER_SEQUENCE = 60

# LLVM optimisation off in the test process and its subprocesses: compile time is most of the
# suite's time, and the tiny programs run in milliseconds either way.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


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

    LLVM optimisation is off (FAST_COMPILE_FLAG), as in the test process. Another device count
    gives every program (single-device ones too) a new cache key, so these subprocesses share
    cache entries with each other, not with the parent.
    """
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices} {FAST_COMPILE_FLAG}",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache_dir,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=str(REPO),
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


def tiny_gpc_config(data_dir: str, tgt_workdir: str = "", **train: object):
    """configs/gpc_base.py:tiny shrunk like `tiny_config` (T=9, dim 16, one layer, K=2, H=2),
    refining the TGT at `tgt_workdir` (else trained from simulated coarse poses)."""
    from configs import gpc_base

    tgt_config = tiny_config(data_dir, **train)
    config = gpc_base.get_config("tiny")
    config.data, config.train, config.eval = tgt_config.data, tgt_config.train, tgt_config.eval
    config.model.update(dim=16, depth=1, num_heads=2, max_frames=9)
    config.refine.update(selection="top_fraction", num_steps=2, num_hypotheses=2)
    config.tgt_workdir = tgt_workdir
    config.train_from_gt_noise = not tgt_workdir
    return config


# A person standing 4.5 m in front of the camera, facing it, in the camera frame (y down): hips
# at the origin, feet at y = +0.88 m, head at y = -0.7 m.
STANDING = np.array(
    [
        [0.0, 0.0, 0.0], [-0.13, 0.0, 0.0], [-0.13, 0.45, 0.0], [-0.13, 0.88, 0.05],
        [0.13, 0.0, 0.0], [0.13, 0.45, 0.0], [0.13, 0.88, 0.05], [0.0, -0.23, 0.0],
        [0.0, -0.48, 0.0], [0.0, -0.58, -0.03], [0.0, -0.7, 0.0], [0.16, -0.45, 0.0],
        [0.42, -0.45, 0.0], [0.65, -0.45, 0.0], [-0.16, -0.45, 0.0], [-0.3, -0.22, 0.0],
        [-0.33, 0.02, -0.1],
    ],
    np.float32,
)  # fmt: skip


def make_result(num_frames: int = 12, optional: bool = True) -> dict[str, np.ndarray]:
    """An inference result (gentg_jax.viz): a waving arm, 2D by pinhole projection of the
    absolute pose, noisy predictions."""
    rng = np.random.default_rng(0)
    pose = np.repeat(STANDING[None], num_frames, axis=0)
    pose[:, 13, 1] += 0.2 * np.sin(np.arange(num_frames) / 2)  # left wrist moves every frame
    absolute = pose + np.array([0.0, 0.0, 4.5], np.float32)
    keypoints = absolute[..., :2] / absolute[..., 2:] * 1145.0 + np.array([512.0, 515.0])
    result = {
        "keypoints_2d": keypoints.astype(np.float32),
        "image_size": np.array([1000, 1002], np.int32),
        "coarse_3d": (pose + rng.normal(0, 0.02, pose.shape)).astype(np.float32),
        "uncertainty": rng.uniform(0.01, 0.08, (num_frames, 17)).astype(np.float32),
    }
    if optional:
        result["scores"] = rng.uniform(0.2, 1.0, (num_frames, 17)).astype(np.float32)
        result["refined_3d"] = (pose + rng.normal(0, 0.01, pose.shape)).astype(np.float32)
        result["resampled"] = (rng.uniform(size=(num_frames, 17)) > 0.7).astype(np.float32)
        result["ground_truth_3d"] = absolute.astype(np.float32)  # absolute on purpose
    return result


def evaluation_dict(with_p2: bool = True) -> dict:
    """Hand-made plot inputs (gentg_jax/evaluation/report.py) for two methods."""
    metrics = {"Walking": (45.0, 35.0), "Eating": (50.0, 38.0), "Sitting": (60.0, 45.0)}
    per_action = {
        method: {
            action: {"p1": p1 - shift, **({"p2": p2 - shift} if with_p2 else {})}
            for action, (p1, p2) in metrics.items()
        }
        for method, shift in (("tgt", 0.0), ("refined", 3.0))
    }
    calibration = {"sigma_mm": [10.0, 20.0, 30.0], "error_mm": [12.0, 18.0, 35.0]}
    return {"per_action": per_action, "calibration": calibration}


def evaluator_tables() -> dict:
    """Tables as gentg_jax.evaluation writes them: metric -> metrics.ProtocolTable.as_dict()."""
    frames = {"Walking 1": [0.040, 0.044], "Eating": [0.050], "Sitting 2": [0.061, 0.059]}
    tables = {}
    for metric, scale in (("P1", 1.0), ("P2", 0.8)):
        errors = {("S9", action, "54138969"): scale * np.array(v) for action, v in frames.items()}
        tables[metric] = metrics.protocol_table(errors).as_dict()
    return tables
