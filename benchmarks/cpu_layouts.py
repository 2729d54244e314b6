"""One device or two on a CPU host: the TGT forward and train step as single-device jit, pmap
and sharded jit over forced CPU devices, timed alternately in one process.

  python -m benchmarks.cpu_layouts --config base --batch 8 --iters 2   # the README table
  python -m benchmarks.cpu_layouts --config tiny --batch 8              # seconds

The process asks XLA for --devices CPU devices (XLA_FLAGS, before the backend starts). They
share the machine's cores, so the layouts compare how busy one program keeps the cores with
what two programs side by side do, on the same global batch. Rounds alternate the layouts
(single, pmap, sharded, single, ...) after a warm-up each, so all see the same machine; `util`
is process CPU seconds / wall seconds (2 = both cores of a 2-core machine).
"""

from __future__ import annotations

import argparse
import os

from configs import tgt_base
from gentg_jax import files, profiling
from gentg_jax.profiling import machine
from gentg_jax.train import parallel, registry

LAYOUTS = ("single", "pmap", "sharded")
FIGURES = ("forward", "train_step")


def layout_calls(figure: str, config, task, params, batch) -> dict:
    """{layout: zero-argument call} for one figure on the same host batch."""
    calls, forward = {}, profiling.programs.tgt_forward(task.model)
    for mode in LAYOUTS:
        layout = parallel.DataParallel(mode)
        if figure == "forward":
            calls[mode], _ = profiling.predict_call(layout, forward, params, batch)
        else:
            calls[mode], _ = profiling.train_call(config, layout, task, params, batch)
    return calls


def summarize(times: dict[str, dict[str, list[float]]]) -> dict:
    """Median wall and CPU seconds and utilisation per layout; single / layout wall ratios."""
    out = profiling.summarize_times(times)
    for mode in LAYOUTS[1:]:
        out[mode]["speedup_over_single"] = out["single"]["wall_s"] / out[mode]["wall_s"]
    return out


def format_table(results: dict) -> str:
    header = "figure        " + "".join(f"{m + ': wall s / CPU s (util)':>34s}" for m in LAYOUTS)
    lines = [header + "  single/pmap  single/sharded"]
    for figure in FIGURES:
        row = results[figure]
        cells = "".join(
            f"{row[m]['wall_s']:>20.3f} / {row[m]['cpu_s']:7.3f} ({row[m]['util']:.2f})"
            for m in LAYOUTS
        )
        ratios = f"{row['pmap']['speedup_over_single']:>11.2f}x"
        ratios += f"{row['sharded']['speedup_over_single']:>15.2f}x"
        lines.append(f"{figure:<14s}{cells}  {ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base", help="tgt_base variant: tiny | base | large")
    parser.add_argument("--batch", type=int, default=8, help="global batch (divisible by devices)")
    parser.add_argument("--devices", type=int, default=2, help="forced CPU devices")
    parser.add_argument("--iters", type=int, default=2, help="timed rounds per figure")
    parser.add_argument("--json", default="benchmarks/results/cpu_layouts.json")
    args = parser.parse_args()
    if args.batch % args.devices:
        parser.error(f"--batch {args.batch} is not divisible by --devices {args.devices}")
    machine.force_host_devices(args.devices)
    config = tgt_base.get_config(args.config)
    task = registry.get_task(config)
    frames = config.data.num_frames
    params = profiling.init_params(task, profiling.synthetic_batch(1, frames), config.seed)
    batch = profiling.synthetic_batch(args.batch, frames)
    results = {"machine": machine.machine_info(), "variant": args.config, "batch": args.batch}
    for figure in FIGURES:
        calls = layout_calls(figure, config, task, params, batch)
        results[figure] = summarize(profiling.alternating_times(calls, args.iters))
    results["machine"]["load_after"] = os.getloadavg()[0]
    print(f"{results['machine']['date']}  TGT-{args.config}, batch {args.batch}, T={frames}")
    print(format_table(results))
    files.write_json(args.json, results)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
