"""Accelerator check: if you have a GPU or TPU, run this one command and send us its table (and
the JSON it writes). It takes under 8 minutes there and installs nothing.

  python -m benchmarks.accelerator_check                 # table + benchmarks/results/...json
  python -m benchmarks.accelerator_check --skip_tests    # the measurements only

On a machine where jax sees a GPU or TPU it
  1. runs the model tests (tests/models, pytest) on the accelerator, where the accelerator code
     path runs for real: no CPU micro-batching or attention chunking, cuDNN attention for 16-bit
     inputs on a GPU (models.layers.cpu_paths / resolve_attention);
  2. checks that one training step on the same global batch gives the same parameters in the
     single-device, pmap and sharded-jit layouts (train.parallel), on all local devices;
  3. checks that the bfloat16 forward is finite and close to the float32 one;
  4. times the base TGT's bfloat16 training step and reports its model FLOPs utilisation (MFU)
     against the chip's datasheet dense bf16 peak (gentg_jax.profiling.peaks; an unknown chip
     gets the measured rate of a large bf16 matmul instead, and the table says so);
  5. measures T = 243 inference frames/s of the base TGT in bfloat16 at growing batches until
     the chip is full (frames/s stops growing);
  6. measures the GPC refinement's cost: the time of `predict.refine_windows` (base GPC, K DDIM
     steps, H hypotheses) over the time of one TGT forward on the same windows.
Without an accelerator it says so, prints the install line for one, runs steps 2-6 on the CPU
with the tiny configs (seconds; the numbers only show that the code runs) and exits 0.

Model FLOPs are the analytic matmul FLOPs (profiling.spatiotemporal_flops_per_frame); a training
step counts three forwards (the backward's two), rematerialisation is not model work. Every
timing excludes compilation: one warm-up call, then the median of --iters calls.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from configs import gpc_base, tgt_base
from gentg_jax import files, profiling
from gentg_jax.models import gpc
from gentg_jax.profiling import machine, peaks, programs
from gentg_jax.train import parallel, registry

REPO = pathlib.Path(__file__).resolve().parents[1]
FRAMES = 243
MFU_TARGET = 0.40
INFER_TARGET_FRAMES_PER_S = 100_000


def jax_requirement() -> str:
    """pyproject.toml's jax requirement, e.g. 'jax>=0.10,<0.14'."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'"(jax\s*[<>=!~][^"]*)"', text)
    return match.group(1) if match else "jax (no pin found in pyproject.toml)"


def install_hint() -> str:
    """What to install for an accelerator backend: the installed jax version with the extra,
    which keeps jax, jaxlib and the plugin on one version inside pyproject's range."""
    pin = f"=={jax.__version__}"
    gpu = shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")
    tpu = any(pathlib.Path("/dev").glob("accel*")) or any(pathlib.Path("/dev").glob("vfio/*"))
    lines = [f"pyproject.toml requires {jax_requirement()}; jax {jax.__version__} is installed."]
    cuda = (
        f'  NVIDIA GPU (driver >= 525, CUDA 12):  pip install "jax[cuda12]{pin}"\n'
        f'  NVIDIA GPU (driver >= 580, CUDA 13):  pip install "jax[cuda13]{pin}"'
    )
    tpu_line = f'  Google Cloud TPU VM:                  pip install "jax[tpu]{pin}"'
    if gpu:
        lines.append("An NVIDIA GPU is present but jax has no CUDA backend. Install one:")
    elif tpu:
        lines.append("A TPU device seems present but jax has no TPU backend. Install one:")
    else:
        lines.append("To run this check on an accelerator, install jax's backend for it:")
    lines += [cuda, tpu_line, "then run this command again."]
    return "\n".join(lines)


def median_seconds(call: Callable[[], Any], iters: int) -> float:
    jax.block_until_ready(call())  # warm-up: the first call allocates
    return profiling.median_times(call, iters)[0] if iters > 1 else _once(call)


def _once(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - start


# On a CPU host the checks run a TGT/GPC smaller still than the tiny configs (the test suite's
# size): they show that the code runs, in seconds.
CPU_VARIANT = "cpu"


def _shrink(config) -> None:
    config.data.num_frames = 9
    config.model.update(dim=32, depth=1, num_heads=2, max_frames=9)


def config_for(variant: str, dtype: str = "float32"):
    """configs/tgt_base.py's `variant` ("cpu": tiny shrunk to T=9, dim 32, one layer)."""
    config = tgt_base.get_config("tiny" if variant == CPU_VARIANT else variant)
    if variant == CPU_VARIANT:
        _shrink(config)
    config.model.dtype = dtype
    return config


def gpc_config_for(variant: str, dtype: str):
    """configs/gpc_base.py's `variant`, shrunk like config_for for "cpu"."""
    config = gpc_base.get_config("tiny" if variant == CPU_VARIANT else variant)
    if variant == CPU_VARIANT:
        _shrink(config)
    config.model.dtype = dtype
    return config


def run_model_tests(timeout: float) -> dict:
    """pytest tests/models on the default (accelerator) backend, in a subprocess."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"ok": None, "detail": "pytest is not installed (pip install -e '.[test]')"}
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    try:
        result = subprocess.run(
            command + ["tests/models"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"tests/models did not finish in {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr[-500:]
    out = {"ok": result.returncode == 0, "detail": summary}
    if result.returncode:
        out["output_tail"] = result.stdout[-4000:] + result.stderr[-2000:]
    return out


def layouts_agree(variant: str) -> dict:
    """Parameters after two train steps on the same global batches in every layout."""
    config = config_for(variant)
    config.train.update(micro_batch_size=0, learning_rate=1e-3, warmup_steps=1)
    config.loss.velocity = 0.0  # per-device frame weighting is exact for every other term
    task = registry.get_task(config)
    devices = jax.local_device_count()
    batch = programs.synthetic_batch(2 * devices, config.data.num_frames)
    params = programs.init_params(task, batch, config.seed)
    results = {}
    with jax.default_matmul_precision("highest"):  # no TF32: compare the layouts, not rounding
        for mode in parallel.MODES:
            layout = parallel.DataParallel(mode)
            call, _ = profiling.train_call(config, layout, task, params, batch)
            call()
            state, _ = call()
            state = layout.unreplicate(state)
            assert int(state.step) == 2
            results[mode] = jax.tree.leaves(state.params)
    initial = jax.tree.leaves(params)
    moved = max(
        float(np.max(np.abs(a - b))) for a, b in zip(initial, results["single"], strict=True)
    )
    diffs = {
        mode: max(
            float(np.max(np.abs(a - b))) for a, b in zip(results["single"], leaves, strict=True)
        )
        for mode, leaves in results.items()
        if mode != "single"
    }
    ok = moved > 1e-5 and max(diffs.values()) < 1e-4
    return {"ok": ok, "devices": devices, "moved": moved, "max_diff": diffs}


def bf16_close_to_f32(variant: str) -> dict:
    """The bfloat16 forward against the float32 one, same parameters and inputs."""
    batch = programs.synthetic_batch(2, config_for(variant).data.num_frames)
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        task = registry.get_task(config_for(variant, dtype))
        if dtype == "float32":
            params = programs.init_params(task, batch)
        forward = jax.jit(programs.tgt_forward(task.model))
        with jax.default_matmul_precision("highest" if dtype == "float32" else "default"):
            outputs[dtype] = np.asarray(forward(params, batch)["joints_3d"])
    reference = outputs["float32"]
    error = float(np.max(np.abs(outputs["bfloat16"] - reference)))
    scale = float(np.max(np.abs(reference)))
    finite = bool(np.all(np.isfinite(outputs["bfloat16"])))
    return {
        "ok": finite and error < 0.05 * scale,
        "finite": finite,
        "max_abs_error": error,
        "relative_error": error / scale,
    }


def matmul_flops_per_s(size: int, iters: int) -> float:
    x = jnp.ones((size, size), jnp.bfloat16)
    compiled = jax.jit(jnp.matmul).lower(x, x).compile()
    return 2 * size**3 / median_seconds(lambda: compiled(x, x), iters)


def peak(info: dict, iters: int) -> dict:
    known = peaks.datasheet_peak(info["device_kind"])
    size = 512 if info["platform"] == "cpu" else 8192
    measured = matmul_flops_per_s(size, iters)
    if known:
        return {"flops_per_s": known[0], "source": known[1], "matmul_flops_per_s": measured}
    source = f"measured {size}x{size} bf16 matmul (no datasheet peak known for this chip)"
    return {"flops_per_s": measured, "source": source, "matmul_flops_per_s": measured}


def model_flops_per_frame(config) -> float:
    frames = config.data.num_frames
    model = registry.get_task(config).model
    return profiling.spatiotemporal_flops_per_frame(
        config.model, model.num_tokens, frames, model.temporal_tokens
    )


def train_mfu(variant: str, batch_size: int, iters: int, peak_info: dict) -> dict:
    """The bf16 train step (steps.train_step) on one device: clips/s, MFU, memory."""
    config = config_for(variant, "bfloat16")
    config.train.micro_batch_size = 0
    task = registry.get_task(config)
    batch = programs.synthetic_batch(batch_size, config.data.num_frames)
    params = programs.init_params(task, batch, config.seed)
    call, compiled = profiling.train_call(
        config, parallel.DataParallel("single"), task, params, batch
    )
    seconds = median_seconds(call, iters)
    flops = 3 * model_flops_per_frame(config) * batch_size * config.data.num_frames / seconds
    memory = profiling.memory_analysis(compiled)
    return {
        "ok": True,
        "batch": batch_size,
        "seconds": seconds,
        "clips_per_s": batch_size / seconds,
        "tflops": flops / 1e12,
        "mfu": flops / peak_info["flops_per_s"],
        "matmul_fraction": flops / peak_info["matmul_flops_per_s"],
        "memory_gib": None if memory is None else memory["total_bytes"] / 2**30,
    }


def inference_throughput(variant: str, batches: list[int], iters: int, deadline: float) -> dict:
    """bf16 TGT forward frames/s at growing batches; stops when frames/s grows < 5 %."""
    config = config_for(variant, "bfloat16")
    task = registry.get_task(config)
    frames = config.data.num_frames
    params = programs.init_params(task, programs.synthetic_batch(1, frames), config.seed)
    forward = programs.tgt_forward(task.model)
    rows = []
    for size in batches:
        if time.monotonic() > deadline and rows:
            break
        batch = programs.synthetic_batch(size, frames)
        try:
            call, _ = profiling.predict_call(
                parallel.DataParallel("single"), forward, params, batch
            )
            seconds = median_seconds(call, iters)
        except Exception as error:  # out of memory at this batch: the previous one filled it
            rows.append({"batch": size, "error": f"{type(error).__name__}: {error}"[:300]})
            break
        rows.append({"batch": size, "seconds": seconds, "frames_per_s": size * frames / seconds})
        if len(rows) > 1 and rows[-1]["frames_per_s"] < 1.05 * rows[-2]["frames_per_s"]:
            break
    best = max((r for r in rows if "frames_per_s" in r), key=lambda r: r["frames_per_s"])
    return {"ok": True, "frames": frames, "rows": rows, "best": best}


def gpc_cost(variant: str, batch_size: int, iters: int) -> dict:
    """Refinement time / one TGT forward's time on the same windows (both bf16)."""
    gpc_config = gpc_config_for(variant, "bfloat16")
    tgt_config = config_for(variant, "bfloat16")
    frames = gpc_config.data.num_frames
    batch = programs.synthetic_batch(batch_size, frames)
    model = gpc.PoseDenoiser.from_config(gpc_config.model)
    inputs = programs.gpc_inputs(gpc_config, batch)
    params = programs.denoiser_params(model, inputs, abstract=False)
    key = jax.random.PRNGKey(0)
    refine = jax.jit(programs.gpc_program(model, gpc_config, "refine"))
    refine_s = median_seconds(lambda: refine(params, inputs, key), iters)
    task = registry.get_task(tgt_config)
    tgt_params = programs.init_params(task, batch, tgt_config.seed)
    forward, _ = profiling.predict_call(
        parallel.DataParallel("single"), programs.tgt_forward(task.model), tgt_params, batch
    )
    tgt_s = median_seconds(forward, iters)
    refine_config = gpc_config.refine
    return {
        "ok": True,
        "batch": batch_size,
        "refine_seconds": refine_s,
        "tgt_forward_seconds": tgt_s,
        "refine_tgt_forwards": refine_s / tgt_s,
        "steps": refine_config.num_steps,
        "hypotheses": refine_config.num_hypotheses,
    }


def guarded(name: str, fn: Callable[[], dict], results: dict) -> None:
    """Runs one check, keeping its result or its error (the other checks still run)."""
    start = time.monotonic()
    print(f"[accelerator_check] {name} ...", flush=True)
    try:
        results[name] = fn()
    except Exception as error:  # a failed check is a result to report, not a crash
        results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        results[name]["traceback"] = traceback.format_exc()[-4000:]
    results[name]["seconds_total"] = time.monotonic() - start


def _inference_detail(c: dict) -> str:
    sweep = ", ".join(
        f"b{row['batch']} {row['frames_per_s']:,.0f}"
        if "frames_per_s" in row
        else f"b{row['batch']} failed"
        for row in c["rows"]
    )
    return (
        f"T={c['frames']}: best {c['best']['frames_per_s']:,.0f} frames/s at batch "
        f"{c['best']['batch']} (target >= {INFER_TARGET_FRAMES_PER_S:,}); {sweep}"
    )


# Table rows in order: (check, label, its detail when it did not fail with an error).
_ROWS: tuple[tuple[str, str, Callable[[dict], str]], ...] = (
    ("model_tests", "model tests on the device", lambda c: c.get("detail", "")),
    (
        "layouts",
        "single / pmap / sharded",
        lambda c: (
            f"{c['devices']} device(s), max |param diff| vs single: "
            + ", ".join(f"{k} {v:.1e}" for k, v in c["max_diff"].items())
        ),
    ),
    (
        "bf16",
        "bfloat16 vs float32",
        lambda c: (
            f"finite {c['finite']}, max error "
            f"{c['relative_error']:.2%} of the float32 output's scale"
        ),
    ),
    (
        "train",
        "bf16 train step",
        lambda c: (
            f"batch {c['batch']}: {c['clips_per_s']:.2f} clips/s, {c['tflops']:.1f} TFLOP/s, "
            f"MFU {c['mfu']:.1%} (target >= {MFU_TARGET:.0%} on H100-class), "
            f"{c['matmul_fraction']:.1%} of the measured matmul rate"
            + (f", XLA memory {c['memory_gib']:.2f} GiB" if c.get("memory_gib") else "")
        ),
    ),
    ("inference", "bf16 inference", _inference_detail),
    (
        "gpc",
        "GPC refinement cost",
        lambda c: (
            f"batch {c['batch']}: refinement (K={c['steps']}, H={c['hypotheses']}) "
            f"{c['refine_seconds'] * 1e3:.1f} ms = {c['refine_tgt_forwards']:.2f} TGT forwards "
            f"({c['tgt_forward_seconds'] * 1e3:.1f} ms)"
        ),
    ),
)


def format_table(results: dict) -> str:
    info, checks = results["machine"], results["checks"]
    lines = [
        f"accelerator check, {info['date']}: {info['device_count']} x {info['device_kind']} "
        f"({info['platform']}), jax {info['jax_version']}, TGT variant {results['variant']}",
    ]
    for name, label, detail in _ROWS:
        if name == "train" and "peak" in results:  # the peak the MFU is measured against
            p = results["peak"]
            lines.append(
                f"{'peak for MFU':28s}{p['flops_per_s'] / 1e12:.1f} TFLOP/s ({p['source']})"
                f"; measured bf16 matmul {p['matmul_flops_per_s'] / 1e12:.1f} TFLOP/s"
            )
        if name in checks:
            c = checks[name]
            status = {True: "ok", False: "FAILED", None: "skipped"}[c.get("ok")]
            lines.append(f"{label:27s} {status}: {c.get('error') or detail(c)}")
    lines.append(f"total {results['seconds']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/accelerator_check.json")
    parser.add_argument(
        "--variant",
        default="",
        help="TGT/GPC variant: tiny | base | large | cpu (tiny shrunk); "
        "default base on an accelerator, cpu on a CPU host",
    )
    parser.add_argument("--iters", type=int, default=5, help="timed calls per figure (median)")
    parser.add_argument("--train_batch", type=int, default=64, help="bf16 train step batch")
    parser.add_argument("--infer_batches", default="64,256,1024,2048", help="batches to sweep")
    parser.add_argument("--gpc_batch", type=int, default=64)
    parser.add_argument("--skip_tests", action="store_true", help="skip pytest tests/models")
    parser.add_argument("--budget_s", type=float, default=420, help="stop sweeping after this")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    device = jax.devices()[0]
    accelerator = device.platform != "cpu"
    info = machine.machine_info()
    variant = args.variant or ("base" if accelerator else CPU_VARIANT)
    results: dict[str, Any] = {"machine": info, "variant": variant, "accelerator": accelerator}
    checks: dict[str, dict] = {}
    results["checks"] = checks
    if accelerator:
        iters, train_batch, gpc_batch = args.iters, args.train_batch, args.gpc_batch
        infer_batches = [int(b) for b in args.infer_batches.split(",")]
    else:
        print(f"No accelerator: jax sees only {info['device_kind']} ({info['platform']}) devices.")
        print(install_hint())
        print("Running the CPU-runnable checks with the tiny configs (they show the code runs).")
        iters, train_batch, gpc_batch, infer_batches = 2, 8, 4, [8]
    if accelerator and not args.skip_tests:
        guarded("model_tests", lambda: run_model_tests(timeout=0.45 * args.budget_s), checks)
    guarded("layouts", lambda: layouts_agree("tiny" if accelerator else CPU_VARIANT), checks)
    guarded("bf16", lambda: bf16_close_to_f32(variant), checks)
    try:
        results["peak"] = peak(info, iters)
    except Exception as error:  # without a peak there is no MFU, but the timings still count
        results["peak"] = {
            "flops_per_s": math.nan,
            "source": f"failed: {error}",
            "matmul_flops_per_s": math.nan,
        }
    guarded("train", lambda: train_mfu(variant, train_batch, iters, results["peak"]), checks)
    deadline = start + args.budget_s
    guarded(
        "inference", lambda: inference_throughput(variant, infer_batches, iters, deadline), checks
    )
    guarded("gpc", lambda: gpc_cost(variant, gpc_batch, iters), checks)
    results["seconds"] = time.monotonic() - start
    print(format_table(results))
    files.write_json(args.json, results)
    print(f"wrote {args.json}")
    if not accelerator:
        return 0
    return 0 if all(c.get("ok") is not False for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
