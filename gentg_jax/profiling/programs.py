"""What profiling measures: synthetic inputs, and the TGT and GPC programs that are counted and
timed (one TGT forward; a denoiser pass, one DDIM step and a full refinement of the GPC).

XLA's cost analysis counts a loop body once: programs built for counting use `unrolled`
model configs (the layer scan fully unrolled, same parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import diffusion, predict, skeleton
from gentg_jax.data import h36m
from gentg_jax.models import gpc, tgt
from gentg_jax.types import Batch, PyTree

GPC_PROGRAMS = ("denoise", "step", "refine")


def unrolled(model_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of a model config with its layer scan fully unrolled (for FLOP counting)."""
    model_config = model_config.copy_and_resolve_references()
    with model_config.unlocked():  # configs without the field get the models' default (1)
        model_config.scan_unroll = model_config.depth
    return model_config


def synthetic_batch(batch_size: int, num_frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random training batch with the pipeline's keys, shapes and dtypes (values only need to
    be plausible: FLOPs and speed do not depend on them)."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, num_frames, skeleton.NUM_JOINTS)
    pose = rng.normal(0.0, 0.25, shape + (3,)).astype(np.float32)
    pose[:, :, skeleton.ROOT] = 0.0
    intrinsic = h36m.camera(h36m.TRAIN_SUBJECTS[0], 0).intrinsic
    return {
        "keypoints_2d": rng.uniform(-0.5, 0.5, shape + (2,)).astype(np.float32),
        "scores": rng.uniform(0.3, 1.0, shape).astype(np.float32),
        "pose_3d": pose,
        "intrinsics": np.tile(np.asarray(intrinsic, np.float32), (batch_size, 1)),
        "frame_mask": np.ones(shape[:2], np.float32),
    }


def init_params(task, batch: Batch, seed: int = 0) -> PyTree:
    """A task's initial parameters for `batch` (jitted)."""
    return jax.jit(task.init_params)(jax.random.PRNGKey(seed), batch)


def tgt_forward(model: tgt.TemporalGraphLimbTransformer):
    """(params, {'keypoints_2d', 'scores'}) -> one TGT forward's joints and log sigma (no flip
    averaging: the cost of the network itself)."""

    def forward(params, inputs):
        out = predict.tgt_outputs(model, params, inputs["keypoints_2d"], inputs["scores"])
        return {"joints_3d": out["joints_3d"], "log_sigma": out["log_sigma"]}

    return forward


def gpc_inputs(config: ml_collections.ConfigDict, batch: Batch) -> dict[str, jax.Array]:
    """Refinement inputs: the batch's 2D and camera, a coarse pose simulated from its 3D."""
    coarse, log_sigma = diffusion.simulate_coarse(
        jax.random.PRNGKey(1), jnp.asarray(batch["pose_3d"]), config.gt_noise
    )
    return {
        "keypoints_2d": jnp.asarray(batch["keypoints_2d"]),
        "coarse_3d": coarse,
        "log_sigma": log_sigma,
        "intrinsics": jnp.asarray(batch["intrinsics"]),
    }


def gpc_program(model: gpc.PoseDenoiser, config: ml_collections.ConfigDict, program: str):
    """(params, inputs, key) -> the output of a GPC program: "denoise" is one denoiser pass (at
    level t_max), "step" one DDIM step of every hypothesis (refine's loop body), "refine" the
    refinement recipe `predict.refine_windows` with config.refine."""
    if program not in GPC_PROGRAMS:
        raise ValueError(f"unknown GPC program {program!r}; one of {GPC_PROGRAMS}")
    schedule = diffusion.make_schedule(config.diffusion)

    def fn(params, inputs, key):
        coarse, log_sigma, points = (inputs[k] for k in ("coarse_3d", "log_sigma", "keypoints_2d"))
        if program == "refine":
            refiner = predict.Refiner(model, schedule, config.refine)
            keys = predict.window_keys(key, jnp.arange(coarse.shape[0]))
            args = (coarse, log_sigma, points, inputs["intrinsics"], keys)
            return predict.refine_windows(refiner, params, *args)["joints_3d"]
        denoise = gpc.make_denoise_fn(model, params, points, coarse, log_sigma)
        t = jnp.full(coarse.shape[:1], config.refine.t_max, jnp.int32)
        if program == "denoise":
            return denoise(coarse, t)
        sample = lambda k: diffusion.ddim_sample(denoise, schedule, coarse, t, k, num_steps=1)
        return jax.vmap(sample)(jax.random.split(key, config.refine.num_hypotheses))

    return fn


def denoiser_params(model: gpc.PoseDenoiser, inputs, abstract: bool) -> PyTree:
    """The denoiser's initial parameters for `inputs` (only their shapes when `abstract`)."""
    t = jnp.zeros(inputs["coarse_3d"].shape[:1], jnp.int32)
    args = (inputs["coarse_3d"], t, inputs["keypoints_2d"], inputs["coarse_3d"])
    init = lambda key: model.init(key, *args, inputs["log_sigma"])["params"]
    key = jax.random.PRNGKey(0)
    return jax.eval_shape(init, key) if abstract else jax.jit(init)(key)
