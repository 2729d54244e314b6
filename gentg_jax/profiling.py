"""Cost and speed profiles of TGT and GPC configs, and their tables.

Everything returns plain dicts (JSON-ready) and `format_table` prints them. XLA's cost analysis
counts a loop body once: models are therefore compiled with their layer scan fully unrolled
(`scan_unroll = depth`, same parameters) for counting, and the K-step DDIM loop of
`diffusion.refine` is corrected by adding K - 1 more measured steps. The counters are
`profiling_costs`' and the timings `profiling_timing`'s, re-exported here with the profiles.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import camera, diffusion, skeleton
from gentg_jax.models import gpc
from gentg_jax.profiling_costs import (
    attention_flops,
    dense_flops,
    device_peak_memory,
    jit_compile,
    memory_analysis,
    param_count,
    spatiotemporal_flops_per_frame,
    xla_flops,
)
from gentg_jax.profiling_timing import (
    Batch,
    device_info,
    median_times,
    predict_throughput,
    timed,
    train_throughput,
)
from gentg_jax.train import parallel, steps, tasks

__all__ = [
    "attention_flops",
    "dense_flops",
    "device_info",
    "format_rows",
    "format_table",
    "format_value",
    "gpc_flops",
    "init_params",
    "median_times",
    "memory_analysis",
    "param_count",
    "predict_throughput",
    "profile",
    "synthetic_batch",
    "tgt_flops_per_frame",
    "timed",
    "train_throughput",
    "xla_flops",
]

PyTree = Any


def _unrolled(model_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
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
    intrinsic = camera.camera(camera.TRAIN_SUBJECTS[0], 0).intrinsic
    return {
        "keypoints_2d": rng.uniform(-0.5, 0.5, shape + (2,)).astype(np.float32),
        "scores": rng.uniform(0.3, 1.0, shape).astype(np.float32),
        "pose_3d": pose,
        "intrinsics": np.tile(np.asarray(intrinsic, np.float32), (batch_size, 1)),
        "frame_mask": np.ones(shape[:2], np.float32),
    }


def init_params(task: tasks.Task, batch: Batch, seed: int = 0) -> PyTree:
    return jax.jit(task.init_params)(jax.random.PRNGKey(seed), batch)


def tgt_flops_per_frame(config: ml_collections.ConfigDict, batch: Batch) -> float:
    """XLA FLOPs per frame of one TGT forward (layers unrolled) on `batch`."""
    config = config.copy_and_resolve_references()
    config.model = _unrolled(config.model)
    task = tasks.get_task(config)
    inputs = {k: batch[k] for k in ("keypoints_2d", "scores")}
    params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), batch)
    compiled = jit_compile(functools.partial(steps.predict_step, task=task), params, inputs)
    return xla_flops(compiled) / math.prod(batch["scores"].shape[:2])


def _tgt_costs(config: ml_collections.ConfigDict, batch: Batch, repeats: int) -> dict[str, Any]:
    """Parameters, FLOPs, batch-1 latency, frames/s and predict memory of a TGT config."""
    frames = config.data.num_frames
    task = tasks.get_task(config)
    params = init_params(task, batch, config.seed)
    single = parallel.DataParallel("single")
    # The batch-1 latency of one window, then the throughput at the batch's size.
    latency = predict_throughput(single, task, params, synthetic_batch(1, frames), repeats)
    throughput = predict_throughput(single, task, params, batch, repeats)
    tokens = task.model.num_tokens
    return {
        "params": param_count(params),
        "flops_per_frame": tgt_flops_per_frame(config, batch),
        "analytic_flops_per_frame": spatiotemporal_flops_per_frame(config.model, tokens, frames),
        "latency_ms": 1e3 * latency["seconds"],
        "frames_per_s": throughput["frames_per_s"],
        "memory": {"predict": throughput["memory"]},
    }


def _gpc_inputs(config: ml_collections.ConfigDict, batch: Batch) -> dict[str, jax.Array]:
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


def _gpc_fn(model: gpc.PoseDenoiser, config: ml_collections.ConfigDict, program: str):
    """(params, inputs, key) -> the output of a GPC program that is counted and timed:
    "denoise" is one denoiser pass (at level t_max), "refine" is diffusion.refine with
    config.refine, and "step" is one DDIM step of every hypothesis (refine's loop body)."""
    schedule = diffusion.make_schedule(config.diffusion)

    def fn(params, inputs, key):
        coarse, log_sigma, points = (inputs[k] for k in ("coarse_3d", "log_sigma", "keypoints_2d"))
        denoise = gpc.make_denoise_fn(model, params, points, coarse, log_sigma)
        t = jnp.full(coarse.shape[:1], config.refine.t_max, jnp.int32)
        if program == "denoise":
            return denoise(coarse, t)
        if program == "step":
            sample = lambda k: diffusion.ddim_sample(denoise, schedule, coarse, t, k, num_steps=1)
            return jax.vmap(sample)(jax.random.split(key, config.refine.num_hypotheses))
        intrinsics = inputs["intrinsics"]
        refined = diffusion.refine(
            denoise, schedule, coarse, log_sigma, points, intrinsics, key, config=config.refine
        )
        return refined["refined_3d"]

    return fn


def _denoiser_params(model: gpc.PoseDenoiser, inputs, abstract: bool) -> PyTree:
    t = jnp.zeros(inputs["coarse_3d"].shape[:1], jnp.int32)
    args = (inputs["coarse_3d"], t, inputs["keypoints_2d"], inputs["coarse_3d"])
    init = lambda key: model.init(key, *args, inputs["log_sigma"])["params"]
    key = jax.random.PRNGKey(0)
    return jax.eval_shape(init, key) if abstract else jax.jit(init)(key)


def gpc_flops(
    config: ml_collections.ConfigDict, tgt_config: ml_collections.ConfigDict, batch: Batch
) -> dict[str, float]:
    """Denoiser and refinement FLOPs per frame, and the refinement's cost in TGT forwards.

    refine_tgt_passes = FLOPs(diffusion.refine with config.refine) / FLOPs(one TGT forward),
    both on `batch`. XLA counts refine's K-step sampling loop once, so K - 1 separately compiled
    steps (all hypotheses) are added.
    """
    model = gpc.PoseDenoiser.from_config(_unrolled(config.model))
    inputs = _gpc_inputs(config, batch)
    params = _denoiser_params(model, inputs, abstract=True)
    args = (params, inputs, jax.random.PRNGKey(0))
    frames = math.prod(batch["scores"].shape[:2])
    denoiser = xla_flops(jit_compile(_gpc_fn(model, config, "denoise"), *args)) / frames
    refine = xla_flops(jit_compile(_gpc_fn(model, config, "refine"), *args))
    if config.refine.num_steps > 1:
        step = xla_flops(jit_compile(_gpc_fn(model, config, "step"), *args))
        refine += (config.refine.num_steps - 1) * step
    tgt = tgt_flops_per_frame(tgt_config, batch)
    return {
        "flops_per_frame": denoiser,
        "tgt_flops_per_frame": tgt,
        "refine_flops_per_frame": refine / frames,
        "refine_tgt_passes": refine / frames / tgt,
        "denoiser_passes": diffusion.denoiser_passes(config.refine),
    }


def _add_train(out: dict, config: ml_collections.ConfigDict, batch: Batch, repeats: int) -> None:
    """Adds train clips/s and memory on one device, or why the config's task cannot be built."""
    try:
        task = tasks.get_task(config)
    except ValueError as error:
        out["train_skipped"] = str(error)
        return
    params = init_params(task, batch, config.seed)
    result = train_throughput(config, parallel.DataParallel("single"), task, params, batch, repeats)
    out["train_clips_per_s"] = result["clips_per_s"]
    out["memory"]["train"] = result["memory"]


def _gpc_costs(
    config: ml_collections.ConfigDict,
    tgt_config: ml_collections.ConfigDict,
    batch: Batch,
    repeats: int,
) -> dict[str, Any]:
    """The GPC denoiser's parameters, FLOPs and speed (one pass and a full refinement), and the
    refinement's cost in forwards of the TGT `tgt_config` on the same windows."""
    frames = config.data.num_frames
    model = gpc.PoseDenoiser.from_config(config.model)
    inputs = _gpc_inputs(config, batch)
    params = _denoiser_params(model, inputs, abstract=False)
    tgt_task = tasks.get_task(tgt_config)
    tgt_params = jax.eval_shape(tgt_task.init_params, jax.random.PRNGKey(0), batch)
    one = _gpc_inputs(config, synthetic_batch(1, frames))
    key = jax.random.PRNGKey(0)
    speed = {}
    for name, program, x in (
        ("latency", "denoise", one),
        ("denoiser", "denoise", inputs),
        ("refine_latency", "refine", one),
        ("refine", "refine", inputs),
    ):
        seconds, compiled = timed(_gpc_fn(model, config, program), (params, x, key), repeats)
        frames_per_s = len(x["coarse_3d"]) * frames / seconds
        speed[name] = {"seconds": seconds, "frames_per_s": frames_per_s}
        speed[name]["memory"] = memory_analysis(compiled)
    joints = skeleton.NUM_JOINTS
    return {
        "params": param_count(params),
        "tgt_params": param_count(tgt_params),
        "analytic_flops_per_frame": spatiotemporal_flops_per_frame(config.model, joints, frames),
        **gpc_flops(config, tgt_config, batch),
        "latency_ms": 1e3 * speed["latency"]["seconds"],
        "frames_per_s": speed["denoiser"]["frames_per_s"],
        "refine_latency_ms": 1e3 * speed["refine_latency"]["seconds"],
        "refine_frames_per_s": speed["refine"]["frames_per_s"],
        "memory": {"predict": speed["denoiser"]["memory"], "refine": speed["refine"]["memory"]},
    }


def profile(
    config: ml_collections.ConfigDict,
    tgt_config: ml_collections.ConfigDict | None = None,
    batch_size: int = 8,
    *,
    train: bool = True,
    repeats: int = 3,
) -> dict[str, Any]:
    """The cost and speed of a config on `batch_size` synthetic windows, as a JSON-ready dict.

    By config.task: a TGT's parameters, FLOPs, batch-1 latency, frames/s and memory, or a GPC
    denoiser's (one pass and a full refinement, with the refinement's cost in forwards of its
    TGT, `tgt_config`); with `train`, the train step's clips/s and memory on one device.
    """
    if config.task not in ("tgt", "gpc"):
        raise ValueError(f"config.task={config.task!r}: profiling knows 'tgt' and 'gpc'")
    if config.task == "gpc" and tgt_config is None:
        raise ValueError("profiling a GPC config needs tgt_config (the matching TGT config)")
    frames = config.data.num_frames
    batch = synthetic_batch(batch_size, frames)
    out = {"model": config.task, "dtype": config.model.dtype, **device_info()}
    out.update(batch=batch_size, frames=frames)
    if config.task == "tgt":
        out.update(_tgt_costs(config, batch, repeats))
    else:
        out.update(_gpc_costs(config, tgt_config, batch, repeats))
    if train:
        _add_train(out, config, batch, repeats)
    out["memory"]["device_peak_bytes"] = device_peak_memory()
    return out


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for name, value in tree.items():
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{prefix}{name}.")
        else:
            rows.append((prefix + name, value))
    return rows


def format_value(name: str, value: Any) -> str:
    """A table cell: bytes in MiB, FLOPs in GFLOP, floats to 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("_bytes"):
        return f"{value / 2**20:,.1f} MiB"
    if name.endswith("flops_per_frame"):
        return f"{value / 1e9:.4g} GFLOP"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def format_table(profile_dict: Mapping[str, Any]) -> str:
    """Two aligned columns, one row per (flattened) entry of a profile dict."""
    rows = _flatten(profile_dict)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {format_value(name, value)}" for name, value in rows)


def format_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A column table of dicts (one line each), cells formatted by `format_value`."""
    cells = [list(columns)] + [[format_value(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells
    )
