"""Predict latency (one sequence) and throughput (a batch) through the public inference API.

  python -m benchmarks.predict_latency
  python -m benchmarks.predict_latency --config configs/tgt_base.py --batch 4 --iters 3
  python -m benchmarks.predict_latency --checkpoint runs/e2e --json /tmp/predict_e2e.json

Every call is `load_predictor(path).predict(keypoints_2d, scores=..., image_size=...,
refine=...)`, exactly as a user makes it. `--checkpoint` names a TGT, GPC or e2e workdir;
without it the TGT config `--config FILE[:variant]` gets random parameters (speed does not depend
on their values), saved as a checkpoint in a temporary workdir and loaded from there. Inputs are
random, seeded pixel keypoints inside a 1000x1002 image. Latency: one sequence of --frames
frames; the first call (trace, compile, run) is timed on its own, then the median of --iters
warm calls. Throughput: --batch such sequences in one call; frames/s = batch * frames / median
warm seconds. Both run with refine=False and, when the checkpoint has a GPC corrector, with
refine=True. The predictor's trace_count is recorded after the first and after the warm calls:
warm calls must not retrace.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import pathlib
import platform
import statistics
import tempfile
import time

import ml_collections
import numpy as np

from gentg_jax import checkpoint, files, profiling, skeleton
from gentg_jax.inference import Predictor, load_predictor
from gentg_jax.train import loop, registry

IMAGE_SIZE = (1000, 1002)


def load_config(arg: str) -> ml_collections.ConfigDict:
    """`get_config(variant)` of a config file given as FILE[:variant]."""
    path, _, variant = arg.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {arg}: no config file at {path}")
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant or None)


def save_random_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves a step-0 TrainState of `config.seed`-initialised parameters as the training loop
    would, so the predictor is restored through the same path as a trained one."""
    if config.get("task", "tgt") != "tgt":
        raise ValueError(
            f"--config task {config.task!r}: only TGT configs can start from random parameters "
            "(a GPC needs a trained TGT); pass --checkpoint with a GPC or e2e workdir"
        )
    task = registry.get_task(config)
    state = loop.init_state(config, task, profiling.synthetic_batch(1, config.data.num_frames))
    manager = checkpoint.CheckpointManager(checkpoint.checkpoint_directory(workdir))
    manager.save(0, state.to_checkpoint(), config=config)
    manager.wait()
    manager.close()
    checkpoint.save_config(workdir, config)


def random_sequences(batch: int, frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded pixel keypoints (batch, frames, 17, 2) inside IMAGE_SIZE and scores in [0.3, 1]."""
    rng = np.random.default_rng(seed)
    shape = (batch, frames, skeleton.NUM_JOINTS)
    keypoints = rng.uniform(0.0, IMAGE_SIZE, shape + (2,)).astype(np.float32)
    return keypoints, rng.uniform(0.3, 1.0, shape).astype(np.float32)


def measure(predictor: Predictor, keypoints, scores, *, refine: bool, iters: int) -> dict:
    """Seconds of the first predict call and the median of `iters` warm calls, with the
    predictor's trace_count after each phase."""

    def call() -> None:
        predictor.predict(keypoints, scores=scores, image_size=IMAGE_SIZE, refine=refine)

    start = time.perf_counter()
    call()
    first_s, traces_first = time.perf_counter() - start, predictor.trace_count
    wall, cpu = [], []
    for _ in range(iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "first_s": first_s,
        "warm_s": statistics.median(wall),
        # Process CPU time over all cores: an idle-machine estimate on a shared machine.
        "warm_cpu_bound_s": statistics.median(cpu) / (os.cpu_count() or 1),
        "trace_count_after_first": traces_first,
        "trace_count_after_warm": predictor.trace_count,
    }


def benchmark(predictor: Predictor, *, frames: int, batch: int, iters: int) -> list[dict]:
    """One row per refine setting: latency of one sequence and throughput of a batch."""
    keypoints, scores = random_sequences(batch, frames)
    rows = []
    for refine in (False, True) if predictor.has_refiner else (False,):
        latency = measure(predictor, keypoints[0], scores[0], refine=refine, iters=iters)
        throughput = measure(predictor, keypoints, scores, refine=refine, iters=iters)
        throughput["frames_per_s"] = batch * frames / throughput["warm_s"]
        rows.append({"refine": refine, "latency": latency, "throughput": throughput})
    return rows


def print_table(results: dict) -> None:
    print(
        f"{results['model']} on {results['machine']['device_kind']} "
        f"({results['machine']['cpu_count']} CPUs): {results['frames']} frames, window "
        f"{results['window_frames']}, batch {results['batch']}, median of {results['iters']}"
    )
    columns = {f"refine={row['refine']}": row for row in results["rows"]}
    lines = [
        ("latency ms, first call", lambda r: f"{1e3 * r['latency']['first_s']:.1f}"),
        ("latency ms, warm", lambda r: f"{1e3 * r['latency']['warm_s']:.1f}"),
        ("throughput frames/s, warm", lambda r: f"{r['throughput']['frames_per_s']:.1f}"),
    ]
    for name in ("latency", "throughput"):
        lines.append(
            (
                f"{name} trace_count first/warm",
                lambda r, n=name: (
                    f"{r[n]['trace_count_after_first']}/{r[n]['trace_count_after_warm']}"
                ),
            )
        )
    print(f"{'':32s}" + "".join(f"{c:>14s}" for c in columns))
    for label, cell in lines:
        print(f"{label:32s}" + "".join(f"{cell(r):>14s}" for r in columns.values()))
    print("trace_count: the predictor's traces so far (all shapes and refine settings)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="TGT, GPC or e2e workdir")
    parser.add_argument(
        "--config", default="configs/tgt_base.py:tiny", help="without --checkpoint: FILE[:variant]"
    )
    parser.add_argument("--frames", type=int, default=243, help="frames per sequence")
    parser.add_argument("--batch", type=int, default=16, help="sequences per throughput call")
    parser.add_argument("--iters", type=int, default=5, help="timed warm calls (median)")
    parser.add_argument("--json", default="benchmarks/results/predict_latency.json")
    args = parser.parse_args(argv)

    if args.checkpoint:
        predictor, model = load_predictor(args.checkpoint), args.checkpoint
    else:
        with tempfile.TemporaryDirectory() as workdir:
            save_random_checkpoint(load_config(args.config), workdir)
            predictor, model = load_predictor(workdir), f"{args.config} (random params)"
    results = {
        "model": model,
        "checkpoint": args.checkpoint or None,
        "config": None if args.checkpoint else args.config,
        "has_refiner": predictor.has_refiner,
        "machine": {
            **profiling.device_info(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "frames": args.frames,
        "batch": args.batch,
        "iters": args.iters,
        "image_size": list(IMAGE_SIZE),
        "window_frames": predictor.num_frames,
        "window_stride": predictor.window_stride,
        "flip": predictor.flip,
        "rows": benchmark(predictor, frames=args.frames, batch=args.batch, iters=args.iters),
    }
    print_table(results)
    files.write_json(args.json, results)
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
