"""TGT throughput: params, FLOPs/frame, inference frames/s, training clips/s and XLA memory.

  python -m benchmarks.tgt_throughput --config base --json benchmarks/results/tgt_throughput.json

Compilation is excluded (programs are compiled ahead of time, then run once untimed); each figure
is the median of --iters timed runs. FLOPs come from XLA's cost analysis of the forward pass with
the layer scan fully unrolled (XLA counts a loop body once). Memory comes from
`compile().memory_analysis()` of a training step (loss + grad + clipped AdamW update). The reference
column is a MixSTE PyTorch model measured on the same 2-core CPU machine kind.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from configs import tgt_base
from gentg_jax import losses
from gentg_jax.models import TemporalGraphLimbTransformer

# MixSTE (PyTorch, float32) on this machine kind; the targets are twice these.
REFERENCE = {
    "infer_b1_frames_per_s": 132.0,
    "infer_b8_frames_per_s": 106.0,
    "train_b8_clips_per_s": 0.099,
}
GIB = 2.0**30


def fake_batch(batch: int, frames: int, seed: int = 0) -> dict[str, jax.Array]:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    pose = 0.3 * jax.random.normal(k3, (batch, frames, 17, 3))
    return {
        "keypoints_2d": 0.3 * jax.random.normal(k1, (batch, frames, 17, 2)),
        "scores": jax.random.uniform(k2, (batch, frames, 17)),
        "pose_3d": pose - pose[:, :, :1],
        "frame_mask": jnp.ones((batch, frames)),
    }


def time_runs(fn: Callable[[], object], iters: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of `iters` runs after one untimed warm-up run.

    CPU seconds (all threads) divided by the core count are the wall time the same work would
    take if it kept every core busy without contention: an idle-machine estimate that other
    processes do not inflate (thread spin-waits do), reported beside the measured wall time.
    """
    jax.block_until_ready(fn())
    wall, cpu = [], []
    for _ in range(iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu) / (os.cpu_count() or 1)


def memory_dict(compiled) -> dict[str, float]:
    stats = compiled.memory_analysis()
    out = {
        "temp_gib": stats.temp_size_in_bytes / GIB,
        "argument_gib": stats.argument_size_in_bytes / GIB,
        "output_gib": stats.output_size_in_bytes / GIB,
        "alias_gib": stats.alias_size_in_bytes / GIB,
    }
    # Donated outputs alias their arguments, so they are not counted twice.
    out["peak_gib"] = out["temp_gib"] + out["argument_gib"] + out["output_gib"] - out["alias_gib"]
    return out


def make_train_step(model: TemporalGraphLimbTransformer, config, tx: optax.GradientTransformation):
    def train_step(params, opt_state, batch, key):
        def loss_fn(params):
            outputs, _ = model.apply(
                {"params": params},
                batch["keypoints_2d"],
                batch["scores"],
                train=True,
                rngs={"dropout": key},
            )
            return losses.tgt_loss(outputs, batch, config.loss)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return train_step


def flops_per_frame(config, params, frames: int) -> float:
    unrolled = TemporalGraphLimbTransformer.from_config(config.model).clone(
        scan_unroll=config.model.depth
    )
    batch = fake_batch(1, frames)
    fn = jax.jit(lambda p, x, s: unrolled.apply({"params": p}, x, s)[0])
    compiled = fn.lower(params, batch["keypoints_2d"], batch["scores"]).compile()
    return compiled.cost_analysis()["flops"] / frames


def inference_frames_per_s(
    model, params, batch_size: int, frames: int, iters: int
) -> tuple[float, float]:
    """(frames/s by wall clock, CPU-bound frames/s; see time_runs) of the jitted forward."""
    batch = fake_batch(batch_size, frames)
    fn = jax.jit(lambda p, x, s: model.apply({"params": p}, x, s)[0])
    compiled = fn.lower(params, batch["keypoints_2d"], batch["scores"]).compile()
    run = lambda: compiled(params, batch["keypoints_2d"], batch["scores"])
    return tuple(batch_size * frames / seconds for seconds in time_runs(run, iters))


def train_benchmark(model, config, params, batch_size: int, frames: int, iters: int) -> dict:
    tx = optax.chain(
        optax.clip_by_global_norm(config.train.grad_clip),
        optax.adamw(config.train.learning_rate, weight_decay=config.train.weight_decay),
    )
    state = {"params": params, "opt_state": tx.init(params)}
    batch, key = fake_batch(batch_size, frames), jax.random.key(1)
    step = jax.jit(make_train_step(model, config, tx), donate_argnums=(0, 1))
    compiled = step.lower(state["params"], state["opt_state"], batch, key).compile()

    def run():
        state["params"], state["opt_state"], metrics = compiled(
            state["params"], state["opt_state"], batch, key
        )
        return metrics

    wall, idle = time_runs(run, iters)
    return {
        "clips_per_s": batch_size / wall,
        "cpu_bound_clips_per_s": batch_size / idle,
        "memory": memory_dict(compiled),
    }


def print_table(results: dict) -> None:
    rows = [
        ("inference frames/s, batch 1", "infer_b1_frames_per_s"),
        ("inference frames/s, batch 8", "infer_b8_frames_per_s"),
        ("training clips/s, batch 8", "train_b8_clips_per_s"),
    ]
    where = f"{results['device']} ({results['dtype']}, T={results['frames']})"
    print(f"TGT-{results['variant']} on {where}")
    print(f"params {results['params']:,}  GFLOP/frame {results['flops_per_frame'] / 1e9:.3f}")
    header = ("ours", "cpu-bound*", "MixSTE ref", "target 2x", "ours/ref")
    print(f"{'':30s}" + "".join(f"{h:>12s}" for h in header))
    for label, key in rows:
        ours, idle, ref = results[key], results[f"{key}_cpu_bound"], REFERENCE[key]
        values = (ours, idle, ref, 2 * ref, ours / ref)
        print(f"{label:30s}" + "".join(f"{v:12.3f}" for v in values))
    memory = results["train_b8_memory"]
    print(
        f"train step b8 memory: temp {memory['temp_gib']:.2f} GiB, arguments "
        f"{memory['argument_gib']:.3f} GiB, peak {memory['peak_gib']:.2f} GiB"
    )
    print(
        f"* work / (process CPU time / {os.cpu_count()} cores): an idle-machine estimate for a "
        "shared machine, not a measurement (assumes every core busy; spin-waits count as work)"
    )


def write_json(path: pathlib.Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(results, f, indent=2)
    os.replace(f.name, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base", help="tgt_base variant: tiny | base | large")
    parser.add_argument("--json", default="benchmarks/results/tgt_throughput.json")
    parser.add_argument("--iters", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--frames", type=int, default=0, help="clip length; 0: max_frames")
    args = parser.parse_args(argv)

    config = tgt_base.get_config(args.config)
    model = TemporalGraphLimbTransformer.from_config(config.model)
    frames = args.frames or config.model.max_frames
    init_batch = fake_batch(1, frames)
    params = jax.jit(model.init)(jax.random.key(0), init_batch["keypoints_2d"], None)["params"]
    results = {
        "variant": args.config,
        "device": jax.devices()[0].device_kind,
        "dtype": config.model.dtype,
        "frames": frames,
        "params": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
        "flops_per_frame": flops_per_frame(config, params, frames),
    }
    for batch_size in (1, 8):
        wall, idle = inference_frames_per_s(model, params, batch_size, frames, args.iters)
        results[f"infer_b{batch_size}_frames_per_s"] = wall
        results[f"infer_b{batch_size}_frames_per_s_cpu_bound"] = idle
    train = train_benchmark(model, config, params, 8, frames, args.iters)
    results["train_b8_clips_per_s"] = train["clips_per_s"]
    results["train_b8_clips_per_s_cpu_bound"] = train["cpu_bound_clips_per_s"]
    results["train_b8_memory"] = train["memory"]
    results["reference_mixste"] = REFERENCE
    print_table(results)
    write_json(pathlib.Path(args.json), results)
    return results


if __name__ == "__main__":
    main()
