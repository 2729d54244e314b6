"""Speed measurements: median call times, and predict and train-step throughput.

Timings exclude compilation: one warm-up call, then the median of `repeats` calls, each ended by
`jax.block_until_ready`; beside the wall time, a CPU-bound time (see `median_times`) estimates
the idle-machine time on a shared CPU machine. Predict throughput times one TGT forward
(`programs.tgt_forward`); training throughput runs the real `train.steps.train_step` of the
config's task on a `train.parallel.DataParallel` layout. `predict_call` / `train_call` give the
prepared (compiled, placed) programs as zero-argument calls, and `alternating_times` times several
of them round-robin, so that their ratios come from one run on a shared machine.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from gentg_jax.profiling import programs
from gentg_jax.profiling.costs import jit_compile, memory_analysis
from gentg_jax.train import parallel, state, steps, tasks
from gentg_jax.types import Batch


def median_times(call: Callable[[], Any], repeats: int = 3) -> tuple[float, float]:
    """Median wall seconds and median CPU-bound seconds of `repeats` calls after one warm-up.

    CPU-bound seconds are the process CPU time (all threads) divided by the core count: the wall
    time the same work would take keeping every core busy without contention, an idle-machine
    estimate that other processes do not inflate (thread spin-waits count as work).
    """
    jax.block_until_ready(call())
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(call())
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu) / (os.cpu_count() or 1)


def timed(fn: Callable, args: Sequence[Any], repeats: int = 3) -> tuple[float, jax.stages.Compiled]:
    """jit-compiles fn for args; returns (median seconds per call, the compiled program)."""
    compiled = jit_compile(fn, *args)
    return median_times(lambda: compiled(*args), repeats)[0], compiled


def device_info() -> dict[str, Any]:
    device = jax.local_devices()[0]
    return {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
    }


def place_batch(layout: parallel.DataParallel, batch: Batch) -> Batch:
    """A host batch on the layout's devices (pmap batches too, so timings exclude transfers)."""
    placed = layout.shard_batch(batch)
    return jax.device_put(placed, layout.batch_sharding) if layout.mode == "pmap" else placed


def _measure(compiled: jax.stages.Compiled, call: Callable[[], Any], repeats: int) -> dict:
    """Times `call` (which runs `compiled`) and adds the program's static memory."""
    seconds, cpu_bound = median_times(call, repeats)
    return {"seconds": seconds, "cpu_bound_seconds": cpu_bound, "memory": memory_analysis(compiled)}


def predict_call(
    layout: parallel.DataParallel, forward: Callable, params, batch: Batch
) -> tuple[Callable[[], Any], jax.stages.Compiled]:
    """A zero-argument call running `forward(params, {'keypoints_2d', 'scores'})` compiled for
    `layout` on the host `batch` (placed on the devices first), and the compiled program."""
    inputs = place_batch(layout, {k: batch[k] for k in ("keypoints_2d", "scores")})
    params = layout.replicate(params)
    if layout.mode == "pmap":
        fn = jax.pmap(forward)
    elif layout.mode == "sharded":
        shardings = (layout.replicated, layout.batch_sharding)
        fn = jax.jit(forward, in_shardings=shardings, out_shardings=layout.batch_sharding)
    else:
        fn = jax.jit(forward)
    compiled = fn.lower(params, inputs).compile()
    return lambda: compiled(params, inputs), compiled


def predict_throughput(
    layout: parallel.DataParallel, task: tasks.Task, params, batch: Batch, repeats: int = 3
) -> dict[str, Any]:
    """frames/s of a TGT task's forward on a host `batch` (global batch) under `layout`, with
    its seconds and cpu_bound_seconds per call (see `median_times`) and memory."""
    call, compiled = predict_call(layout, programs.tgt_forward(task.model), params, batch)
    out = _measure(compiled, call, repeats)
    out["frames_per_s"] = math.prod(batch["keypoints_2d"].shape[:2]) / out["seconds"]
    return out


def train_call(
    config: ml_collections.ConfigDict,
    layout: parallel.DataParallel,
    task: tasks.Task,
    params,
    batch: Batch,
) -> tuple[Callable[[], Any], jax.stages.Compiled]:
    """A zero-argument call running one real train step (steps.train_step with the task's loss
    and optimiser) on `batch` under `layout`, threading the donated state from call to call
    (it returns (state, metrics); the state is donated again by the next call), and the
    compiled step."""
    tx = task.optimizer()
    host = jax.jit(lambda p: state.create_train_state(p, tx, jax.random.PRNGKey(0)))(params)
    train_state = layout.replicate(jax.tree.map(np.asarray, host))
    inputs = place_batch(layout, batch)
    step = layout.compile_step(functools.partial(steps.train_step, task=task, config=config))
    compiled = step.lower(train_state, inputs).compile()
    carry = [train_state]

    def call():
        carry[0], metrics = compiled(carry[0], inputs)  # the state is donated: thread it
        return carry[0], metrics

    return call, compiled


def train_throughput(
    config: ml_collections.ConfigDict,
    layout: parallel.DataParallel,
    task: tasks.Task,
    params,
    batch: Batch,
    repeats: int = 3,
) -> dict[str, Any]:
    """clips/s of the real train step (steps.train_step, the task's loss and optimiser), with
    its seconds and cpu_bound_seconds per call (see `median_times`) and memory."""
    call, compiled = train_call(config, layout, task, params, batch)
    out = _measure(compiled, call, repeats)
    out["clips_per_s"] = len(batch["keypoints_2d"]) / out["seconds"]
    return out


def alternating_times(
    calls: Mapping[str, Callable[[], Any]], repeats: int = 3, warmup: bool = True
) -> dict[str, dict[str, list[float]]]:
    """Times several calls in alternation (A B A B ...): after one untimed warm-up call each,
    `repeats` rounds in which every call runs once, in the given order.

    Calls compared this way share the machine's state (clock, cache, other processes' load)
    round by round, so their ratios hold on a shared machine where absolute times drift.

    Returns:
      {name: {'wall': [...], 'cpu': [...]}}: per round, the wall seconds and the process CPU
      seconds (all threads) of the call; cpu / wall is the cores the process kept busy.
    """
    if warmup:
        for call in calls.values():
            jax.block_until_ready(call())
    out = {name: {"wall": [], "cpu": []} for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(call())
            out[name]["wall"].append(time.perf_counter() - start)
            out[name]["cpu"].append(time.process_time() - start_cpu)
    return out


def summarize_times(times: Mapping[str, Mapping[str, list[float]]]) -> dict[str, dict[str, Any]]:
    """alternating_times' rounds with their medians: per name the rounds plus 'wall_s',
    'cpu_s' (median seconds) and 'util' (cpu_s / wall_s, the cores kept busy)."""
    out = {}
    for name, runs in times.items():
        wall, cpu = statistics.median(runs["wall"]), statistics.median(runs["cpu"])
        out[name] = {**runs, "wall_s": wall, "cpu_s": cpu, "util": cpu / wall}
    return out
