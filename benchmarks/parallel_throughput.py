"""TGT predict and train-step throughput: float32 vs bfloat16, jit vs pmap vs sharded jit.

  python -m benchmarks.parallel_throughput                       # base, the real devices
  python -m benchmarks.parallel_throughput --variant tiny --devices 2 --batch 8

--devices N runs on N forced host (CPU) devices (XLA_FLAGS=--xla_force_host_platform_device_count,
set before the backend starts); they share the machine's cores, so on CPU the layouts compare
overheads, not scaling. Every row uses the same global batch; `single` runs it on one device.

Model FLOPs utilisation (MFU) = model FLOP/s / peak: a forward is the XLA-counted FLOPs of one
TGT forward (profiling.tgt_flops_per_frame, counted once on the float32 model), a training step
counts 3 forwards (backward = 2 x forward; rematerialisation is not model work). The peak is
--peak_tflops when given, else the datasheet bf16 dense peak of a known accelerator
(gentg_jax.profiling.peaks: e.g. H100/H200 SXM 989.5 TFLOP/s), else the measured rate of a large
matmul of the row's dtype on one device of this machine; every peak is per device and is
multiplied by the devices a row uses (forced CPU devices share the cores, so there the
multi-device MFU is a lower bound). `matmul_fraction` always compares the predict FLOP/s with
the measured matmul rate.
"""

import argparse

import jax.numpy as jnp

from configs import tgt_base
from gentg_jax import files, profiling
from gentg_jax.profiling import machine
from gentg_jax.profiling.peaks import datasheet_peak
from gentg_jax.train import parallel, registry

_MODES = ("single", "pmap", "sharded")
_DTYPES = ("float32", "bfloat16")
_COLUMNS = (
    "dtype",
    "mode",
    "devices",
    "predict_frames_per_s",
    "train_clips_per_s",
    "predict_tflops",
    "train_tflops",
    "predict_mfu",
    "train_mfu",
    "matmul_fraction",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="base", help="configs/tgt_base.py variant")
    parser.add_argument("--devices", type=int, default=0, help="N forced CPU devices (0: real)")
    parser.add_argument("--batch", type=int, default=8, help="global batch (windows)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per cell (median)")
    parser.add_argument("--modes", default=",".join(_MODES))
    parser.add_argument("--dtypes", default=",".join(_DTYPES))
    parser.add_argument("--skip_train", action="store_true", help="time predict only")
    parser.add_argument("--peak_tflops", type=float, default=None, help="peak for MFU")
    parser.add_argument("--matmul_size", type=int, default=0, help="0: 8192 on GPU, else 2048")
    parser.add_argument("--json", default="benchmarks/results/parallel_throughput.json")
    return parser.parse_args()


def matmul_flops_per_s(dtype: str, size: int, repeats: int = 5) -> float:
    """Measured FLOP/s of a (size x size) @ (size x size) matmul on the default device."""
    x = jnp.ones((size, size), dtype)
    seconds, _ = profiling.timed(jnp.matmul, (x, x), repeats)
    return 2 * size**3 / seconds


def peaks(args: argparse.Namespace, info: dict, dtypes: list[str]) -> dict:
    """Measured matmul FLOP/s per dtype, and the peak used for MFU with its source."""
    size = args.matmul_size or (8192 if info["platform"] == "gpu" else 2048)
    measured = {d: matmul_flops_per_s(d, size) for d in dtypes}
    datasheet = datasheet_peak(info["device_kind"])
    known = datasheet[0] if datasheet else None
    if args.peak_tflops:
        mfu_peak, source = {d: args.peak_tflops * 1e12 for d in dtypes}, "--peak_tflops"
    elif known:
        mfu_peak, source = {d: known for d in dtypes}, "datasheet bf16 dense"
    else:
        mfu_peak, source = measured, f"measured {size}x{size} matmul"
    return {
        "matmul_size": size,
        "matmul_flops_per_s": measured,
        "mfu_peak": mfu_peak,
        "mfu_peak_source": source,
    }


def measure(args: argparse.Namespace, dtype: str, mode: str, forward_flops: float, peak: dict):
    """One row: predict frames/s and train clips/s of the `dtype` model in layout `mode`."""
    config = tgt_base.get_config(args.variant)
    config.model.dtype = dtype
    task = registry.get_task(config)
    batch = profiling.synthetic_batch(args.batch, config.data.num_frames)
    params = profiling.init_params(task, batch, config.seed)
    layout = parallel.DataParallel(mode)
    predict = profiling.predict_throughput(layout, task, params, batch, args.repeats)
    row = {"dtype": dtype, "mode": mode, "devices": layout.num_replicas}
    mfu_peak = peak["mfu_peak"][dtype] * layout.num_replicas  # the peaks are per device
    matmul_peak = peak["matmul_flops_per_s"][dtype] * layout.num_replicas
    row["predict_frames_per_s"] = predict["frames_per_s"]
    row["predict_tflops"] = predict["frames_per_s"] * forward_flops / 1e12
    if not args.skip_train:
        train = profiling.train_throughput(config, layout, task, params, batch, args.repeats)
        row["train_clips_per_s"] = train["clips_per_s"]
        row["train_tflops"] = 3 * train["clips_per_s"] * config.data.num_frames
        row["train_tflops"] *= forward_flops / 1e12
        row["train_mfu"] = row["train_tflops"] * 1e12 / mfu_peak
    row["predict_mfu"] = row["predict_tflops"] * 1e12 / mfu_peak
    row["matmul_fraction"] = row["predict_tflops"] * 1e12 / matmul_peak
    return row


def main() -> None:
    args = parse_args()
    if args.devices:
        machine.force_host_devices(args.devices)
    # XLA reads XLA_FLAGS once, when the backend starts: before the first device query below.
    info = machine.machine_info()
    modes, dtypes = args.modes.split(","), args.dtypes.split(",")
    if args.batch % info["device_count"] and set(modes) - {"single"}:
        raise ValueError(f"--batch {args.batch} must divide over {info['device_count']} devices")
    config = tgt_base.get_config(args.variant)
    batch = profiling.synthetic_batch(args.batch, config.data.num_frames)
    forward_flops = profiling.tgt_flops_per_frame(config, batch)
    peak = peaks(args, info, dtypes)
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    print(f"TGT {args.variant}: {forward_flops / 1e9:.4g} GFLOP/frame, global batch {args.batch}")
    for name in ("matmul_flops_per_s", "mfu_peak"):
        print(f"{name}: " + ", ".join(f"{d} {v / 1e12:.4g} TFLOP/s" for d, v in peak[name].items()))
    print(f"mfu_peak_source: {peak['mfu_peak_source']}")
    rows = []
    for dtype in dtypes:
        for mode in modes:
            rows.append(measure(args, dtype, mode, forward_flops, peak))
            print(f"measured {dtype} {mode}", flush=True)
    print(profiling.format_rows(rows, _COLUMNS))
    payload = {
        "machine": info,
        "variant": args.variant,
        "global_batch": args.batch,
        "frames": config.data.num_frames,
        "flops_per_frame": forward_flops,
        **peak,
        "results": rows,
    }
    files.write_json(args.json, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
