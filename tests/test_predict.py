"""The lifting recipe (gentg_jax.predict): flip averaging, per-window noise, refinement that keeps
the confident joints, and lift_windows as the composition of the two."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gpc_base, tgt_base
from gentg_jax import diffusion, predict, skeleton
from gentg_jax.models import gpc, tgt

T = 9


class _LiftXY:
    """A stand-in lifter: joints = (x, y, 0) of the 2D plus a +3 cm x bias on every non-root
    joint (not mirror-symmetric), log sigma = the joint index."""

    def apply(self, variables, keypoints_2d, scores, train=False, rngs=None):
        del variables, scores, train, rngs
        bias = jnp.asarray([0.03, 0.0, 0.0]) * (jnp.arange(skeleton.NUM_JOINTS) > 0)[:, None]
        joints = jnp.concatenate([keypoints_2d, jnp.zeros_like(keypoints_2d[..., :1])], -1)
        log_sigma = jnp.broadcast_to(
            jnp.arange(skeleton.NUM_JOINTS, dtype=jnp.float32), keypoints_2d.shape[:-1]
        )
        return {"joints_3d": joints + bias, "log_sigma": log_sigma}, {}


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(-0.5, 0.5, (batch, T, 17, 2)).astype(np.float32)
    return keypoints, rng.uniform(0.3, 1.0, (batch, T, 17)).astype(np.float32)


def test_flip_averaging_cancels_a_mirror_asymmetric_bias():
    keypoints, scores = _inputs()
    lifted = np.concatenate([keypoints, np.zeros_like(keypoints[..., :1])], -1)
    plain, sigma = predict.coarse_pose(_LiftXY(), None, keypoints, scores, flip=False)
    np.testing.assert_allclose(np.asarray(plain)[..., 1:, 0] - lifted[..., 1:, 0], 0.03, atol=1e-6)
    joints, log_sigma = predict.coarse_pose(_LiftXY(), None, keypoints, scores, flip=True)
    np.testing.assert_allclose(joints, lifted, atol=1e-6)  # the +3 cm and its mirror cancel
    swapped = np.asarray(skeleton.FLIP_PERMUTATION, np.float32)
    np.testing.assert_allclose(log_sigma[0, 0], 0.5 * (np.arange(17) + swapped))


def test_window_keys_do_not_depend_on_the_batch():
    key = jax.random.PRNGKey(3)
    both = predict.window_keys(key, np.asarray([4, 9]))
    np.testing.assert_array_equal(both[1], predict.window_keys(key, np.asarray([9]))[0])
    np.testing.assert_array_equal(both[0], jax.random.fold_in(key, 4))


@pytest.fixture(scope="module")
def models():
    tgt_config = tgt_base.get_config("tiny")
    tgt_config.model.update(dim=16, depth=1, num_heads=2, max_frames=T)
    gpc_config = gpc_base.get_config("tiny")
    gpc_config.model.update(dim=16, depth=1, num_heads=2, max_frames=T)
    gpc_config.refine.update(selection="top_fraction", num_hypotheses=2, num_steps=2)
    tgt_model = tgt.TemporalGraphLimbTransformer.from_config(tgt_config.model)
    gpc_model = gpc.PoseDenoiser.from_config(gpc_config.model)
    keypoints, scores = _inputs(1)
    pose = jnp.zeros(keypoints.shape[:-1] + (3,))
    init = jax.jit(gpc_model.init)
    gpc_params = init(jax.random.PRNGKey(1), pose, jnp.zeros(1, jnp.int32), keypoints, pose, scores)
    gpc_params = gpc_params["params"]
    # Random everywhere: the zero-initialised residual head would return the coarse pose.
    rng = np.random.default_rng(2)
    gpc_params = jax.tree.map(lambda p: p + rng.normal(0, 0.1, p.shape), gpc_params)
    params = {"tgt": jax.jit(tgt_model.init)(jax.random.PRNGKey(0), keypoints, scores)["params"]}
    params["gpc"] = gpc_params
    schedule = diffusion.make_schedule(gpc_config.diffusion)
    refiner = predict.Refiner(gpc_model, schedule, gpc_config.refine)
    return tgt_model, refiner, params


def test_lift_windows_is_coarse_pose_then_per_window_refinement(models):
    tgt_model, refiner, params = models
    keypoints, scores = _inputs(3, seed=1)
    intrinsics = np.tile(np.asarray([1.1, 1.1, 0.0, 0.0, 0, 0, 0, 0, 0], np.float32), (3, 1))
    keys = predict.window_keys(jax.random.PRNGKey(0), np.arange(3))
    lift = jax.jit(functools.partial(predict.lift_windows, tgt_model=tgt_model, flip=True))
    coarse_only = lift(params, keypoints, scores, intrinsics, keys)
    out = jax.jit(
        functools.partial(predict.lift_windows, tgt_model=tgt_model, flip=True, refiner=refiner)
    )(params, keypoints, scores, intrinsics, keys)
    coarse = coarse_only["joints_3d"]
    np.testing.assert_allclose(out["coarse_3d"], coarse, atol=1e-6)
    mask = np.asarray(out["resample_mask"])
    assert mask.sum(-1).tolist() == [[4] * T] * 3  # top_fraction 0.25 of 16 non-root joints
    kept = np.broadcast_to(~mask[..., None], coarse.shape)
    refined, same_coarse = np.asarray(out["joints_3d"]), np.asarray(out["coarse_3d"])
    np.testing.assert_array_equal(refined[kept], same_coarse[kept])  # bit-identical
    assert np.abs(refined - same_coarse)[~kept].max() > 0
    # Window 1 alone, with its own key, refines exactly as inside the batch.
    alone = jax.jit(functools.partial(predict.refine_windows, refiner))(
        params["gpc"], out["coarse_3d"][1:2], out["log_sigma"][1:2],
        keypoints[1:2], intrinsics[1:2], keys[1:2],
    )  # fmt: skip
    np.testing.assert_allclose(alone["joints_3d"][0], out["joints_3d"][1], atol=1e-5)
