"""TGT throughput: params, FLOPs/frame, inference frames/s, training clips/s and XLA memory.

  python -m benchmarks.tgt_throughput --config base --json benchmarks/results/tgt_throughput.json

Measured with gentg_jax.profiling on one device: compilation is excluded (programs are compiled
ahead of time, then run once untimed); each figure is the median of --iters timed runs. FLOPs
come from XLA's cost analysis of one forward with the layer scan fully unrolled. Inference runs
the task's predict step; training runs the project's real train step (train.steps.train_step:
the task's loss, the config's clipped AdamW schedule, EMA), and memory comes from
`compile().memory_analysis()` of that step. The reference column is a MixSTE PyTorch model
measured on the same 2-core CPU machine kind.
"""

from __future__ import annotations

import argparse
import os

import jax

from configs import tgt_base
from gentg_jax import files, profiling
from gentg_jax.train import parallel, registry

# MixSTE (PyTorch, float32) on this machine kind; the targets are twice these.
REFERENCE = {
    "infer_b1_frames_per_s": 132.0,
    "infer_b8_frames_per_s": 106.0,
    "train_b8_clips_per_s": 0.099,
}
GIB = 2.0**30


def memory_gib(memory: dict[str, int]) -> dict[str, float]:
    """profiling.memory_analysis's byte counts in GiB; peak_gib is its total_bytes (donated
    outputs alias their arguments, so they are not counted twice)."""
    out = {f"{n}_gib": memory[f"{n}_bytes"] / GIB for n in ("temp", "argument", "output", "alias")}
    out["peak_gib"] = memory["total_bytes"] / GIB
    return out


def print_table(results: dict) -> None:
    rows = [
        ("inference frames/s, batch 1", "infer_b1_frames_per_s"),
        ("inference frames/s, batch 8", "infer_b8_frames_per_s"),
        ("training clips/s, batch 8", "train_b8_clips_per_s"),
    ]
    micro = results["train_micro_batch_size"]
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
        f"train step b8 (micro-batch {micro or 8}) memory: temp {memory['temp_gib']:.2f} GiB, "
        f"arguments {memory['argument_gib']:.3f} GiB, peak {memory['peak_gib']:.2f} GiB"
    )
    print(
        f"* work / (process CPU time / {os.cpu_count()} cores): an idle-machine estimate for a "
        "shared machine, not a measurement (assumes every core busy; spin-waits count as work)"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base", help="tgt_base variant: tiny | base | large")
    parser.add_argument("--json", default="benchmarks/results/tgt_throughput.json")
    parser.add_argument("--iters", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--frames", type=int, default=0, help="clip length; 0: max_frames")
    parser.add_argument(
        "--micro_batch", type=int, default=0, help="train.micro_batch_size of the train step"
    )
    args = parser.parse_args(argv)

    config = tgt_base.get_config(args.config)
    frames = args.frames or config.model.max_frames
    config.data.num_frames = frames
    task, single = registry.get_task(config), parallel.DataParallel("single")
    batches = {size: profiling.synthetic_batch(size, frames) for size in (1, 8)}
    params = profiling.init_params(task, batches[1], config.seed)
    results = {
        "variant": args.config,
        "device": jax.devices()[0].device_kind,
        "dtype": config.model.dtype,
        "frames": frames,
        "params": profiling.param_count(params),
        "flops_per_frame": profiling.tgt_flops_per_frame(config, batches[1]),
    }
    for size, batch in batches.items():
        infer = profiling.predict_throughput(single, task, params, batch, args.iters)
        results[f"infer_b{size}_frames_per_s"] = infer["frames_per_s"]
        results[f"infer_b{size}_frames_per_s_cpu_bound"] = (
            size * frames / infer["cpu_bound_seconds"]
        )
    config.train.micro_batch_size = args.micro_batch
    train = profiling.train_throughput(config, single, task, params, batches[8], args.iters)
    results["train_micro_batch_size"] = args.micro_batch
    results["train_b8_clips_per_s"] = train["clips_per_s"]
    results["train_b8_clips_per_s_cpu_bound"] = 8 / train["cpu_bound_seconds"]
    results["train_b8_memory"] = memory_gib(train["memory"])
    results["reference_mixste"] = REFERENCE
    print_table(results)
    files.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
