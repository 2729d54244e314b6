"""The lifting recipe: the one definition of "the model's answer" that the training tasks,
evaluation and inference all call, so the evaluated number is the number users get.

  coarse_pose     the TGT's joints and log sigma, averaged with its prediction on the mirrored
                  input mirrored back (test-time flip augmentation) when `flip`
  refine_windows  the GPC's uncertainty-guided selective resampling of a coarse pose
                  (`diffusion.refine`), each window with its own noise key
  lift_windows    both: coarse, then refined when a `Refiner` is given

Everything is pure and jittable; parameters are arguments. Outputs, per window (N, T, 17, ...):
'joints_3d' (the deployable pose: refined when refining, else the coarse one), 'coarse_3d',
'log_sigma' and, when refining, 'refined_h1' (the first hypothesis alone), 'refined_mean',
'refined_reproj' (the two aggregates, one of which is 'joints_3d') and 'resample_mask' (bool).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import diffusion, skeleton
from gentg_jax.models import gpc, tgt
from gentg_jax.types import PyTree

# numpy, not jnp: importing the library must not start the XLA backend (XLA_FLAGS set after
# import, e.g. a forced host device count, would be ignored).
_FLIP = np.asarray(skeleton.FLIP_PERMUTATION)


class Refiner(NamedTuple):
    """The GPC corrector's static pieces: its network, noise schedule and `config.refine`."""

    model: gpc.PoseDenoiser
    schedule: diffusion.Schedule
    config: ml_collections.ConfigDict


def tgt_outputs(
    model: tgt.TemporalGraphLimbTransformer,
    params: PyTree,
    keypoints_2d: jax.Array,
    scores: jax.Array,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """One TGT forward: its output dict ('joints_3d', 'log_sigma', 'bones_3d', ...)."""
    rngs = {"dropout": rng} if rng is not None else {}
    outputs, _ = model.apply({"params": params}, keypoints_2d, scores, train=train, rngs=rngs)
    return outputs


def coarse_pose(
    model: tgt.TemporalGraphLimbTransformer,
    params: PyTree,
    keypoints_2d: jax.Array,
    scores: jax.Array,
    *,
    flip: bool,
) -> tuple[jax.Array, jax.Array]:
    """The TGT's (joints_3d, log_sigma) for normalised 2D windows (N, T, 17, 2) and scores.

    With `flip`, averaged with the prediction on the left-right mirrored input, mirrored back:
    joints by `skeleton.flip_poses`, log sigma by the joint permutation.
    """
    out = tgt_outputs(model, params, keypoints_2d, scores)
    joints, log_sigma = out["joints_3d"], out["log_sigma"]
    if flip:
        mirrored = tgt_outputs(model, params, skeleton.flip_poses(keypoints_2d), scores[..., _FLIP])
        joints = 0.5 * (joints + skeleton.flip_poses(mirrored["joints_3d"]))
        log_sigma = 0.5 * (log_sigma + mirrored["log_sigma"][..., _FLIP])
    return joints, log_sigma


def window_keys(key: jax.Array, window_ids: jax.Array) -> jax.Array:
    """(N,) keys: window n's is fold_in(key, window_ids[n]), independent of how it is batched."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(window_ids, jnp.int32))


def _refine_window(refiner: Refiner, params, coarse, log_sigma, keypoints_2d, intrinsics, key):
    """`diffusion.refine` of one window (T, 17, ...), as a batch of one (vmapped over windows)."""
    coarse, log_sigma, keypoints_2d = coarse[None], log_sigma[None], keypoints_2d[None]
    denoise_fn = gpc.make_denoise_fn(refiner.model, params, keypoints_2d, coarse, log_sigma)
    out = diffusion.refine(
        denoise_fn,
        refiner.schedule,
        coarse,
        log_sigma,
        keypoints_2d,
        intrinsics[None],
        key,
        config=refiner.config,
    )
    out["refined_h1"] = out.pop("hypotheses")[0]
    del out["t_start"]
    return {name: value[0] for name, value in out.items()}


def refine_windows(
    refiner: Refiner,
    params: PyTree,
    coarse: jax.Array,
    log_sigma: jax.Array,
    keypoints_2d: jax.Array,
    intrinsics: jax.Array,
    keys: jax.Array,
) -> dict[str, jax.Array]:
    """Refines coarse windows (N, T, 17, 3) given their log sigma, 2D, intrinsics (N, 9) and
    one key per window (`window_keys`); returns the module's output dict."""
    refine_fn = functools.partial(_refine_window, refiner, params)
    out = jax.vmap(refine_fn)(coarse, log_sigma, keypoints_2d, intrinsics, keys)
    return {
        "joints_3d": out["refined_3d"],
        "coarse_3d": coarse,
        "log_sigma": log_sigma,
        "refined_h1": out["refined_h1"],
        "refined_mean": out["refined_mean"],
        "refined_reproj": out["refined_reproj"],
        "resample_mask": out["resample_mask"],
    }


def lift_windows(
    params: PyTree,
    keypoints_2d: jax.Array,
    scores: jax.Array,
    intrinsics: jax.Array,
    keys: jax.Array,
    *,
    tgt_model: tgt.TemporalGraphLimbTransformer,
    flip: bool,
    refiner: Refiner | None = None,
) -> dict[str, jax.Array]:
    """The coarse pose of a batch of windows and, with a refiner, its refinement.

    Args:
      params: {'tgt': ...} and, when refining, {'gpc': ...}.
      keypoints_2d: (N, T, 17, 2) normalised screen coordinates; scores (N, T, 17).
      intrinsics: (N, 9) normalised (the reprojection aggregate and root estimate).
      keys: (N,) per-window noise keys (`window_keys`); unused without a refiner.
      tgt_model: the lifter; flip: test-time flip averaging of the coarse pose.
      refiner: the corrector, or None for the coarse pose only.

    Returns:
      The output dict described in the module docstring.
    """
    coarse, log_sigma = coarse_pose(tgt_model, params["tgt"], keypoints_2d, scores, flip=flip)
    if refiner is None:
        return {"joints_3d": coarse, "coarse_3d": coarse, "log_sigma": log_sigma}
    args = (coarse, log_sigma, keypoints_2d, intrinsics, keys)
    return refine_windows(refiner, params["gpc"], *args)
