"""Shared pieces of the inference tests.

A tiny TGT checkpoint (random parameters, EMA made different from the raw ones) is saved
through checkpoint.CheckpointManager in the TrainState layout the training loop writes; the
training loop itself takes about a minute on this shared CPU, too long for these files' budget.
"""

import pathlib

import jax
import ml_collections
import numpy as np

from configs import tgt_base
from gentg_jax import camera, checkpoint, skeleton
from gentg_jax.models import tgt
from gentg_jax.train import state as state_lib

T = 16  # window length of the tiny TGT
SIZE = (1000.0, 1002.0)  # image (w, h)


def tgt_config() -> ml_collections.ConfigDict:
    config = tgt_base.get_config("tiny")
    config.data.num_frames = T
    config.model.update(dim=32, max_frames=T)
    return config


def save_checkpoint(workdir: pathlib.Path, config, params, ema_scale: float = 0.9) -> None:
    """Saves a step-1 checkpoint whose EMA parameters differ from the raw ones."""
    tx = state_lib.make_optimizer(tgt_base.get_config("tiny").train)
    state = state_lib.create_train_state(params, tx, jax.random.PRNGKey(0))
    state = state.replace(ema_params=jax.tree.map(lambda p: p * ema_scale, params))
    manager = checkpoint.CheckpointManager(checkpoint.checkpoint_directory(workdir))
    manager.save(1, jax.tree.map(np.asarray, state.to_checkpoint()), config=config)
    manager.wait()
    manager.close()
    checkpoint.save_config(workdir, config)


def random_params(init, *inputs, seed: int):
    """Parameters shaped as `init` makes them, with seeded random values (no init compile)."""
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), *inputs)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(np.float32), shapes)


def tgt_params(config, seed=1):
    model = tgt.TemporalGraphLimbTransformer.from_config(config.model)
    return random_params(model.init, np.zeros((1, T, 17, 2), np.float32), seed=seed)


def sequence(length, batch=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (length, 17) if batch is None else (batch, length, 17)
    keypoints = rng.uniform([300, 200], [700, 800], shape + (2,)).astype(np.float32)
    return keypoints, rng.uniform(0.2, 1.0, shape).astype(np.float32)


def reference(predictor, keypoints, scores, flip=True):
    """Independent per-window coarse prediction: model.apply on normalised pixels (B, T, ...)."""
    apply = jax.jit(tgt.TemporalGraphLimbTransformer.from_config(predictor.config.model).apply)
    variables = {"params": predictor.params["tgt"]}
    x = camera.normalize_screen_coordinates(keypoints, *SIZE)
    out, _ = apply(variables, x, scores)
    joints, log_sigma = out["joints_3d"], out["log_sigma"]
    if flip:
        perm = list(skeleton.FLIP_PERMUTATION)
        mirrored, _ = apply(variables, x[..., perm, :] * np.array([-1, 1]), scores[..., perm])
        joints = 0.5 * (joints + mirrored["joints_3d"][..., perm, :] * np.array([-1, 1, 1]))
        log_sigma = 0.5 * (log_sigma + mirrored["log_sigma"][..., perm])
    return np.asarray(joints), np.exp(np.asarray(log_sigma))
