"""Writing the converted motion as VideoPose3D npz files, and checking what was written.

`data_3d_<name>.npz` (`positions_3d` = {subject: {action: (N, 17, 3)}} world metres, z up),
`data_2d_<name>_gt.npz` (`positions_2d` = {subject: {action: [4 x (N, 17, 2)]}} pixels: the
projections through the subject's four cameras with distortion) and `data_2d_<name>_detector.npz`
(the same through `detector_noise`, scores as a third channel), each with `metadata`.
"""

from __future__ import annotations

import pathlib
import zlib

import numpy as np

from gentg_jax import camera as camera_lib
from gentg_jax import skeleton
from gentg_jax.data import detector_noise, h36m, videopose3d

REPROJECTION_TOLERANCE_PX = 0.5


def project_world(positions: np.ndarray, subject: str) -> list[np.ndarray]:
    """(N, 17, 3) world metres -> 4 x (N, 17, 2) float32 pixels, the subject's cameras."""
    out = []
    for index in range(len(h36m.CAMERA_IDS)):
        cam = h36m.camera(subject, index)
        local = camera_lib.world_to_camera(positions, cam.orientation, cam.translation)
        screen = camera_lib.project_to_2d(local, cam.intrinsic)
        out.append(camera_lib.image_coordinates(screen, cam.res_w, cam.res_h).astype(np.float32))
    return out


def _detector_2d(keypoints, subject: str, key: str, seed: int) -> list[np.ndarray]:
    out = []
    for index, clean in enumerate(keypoints):
        cam = h36m.camera(subject, index)
        rng = np.random.default_rng([seed, zlib.crc32(f"{subject}/{key}/{cam.id}".encode())])
        noisy, scores = detector_noise.detector_noise(
            clean, cam.image_size, rng, detector_noise.NoiseConfig()
        )
        out.append(np.concatenate([noisy, scores[..., None]], axis=-1))
    return out


def write_npz(folder: pathlib.Path, name: str, sequences, seed: int) -> dict:
    """Writes the three VideoPose3D files of `sequences` [(file, subject, action, (N, 17, 3))]
    into `folder`; returns {"3d" | "gt" | "detector": path}."""
    positions_3d, gt, detector = {}, {}, {}
    for path, subject, key, positions in sequences:
        if key in positions_3d.setdefault(subject, {}):
            raise ValueError(f"{path}: sequence {subject}/{key!r} is made twice")
        positions_3d[subject][key] = positions
        keypoints = project_world(positions, subject)
        gt.setdefault(subject, {})[key] = keypoints
        detector.setdefault(subject, {})[key] = _detector_2d(keypoints, subject, key, seed)
    metadata = {
        "num_joints": skeleton.NUM_JOINTS,
        "keypoints_symmetry": [list(skeleton.JOINTS_LEFT), list(skeleton.JOINTS_RIGHT)],
        "layout_name": "h36m",
    }
    paths = {
        "3d": folder / f"data_3d_{name}.npz",
        "gt": folder / f"data_2d_{name}_gt.npz",
        "detector": folder / f"data_2d_{name}_detector.npz",
    }
    np.savez_compressed(paths["3d"], positions_3d=positions_3d)
    for source, content in (("gt", gt), ("detector", detector)):
        np.savez_compressed(paths[source], positions_2d=content, metadata=metadata)
    return paths


def verify_files(paths: dict, min_frames: int) -> None:
    """Step 6's checks on written files; a ValueError names the file and sequence."""
    positions_3d = videopose3d.load_positions_3d(paths["3d"])  # shapes, NaN
    for source in ("gt", "detector"):
        videopose3d.load_sequences(paths["3d"], paths[source], list(positions_3d), positions_3d)
    for seq in videopose3d.load_sequences(paths["3d"], paths["gt"], list(positions_3d)):
        where = f"{paths['gt']}, subject {seq.subject!r}, action {seq.action!r}"
        if len(seq.positions_3d) < min_frames:
            raise ValueError(f"{where}: {len(seq.positions_3d)} frames, need {min_frames}")
        for index, (written, projected) in enumerate(
            zip(seq.keypoints_2d, project_world(seq.positions_3d, seq.subject), strict=True)
        ):
            error = float(np.abs(written - projected).max())
            if not error < REPROJECTION_TOLERANCE_PX:
                raise ValueError(
                    f"{where}, camera {h36m.CAMERA_IDS[index]}: the 3D reprojects {error:.3f} px "
                    f"from the written 2D (tolerance {REPROJECTION_TOLERANCE_PX} px)"
                )
