"""Cost and speed profiles of TGT and GPC configs, and their tables.

`profile(config)` gathers `costs` (parameters, FLOPs) and `timing` (latency, throughput,
memory) of the `programs` into a plain JSON-ready dict; `format_table` / `format_rows` print
profiles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections

from gentg_jax import logs, skeleton
from gentg_jax.models import gpc
from gentg_jax.profiling import costs, programs, timing
from gentg_jax.train import parallel, registry
from gentg_jax.types import Batch


class _Stages:
    """A progress bar over the profile's measurements (each compiles a program first)."""

    def __init__(self, total: int):
        self.bar = logs.progress(desc="profile", total=total, unit="stage")

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        yield
        self.bar.update()


def _tgt_costs(
    config: ml_collections.ConfigDict, batch: Batch, repeats: int, stage: _Stages
) -> dict[str, Any]:
    """Parameters, FLOPs, batch-1 latency, frames/s and predict memory of a TGT config."""
    frames = config.data.num_frames
    task = registry.get_task(config)
    params = programs.init_params(task, batch, config.seed)
    single = parallel.DataParallel("single")
    # The batch-1 latency of one window, then the throughput at the batch's size.
    one = programs.synthetic_batch(1, frames)
    with stage("latency"):
        latency = timing.predict_throughput(single, task, params, one, repeats)
    with stage("throughput"):
        throughput = timing.predict_throughput(single, task, params, batch, repeats)
    tokens, temporal_tokens = task.model.num_tokens, task.model.temporal_tokens
    with stage("FLOPs"):
        flops = costs.tgt_flops_per_frame(config, batch)
    return {
        "params": costs.param_count(params),
        "flops_per_frame": flops,
        "analytic_flops_per_frame": costs.spatiotemporal_flops_per_frame(
            config.model, tokens, frames, temporal_tokens
        ),
        "latency_ms": 1e3 * latency["seconds"],
        "frames_per_s": throughput["frames_per_s"],
        "memory": {"predict": throughput["memory"]},
    }


def _add_train(out: dict, config: ml_collections.ConfigDict, batch: Batch, repeats: int) -> None:
    """Adds train clips/s and memory on one device, or why the config's task cannot be built."""
    try:
        task = registry.get_task(config)
    except ValueError as error:
        out["train_skipped"] = str(error)
        return
    params = programs.init_params(task, batch, config.seed)
    single = parallel.DataParallel("single")
    result = timing.train_throughput(config, single, task, params, batch, repeats)
    out["train_clips_per_s"] = result["clips_per_s"]
    out["memory"]["train"] = result["memory"]


def _gpc_costs(
    config: ml_collections.ConfigDict,
    tgt_config: ml_collections.ConfigDict,
    batch: Batch,
    repeats: int,
    stage: _Stages,
) -> dict[str, Any]:
    """The GPC denoiser's parameters, FLOPs and speed (one pass and a full refinement), and the
    refinement's cost in forwards of the TGT `tgt_config` on the same windows."""
    frames = config.data.num_frames
    model = gpc.PoseDenoiser.from_config(config.model)
    inputs = programs.gpc_inputs(config, batch)
    params = programs.denoiser_params(model, inputs, abstract=False)
    tgt_task = registry.get_task(tgt_config)
    tgt_params = jax.eval_shape(tgt_task.init_params, jax.random.PRNGKey(0), batch)
    one = programs.gpc_inputs(config, programs.synthetic_batch(1, frames))
    key = jax.random.PRNGKey(0)
    speed = {}
    for name, program, x in (
        ("latency", "denoise", one),
        ("denoiser", "denoise", inputs),
        ("refine_latency", "refine", one),
        ("refine", "refine", inputs),
    ):
        fn = programs.gpc_program(model, config, program)
        with stage(name):
            seconds, compiled = timing.timed(fn, (params, x, key), repeats)
        frames_per_s = len(x["coarse_3d"]) * frames / seconds
        speed[name] = {"seconds": seconds, "frames_per_s": frames_per_s}
        speed[name]["memory"] = costs.memory_analysis(compiled)
    joints = skeleton.NUM_JOINTS
    with stage("FLOPs"):
        flops = costs.gpc_flops(config, tgt_config, batch)
    return {
        "params": costs.param_count(params),
        "tgt_params": costs.param_count(tgt_params),
        "analytic_flops_per_frame": costs.spatiotemporal_flops_per_frame(
            config.model, joints, frames
        ),
        **flops,
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
    batch = programs.synthetic_batch(batch_size, frames)
    out = {"model": config.task, "dtype": config.model.dtype, **timing.device_info()}
    out.update(batch=batch_size, frames=frames)
    stage = _Stages((3 if config.task == "tgt" else 5) + int(train))
    if config.task == "tgt":
        out.update(_tgt_costs(config, batch, repeats, stage))
    else:
        out.update(_gpc_costs(config, tgt_config, batch, repeats, stage))
    if train:
        with stage("train step"):
            _add_train(out, config, batch, repeats)
    stage.bar.close()
    out["memory"]["device_peak_bytes"] = costs.device_peak_memory()
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
