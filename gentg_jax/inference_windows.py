"""Sliding windows for inference: where they start, what the models predict on a batch of them,
and how overlapping window outputs are blended back into one sequence.

A sequence is cut into windows of the model's T frames (stride `stride`, the last window aligned
to the sequence end; a sequence shorter than T is edge-padded at its end). `window_outputs` is
the pure function the Predictor jits with the parameters as an argument; `blend_windows` averages
the windows' outputs with Hann weights, which are strictly positive so every frame is covered.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import diffusion, skeleton
from gentg_jax.data import pipeline
from gentg_jax.models import gpc, tgt

PyTree = Any
_FLIP = np.asarray(skeleton.FLIP_PERMUTATION)


def window_starts(length: int, num_frames: int, stride: int) -> np.ndarray:
    """First frames of the windows covering `length` frames: every `stride` frames from 0, plus
    one aligned to the end when needed; a single window at 0 when length <= num_frames."""
    if not 1 <= stride <= num_frames:
        raise ValueError(f"window stride must be in [1, {num_frames}], got {stride}")
    last = max(length - num_frames, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return np.asarray(starts, np.int32)


def window_frames(starts: np.ndarray, num_frames: int, length: int) -> np.ndarray:
    """(W, T) frame indices of each window; frames past the sequence end repeat its last one."""
    return np.minimum(starts[:, None] + np.arange(num_frames), length - 1)


def blend_weights(num_frames: int) -> np.ndarray:
    """(T,) strictly positive Hann weights for averaging overlapping window outputs."""
    return np.sin(np.pi * (np.arange(num_frames) + 1) / (num_frames + 1)) ** 2


def blend_windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, W, T, ...) window outputs -> (B, length, ...) weighted average over covering windows."""
    weights = blend_weights(values.shape[2])
    trailing = (1,) * (values.ndim - 3)
    total = np.zeros((values.shape[0], length) + values.shape[3:], np.float64)
    norm = np.zeros(length, np.float64)
    for index, start in enumerate(starts):
        n = min(len(weights), length - start)
        total[:, start : start + n] += weights[:n].reshape((n,) + trailing) * values[:, index, :n]
        norm[start : start + n] += weights[:n]
    return (total / norm.reshape((length,) + trailing)).astype(np.float32)


class Refiner(NamedTuple):
    """The GPC corrector's static pieces: its network, noise schedule and refinement config."""

    model: gpc.PoseDenoiser
    schedule: diffusion.Schedule
    config: ml_collections.ConfigDict


def _coarse(model, params, keypoints_2d, scores, flip: bool):
    outputs, _ = model.apply({"params": params}, keypoints_2d, scores, train=False)
    joints, log_sigma = outputs["joints_3d"], outputs["log_sigma"]
    if flip:  # as evaluation: average with the mirrored input's prediction, mirrored back
        mirrored, _ = model.apply(
            {"params": params}, pipeline.flip_poses(keypoints_2d), scores[..., _FLIP], train=False
        )
        joints = 0.5 * (joints + pipeline.flip_poses(mirrored["joints_3d"]))
        log_sigma = 0.5 * (log_sigma + mirrored["log_sigma"][..., _FLIP])
    return joints, log_sigma


def _refine_window(refiner: Refiner, params, coarse, log_sigma, keypoints_2d, intrinsics, key):
    """Refines one window (T, 17, ...); vmapped so that every window has its own noise."""
    coarse, log_sigma, keypoints_2d = coarse[None], log_sigma[None], keypoints_2d[None]
    denoise_fn = gpc.make_denoise_fn(refiner.model, params, keypoints_2d, coarse, log_sigma)
    args = (denoise_fn, refiner.schedule, coarse, log_sigma, keypoints_2d, intrinsics[None], key)
    return diffusion.refine(*args, config=refiner.config)["refined_3d"][0]


def window_outputs(
    params: PyTree,
    keypoints_2d: jax.Array,
    scores: jax.Array,
    intrinsics: jax.Array,
    window_ids: jax.Array,
    seed: jax.Array,
    *,
    tgt_model: tgt.TemporalGraphLimbTransformer,
    flip: bool,
    refiner: Refiner | None = None,
) -> dict[str, jax.Array]:
    """Predictions for a batch of windows (pure; jit it with params as an argument).

    The coarse pose is flip-averaged when `flip` (as evaluation does); the corrector then
    refines the averaged coarse pose.

    Args:
      params: {'tgt': ..., 'gpc': ... (when refining)}.
      keypoints_2d: (N, T, 17, 2) normalised; scores (N, T, 17); intrinsics (N, 9) normalised.
      window_ids: (N,) int: window n's noise key is fold_in(PRNGKey(seed), window_ids[n]).
      seed: int scalar.

    Returns:
      'coarse_3d' (N, T, 17, 3), 'uncertainty' (N, T, 17) sigma in metres and, with a refiner,
      'refined_3d' (N, T, 17, 3).
    """
    coarse, log_sigma = _coarse(tgt_model, params["tgt"], keypoints_2d, scores, flip)
    out = {"coarse_3d": coarse, "uncertainty": jnp.exp(log_sigma)}
    if refiner is not None:
        base = jax.random.PRNGKey(seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(window_ids)
        refine_fn = functools.partial(_refine_window, refiner, params["gpc"])
        out["refined_3d"] = jax.vmap(refine_fn)(coarse, log_sigma, keypoints_2d, intrinsics, keys)
    return out
