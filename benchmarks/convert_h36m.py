"""Speed of the Human3.6M converter (npz files -> TFDS array_record) at full Human3.6M size.

  python -m benchmarks.convert_h36m --json benchmarks/results/convert_h36m.json

Writes a 32-joint `data_3d_h36m.npz` and a `data_2d_h36m_bench.npz` with confidences (random-walk
motion projected by the real cameras; 7 subjects x 30 actions, 3.6M 2D frames over the 4 cameras by
default) into a temporary directory, converts them with `tfds_builders.build_h36m_lifting`, reads
the train split back once, and prints a table. Only the sizes matter for the speed.
"""

import argparse
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

from gentg_jax import camera, files
from gentg_jax.data import h36m, tfds_builders, videopose3d

SUBJECTS = (*h36m.TRAIN_SUBJECTS, *h36m.TEST_SUBJECTS)


def _random_walk_poses(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames, 32, 3) float32 world metres: a wandering root plus jittering joint offsets."""
    root = np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0) + [0.0, 0.0, 0.9]
    offsets = rng.normal(0, 0.3, (1, 32, 3)) + np.cumsum(rng.normal(0, 0.002, (frames, 32, 3)), 0)
    return (root + offsets).astype(np.float32)


def write_files(directory: pathlib.Path, *, actions: int, frames_2d: int, seed: int):
    """Writes the two npz files; returns (3D path, 2D path, number of 3D frames)."""
    rng = np.random.default_rng(seed)
    num_sequences = len(SUBJECTS) * actions
    lengths = rng.uniform(0.5, 1.5, num_sequences)
    lengths = np.maximum(np.round(lengths / lengths.sum() * frames_2d / 4), 1).astype(int)
    positions_3d, positions_2d = {}, {}
    for index, length in enumerate(lengths):
        subject, action = SUBJECTS[index % len(SUBJECTS)], f"Action{index // len(SUBJECTS)} 1"
        poses = _random_walk_poses(rng, int(length))
        views = []
        for cam_index in range(len(h36m.CAMERA_IDS)):
            cam = h36m.camera(subject, cam_index)
            local = camera.world_to_camera(
                poses[:, videopose3d.KEPT_JOINTS_32], cam.orientation, cam.translation
            )
            pixels = camera.image_coordinates(
                camera.project_to_2d(local, cam.intrinsic), cam.res_w, cam.res_h
            )
            confidence = rng.random((*pixels.shape[:2], 1), np.float32)
            views.append(np.concatenate([pixels, confidence], axis=-1).astype(np.float32))
        positions_3d.setdefault(subject, {})[action] = poses
        positions_2d.setdefault(subject, {})[action] = views
    path_3d, path_2d = directory / "data_3d_h36m.npz", directory / "data_2d_h36m_bench.npz"
    np.savez(path_3d, positions_3d=positions_3d)
    np.savez(path_2d, positions_2d=positions_2d, metadata={"num_joints": 17})
    return path_3d, path_2d, int(lengths.sum())


def _directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(*, actions: int, frames_2d: int, seed: int) -> dict:
    """Generates, converts and reads back; returns the measurements."""
    with tempfile.TemporaryDirectory(prefix="convert_h36m_bench_") as tmp:
        tmp = pathlib.Path(tmp)
        start = time.perf_counter()
        path_3d, path_2d, frames_3d = write_files(
            tmp, actions=actions, frames_2d=frames_2d, seed=seed
        )
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        (dataset,) = tfds_builders.build_h36m_lifting(path_3d, [path_2d], tmp / "tfds")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        source = tfds_builders.open_split("h36m_lifting/bench", tmp / "tfds", "train")
        read_frames = sum(source[i]["keypoints_2d"].shape[0] for i in range(len(source)))
        read_s = time.perf_counter() - start
        return {
            "subjects": len(SUBJECTS),
            "actions": actions,
            "frames_3d": frames_3d,
            "frames_2d": 4 * frames_3d,
            "input_bytes": path_3d.stat().st_size + path_2d.stat().st_size,
            "dataset_bytes": _directory_bytes(dataset),
            "generate_s": generate_s,
            "convert_s": convert_s,
            "convert_frames_2d_per_s": 4 * frames_3d / convert_s,
            "read_train_s": read_s,
            "read_train_frames_per_s": read_frames / read_s,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=30, help="actions per subject")
    parser.add_argument("--frames_2d", type=int, default=3_600_000, help="2D frames, all cameras")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="write the results here as JSON")
    args = parser.parse_args()
    result = run(actions=args.actions, frames_2d=args.frames_2d, seed=args.seed)
    print(f"{'what':<28}{'value':>16}")
    for key in ("frames_3d", "frames_2d", "input_bytes", "dataset_bytes"):
        print(f"{key:<28}{result[key]:>16,}")
    for key in ("generate_s", "convert_s", "read_train_s"):
        print(f"{key:<28}{result[key]:>16.1f}")
    for key in ("convert_frames_2d_per_s", "read_train_frames_per_s"):
        print(f"{key:<28}{result[key]:>16,.0f}")
    if args.json:
        files.write_json(args.json, result)


if __name__ == "__main__":
    main()
