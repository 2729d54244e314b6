"""TGT speed against a MixSTE-shaped reference timed in the same process: inference frames/s at
batch 1 and 8, training clips/s at batch 8, with CPU seconds beside wall seconds and XLA memory.

  python -m benchmarks.tgt_throughput --config base              # the README table
  python -m benchmarks.tgt_throughput --config base --quick      # one timed round per figure
  python -m benchmarks.tgt_throughput --config tiny --frames 27  # seconds (the tests' size)

Every figure times the TGT and the reference (benchmarks/reference_mixste.py: dim 512, depth 8,
17 joint tokens, plain attention, ~1.2 GFLOP/frame) alternately in one process, A B A B ...:
one untimed warm-up call each, then --iters rounds of one call each, so that both see the same
machine (clock, other jobs' load) round by round. `ours/ref` is the median over rounds of the
round's reference wall time / TGT wall time; `work ratio` is the same for process CPU seconds
(what each did, whatever the load). `util` = CPU seconds / wall seconds: the cores the process
kept busy (2 = both cores of the development machine; on a shared machine other jobs' load
lowers it). The date, the machine and the 1-minute load average before and after each figure are
printed and saved: compare runs by their ratios, not by their absolute rates, which drift with
the machine and its load.

Inference runs one TGT forward (`profiling.programs.tgt_forward`, no flip averaging) and the
reference's forward; training runs the project's real train step (`train.steps.train_step`:
loss, the config's clipped AdamW and EMA) for both, and memory comes from XLA's
`compile().memory_analysis()` of those steps (summed over devices). Programs are compiled ahead
of time; compilation is not timed. FLOPs per frame come from XLA's cost analysis with the layer
loops unrolled.

Both cores: one XLA:CPU program keeps a second core only partly busy (its attention cores, small
batched matmuls in a loop, run on one thread). With --cpu_devices 2 (the default) the process
gets two CPU devices and every figure whose batch splits evenly (batch 8 inference, training)
runs both models as one program per device (pmap: the same numbers, tests/train/test_parallel.py);
batch 1 runs on one device. --cpu_devices 1 gives the one-device figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

from benchmarks import reference_mixste
from configs import tgt_base
from gentg_jax import files, profiling
from gentg_jax.profiling import machine
from gentg_jax.train import parallel, registry

GIB = 2.0**30
FIGURES = ("infer_b1", "infer_b8", "train_b8")
# Same-run speed ratios TGT / MixSTE-shaped reference to reach (the TGT base does 0.290
# GFLOP/frame, the reference 1.22: equal efficiency would give ~4.2), and the training memory bound.
TARGET_RATIO = {"infer_b1": 1.6, "infer_b8": 1.6, "train_b8": 1.6}
TARGET_TRAIN_GIB = 8.0
_LABELS = {
    "infer_b1": "inference, batch 1 (frames/s)",
    "infer_b8": "inference, batch 8 (frames/s)",
    "train_b8": "training, batch 8 (clips/s)",
}


def memory_gib(memory: dict[str, int] | None) -> dict[str, float] | None:
    """profiling.memory_analysis's byte counts in GiB; peak_gib is its total_bytes (donated
    outputs alias their arguments, so they are not counted twice)."""
    if memory is None:
        return None
    out = {f"{n}_gib": memory[f"{n}_bytes"] / GIB for n in ("temp", "argument", "output", "alias")}
    out["peak_gib"] = memory["total_bytes"] / GIB
    return out


def summarize(times: dict[str, dict[str, list[float]]], items: int) -> dict:
    """Medians, rates, utilisation and same-round ratios of alternating_times' 'tgt' and 'ref'."""
    out = profiling.summarize_times(times)
    for row in out.values():
        row["rate"] = items / row["wall_s"]
    rounds = zip(times["tgt"]["wall"], times["ref"]["wall"], strict=True)
    out["ratio"] = statistics.median(ref / ours for ours, ref in rounds)
    rounds = zip(times["tgt"]["cpu"], times["ref"]["cpu"], strict=True)
    out["work_ratio"] = statistics.median(ref / ours for ours, ref in rounds)
    return out


def layout_for(batch_size: int) -> parallel.DataParallel:
    """pmap over the local devices when there are several (--cpu_devices) and they split the
    batch evenly; one device otherwise."""
    devices = jax.local_device_count()
    mode = "pmap" if devices > 1 and batch_size % devices == 0 else "single"
    return parallel.DataParallel(mode)


def calls(figure: str, config, tasks: dict, params: dict, batch: dict) -> dict:
    """{'tgt': call, 'ref': call} and their compiled programs for one figure, both in the same
    layout (layout_for)."""
    layout = layout_for(len(batch["keypoints_2d"]))
    out, compiled = {}, {}
    for name, task in tasks.items():
        if figure.startswith("infer"):
            forward = (
                profiling.programs.tgt_forward(task.model)
                if name == "tgt"
                else reference_mixste.forward(task.model)
            )
            out[name], compiled[name] = profiling.predict_call(layout, forward, params[name], batch)
        else:
            out[name], compiled[name] = profiling.train_call(
                config, layout, task, params[name], batch
            )
    return out, compiled, layout


def measure(figure: str, config, tasks: dict, params: dict, iters: int) -> dict:
    """One figure: the TGT and the reference alternately, `iters` rounds after a warm-up."""
    size = int(figure.rsplit("_b", 1)[1])
    batch = profiling.synthetic_batch(size, config.data.num_frames)
    figure_calls, compiled, layout = calls(figure, config, tasks, params, batch)
    items = size * (config.data.num_frames if figure.startswith("infer") else 1)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = summarize(profiling.alternating_times(figure_calls, iters), items)
    result.update(
        batch=size,
        layout=layout.mode,
        devices=layout.num_replicas,
        seconds=time.perf_counter() - start,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        target_ratio=TARGET_RATIO[figure],
    )
    if figure.startswith("train"):  # pmap programs report one device's buffers: all of them
        for name in tasks:
            memory = profiling.memory_analysis(compiled[name])
            if memory is not None:
                memory = {k: v * layout.num_replicas for k, v in memory.items()}
            result[name]["memory"] = memory_gib(memory)
    return result


def reference_flops_per_frame(model, params, batch) -> float:
    """XLA-counted FLOPs per frame of the reference forward with its layer loop unrolled."""
    model = model.clone(scan_unroll=model.depth)
    inputs = {k: batch[k] for k in ("keypoints_2d", "scores")}
    compiled = profiling.jit_compile(reference_mixste.forward(model), params, inputs)
    return profiling.xla_flops(compiled) / batch["keypoints_2d"].shape[1]


def format_table(results: dict) -> str:
    m, s = results["machine"], results["sizes"]
    lines = [
        f"TGT-{results['variant']} vs the {results['reference']} reference "
        "(benchmarks/reference_mixste.py)"
        f", one process, alternating runs, {results['iters']} timed round(s) after a warm-up",
        f"{m['date']}  {m['cpu']} x{m['cpu_count']} ({m['device_kind']}), jax {m['jax_version']}"
        f", {results['dtype']}, T={results['frames']}",
        f"TGT {s['tgt']['params']:,} params, {s['tgt']['flops_per_frame'] / 1e9:.3f} GFLOP/frame;"
        f" reference {s['ref']['params']:,} params, {s['ref']['flops_per_frame'] / 1e9:.3f}"
        f" GFLOP/frame (equal efficiency: ours/ref = {results['flops_ratio']:.2f})",
        "",
    ]
    head = (
        f"{'':31s}{'TGT':>9s}{'ref':>9s}{'ours/ref':>9s}{'target':>8s}{'work':>8s}"
        f"  {'TGT wall s / CPU s (util)':>26s}  {'ref wall s / CPU s (util)':>26s}  load"
        "      layout"
    )
    lines.append(head)
    for figure in results["figures"]:
        r = results[figure]
        cells = [
            f"{_LABELS[figure]:31s}{r['tgt']['rate']:9.3f}{r['ref']['rate']:9.3f}",
            f"{r['ratio']:8.2f}x{r['target_ratio']:7.1f}x{r['work_ratio']:7.2f}x",
        ]
        for name in ("tgt", "ref"):
            c = r[name]
            cells.append(f"  {c['wall_s']:9.3f} / {c['cpu_s']:7.3f} ({c['util']:.2f})")
        cells.append(
            f"  {r['load_before']:.1f}-{r['load_after']:.1f}  {r['layout']} x{r['devices']}"
        )
        lines.append("".join(cells))
    if "train_b8" in results["figures"]:
        for name, label in (("tgt", "TGT"), ("ref", "reference")):
            mem = results["train_b8"][name]["memory"]
            if mem:
                lines.append(
                    f"train step b8 memory, {label}: peak {mem['peak_gib']:.2f} GiB (temp "
                    f"{mem['temp_gib']:.2f}), target for the TGT <= {TARGET_TRAIN_GIB:g} GiB"
                )
    lines.append(
        "ours/ref: median over rounds of ref wall / TGT wall; work: the same for CPU seconds;"
        " util: CPU s / wall s (cores kept busy); load: 1-min load average before-after;"
        " layout: single device, or pmap over N CPU devices (--cpu_devices), for both models"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base", help="tgt_base variant: tiny | base | large")
    parser.add_argument("--json", default="benchmarks/results/tgt_throughput.json")
    parser.add_argument("--iters", type=int, default=3, help="timed rounds per figure")
    parser.add_argument("--quick", action="store_true", help="one timed round per figure")
    parser.add_argument("--frames", type=int, default=0, help="clip length; 0: max_frames")
    parser.add_argument("--figures", default=",".join(FIGURES), help="subset of " + str(FIGURES))
    parser.add_argument(
        "--reference",
        default="mixste",
        choices=sorted(reference_mixste.SIZES),
        help="reference size: mixste (dim 512, depth 8) or tiny (dim 64, depth 2; for tests)",
    )
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=2,
        help="CPU devices to split the batch over (pmap, both models) where it divides; 1: one "
        "device. Effective only when the backend has not started yet (a fresh process).",
    )
    parser.add_argument(
        "--micro_batch", type=int, default=0, help="train.micro_batch_size of both train steps"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.cpu_devices > 1:
        machine.force_host_devices(args.cpu_devices)
    figures = [f for f in args.figures.split(",") if f]
    if unknown := sorted(set(figures) - set(FIGURES)):
        raise ValueError(f"--figures {unknown}: choose from {FIGURES}")
    config = tgt_base.get_config(args.config)
    config.data.num_frames = args.frames or config.model.max_frames
    config.train.micro_batch_size = args.micro_batch
    results = {
        "machine": machine.machine_info(),
        "variant": args.config,
        "dtype": config.model.dtype,
        "frames": config.data.num_frames,
        "iters": 1 if args.quick else args.iters,
        "reference": args.reference,
        "figures": figures,
        "train_micro_batch_size": args.micro_batch,
    }
    tasks = {
        "tgt": registry.get_task(config),
        "ref": reference_mixste.ReferenceTask(config, **reference_mixste.SIZES[args.reference]),
    }
    one = profiling.synthetic_batch(1, config.data.num_frames)
    params = {name: profiling.init_params(task, one, config.seed) for name, task in tasks.items()}
    results["sizes"] = {
        name: {"params": profiling.param_count(params[name])} for name in ("tgt", "ref")
    }
    results["sizes"]["tgt"]["flops_per_frame"] = profiling.tgt_flops_per_frame(config, one)
    results["sizes"]["ref"]["flops_per_frame"] = reference_flops_per_frame(
        tasks["ref"].model, params["ref"], one
    )
    sizes = results["sizes"]
    results["flops_ratio"] = sizes["ref"]["flops_per_frame"] / sizes["tgt"]["flops_per_frame"]
    for figure in figures:
        results[figure] = measure(figure, config, tasks, params, results["iters"])
        print(f"measured {figure} in {results[figure]['seconds']:.0f} s", flush=True)
    results["machine"]["load_after"] = os.getloadavg()[0]
    print(format_table(results))
    files.write_json(args.json, results)
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
