"""Training input pipeline throughput (windows per second) on in-memory sequences.

  python -m benchmarks.input_pipeline --json benchmarks/results/input_pipeline.json

Sequences of realistic size (Human3.6M train: 600 sequences of 1,000-6,000 frames per camera)
from the synthetic generator (`--source synthetic`, seeds 0, 1, ... until there are enough), or
random arrays of the same shapes (`--source random`, quicker to make, equally fast to read).
"""

import argparse
import itertools
import os
import platform
import statistics
import time

import numpy as np

from gentg_jax import files, skeleton
from gentg_jax.data import h36m, pipeline, synthetic


def synthetic_sequences(num_sequences: int, frames: int) -> list[dict]:
    """The first `num_sequences` synthetic_h36m/detector examples of `frames` frames each."""
    configs = (
        synthetic.SyntheticConfig(seed=seed, frames_per_sequence=frames)
        for seed in itertools.count()
    )
    examples = (
        ex for config in configs for _, ex in synthetic.generate_examples(config, "detector")
    )
    return list(itertools.islice(examples, num_sequences))


def random_sequences(num_sequences: int, min_frames: int, max_frames: int, seed: int):
    """Random example dicts of H36M shape (only shapes and dtypes matter for speed)."""
    rng = np.random.default_rng(seed)
    sequences = []
    for s in range(num_sequences):
        length = int(rng.integers(min_frames, max_frames + 1))
        cam = h36m.camera(h36m.TRAIN_SUBJECTS[s % 5], s % 4)
        sequences.append(
            {
                "subject": h36m.TRAIN_SUBJECTS[s % 5],
                "action": f"action{s // 20}",
                "camera": cam.id,
                "keypoints_2d": rng.uniform(0, 1000, (length, skeleton.NUM_JOINTS, 2)).astype(
                    np.float32
                ),
                "scores": rng.random((length, skeleton.NUM_JOINTS), np.float32),
                "pose_3d": rng.normal(0, 0.5, (length, skeleton.NUM_JOINTS, 3)).astype(np.float32),
                "intrinsics": cam.intrinsic,
                "image_size": np.asarray(cam.image_size, np.int32),
            }
        )
    return sequences


def measure(
    packed, *, num_frames: int, batch_size: int, threads: int, batches: int, repeats: int
) -> dict:
    """Windows per second through the grain iterator after a warm-up: the median of `repeats`
    timings of `batches` batches (the machine may be shared, so single timings are noisy), and
    the process CPU time per batch (all threads), which depends less on other load."""
    dataset = pipeline.train_dataset(
        packed, num_frames=num_frames, batch_size=batch_size, seed=0, process_count=1
    )
    iterator = pipeline.train_iterator(dataset, num_threads=threads, prefetch=max(2, 2 * threads))
    for _ in range(3):
        next(iterator)
    timings, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        timings.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    seconds = statistics.median(timings)
    return {
        "num_frames": num_frames,
        "batch_size": batch_size,
        "threads": threads,
        "windows_per_s": batches * batch_size / seconds,
        "ms_per_batch": 1e3 * seconds / batches,
        "cpu_ms_per_batch": 1e3 * statistics.median(cpu) / batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/input_pipeline.json")
    parser.add_argument("--source", choices=("synthetic", "random"), default="synthetic")
    parser.add_argument("--num_sequences", type=int, default=600)
    parser.add_argument("--min_frames", type=int, default=1000, help="random: shortest sequence")
    parser.add_argument(
        "--max_frames", type=int, default=1600, help="random: longest; synthetic: all"
    )
    parser.add_argument("--batches", type=int, default=100, help="batches per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per row (median kept)")
    parser.add_argument("--threads", default="0,1,2", help="comma-separated thread counts")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.source == "synthetic":
        sequences = synthetic_sequences(args.num_sequences, args.max_frames)
    else:
        sequences = random_sequences(args.num_sequences, args.min_frames, args.max_frames, seed=0)
    packed = pipeline.pack_sequences(sequences)
    del sequences  # the packed copy is all the pipeline reads
    setup_s = time.perf_counter() - start
    print(
        f"{len(packed.lengths)} {args.source} sequences, {packed.num_frames} frames, {setup_s:.0f}s"
    )
    rows = [
        measure(
            packed,
            num_frames=t,
            batch_size=64,
            threads=threads,
            batches=args.batches,
            repeats=args.repeats,
        )
        for t in (243, 27)
        for threads in (int(n) for n in args.threads.split(","))
    ]
    print(f"{'T':>5} {'batch':>6} {'threads':>8} {'windows/s':>10} {'ms/batch':>9} {'cpu ms':>7}")
    for r in rows:
        print(
            f"{r['num_frames']:>5} {r['batch_size']:>6} {r['threads']:>8} "
            f"{r['windows_per_s']:>10.0f} {r['ms_per_batch']:>9.2f} {r['cpu_ms_per_batch']:>7.2f}"
        )
    files.write_json(
        args.json,
        {
            "source": args.source,
            "num_sequences": len(packed.lengths),
            "num_frames_total": packed.num_frames,
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "results": rows,
        },
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
