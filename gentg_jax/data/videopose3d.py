"""Reading and validating the VideoPose3D Human3.6M npz files that users bring.

`data_3d_h36m.npz` holds `positions_3d = {subject: {action: (N, 32 or 17, 3)}}` in world metres;
`data_2d_h36m_<source>.npz` holds `positions_2d = {subject: {action: [4 x (N, 17, 2 or 3)]}}` in
pixels, one array per camera in `h36m.CAMERA_IDS` order (a third channel is a confidence).
Everything is checked before anything is returned, and every error names the file and, where it
applies, the subject, action and camera.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from gentg_jax import camera, skeleton
from gentg_jax.data import h36m

# The 17 Human3.6M joints kept from the 32-joint mocap skeleton, in `skeleton.JOINT_NAMES` order.
KEPT_JOINTS_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
_SOURCE_FILE = re.compile(r"^data_2d_h36m_(?P<source>[\w\+\-\.]+)\.npz$")
PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class MocapSequence:
    """One validated capture: world 3D and, per camera, 2D trimmed to the 3D length."""

    subject: str
    action: str
    positions_3d: np.ndarray  # (N, 17, 3) float32 world metres
    keypoints_2d: tuple[np.ndarray, ...]  # 4 x (N, 17, 2) float32 pixels
    scores: tuple[np.ndarray, ...]  # 4 x (N, 17) float32


def source_name(path: PathLike) -> str:
    """The 2D source of a `data_2d_h36m_<source>.npz` file name (e.g. `cpn_ft_h36m_dbb`)."""
    match = _SOURCE_FILE.match(pathlib.Path(path).name)
    if match is None:
        raise ValueError(
            f"{path}: 2D file names must look like data_2d_h36m_<source>.npz with <source> made "
            "of letters, digits, '_', '-', '.' or '+' (the source names the dataset config)"
        )
    return match.group("source")


def _where(path: PathLike, subject=None, action=None, camera_index=None) -> str:
    parts = [str(path)]
    if subject is not None:
        parts.append(f"subject {subject!r}")
    if action is not None:
        parts.append(f"action {action!r}")
    if camera_index is not None:
        parts.append(f"camera {h36m.CAMERA_IDS[camera_index]} (index {camera_index})")
    return ", ".join(parts)


def _load_dict(path: PathLike, key: str) -> dict:
    """The pickled dict stored under `key` in an npz archive."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    # Checking the zip signature first means a stray pickle is never unpickled.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an npz file (expected a numpy .npz zip archive)")
    with np.load(path, allow_pickle=True) as archive:
        if key not in archive.files:
            raise ValueError(f"{path}: missing key {key!r} (found {sorted(archive.files)})")
        value = archive[key]
    if value.shape != () or not isinstance(value.item(), dict):
        raise ValueError(f"{path}: {key!r} must be a pickled dict {{subject: {{action: ...}}}}")
    return value.item()


def _as_float_array(value, where: str) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{where}: expected a numeric array, got dtype {array.dtype}")
    return array


def _check_finite(array: np.ndarray, where: str) -> None:
    if not np.isfinite(array).all():
        bad = np.unique(np.nonzero(~np.isfinite(array))[0])
        raise ValueError(f"{where}: NaN or inf values in {bad.size} frames (first: {bad[0]})")


def load_positions_3d(path: PathLike) -> dict[str, dict[str, np.ndarray]]:
    """`{subject: {action: (N, 17, 3) float32}}` world metres from a `data_3d_h36m.npz` file.

    32-joint arrays are reduced to the 17 kept joints; 17-joint arrays are taken as they are.
    """
    positions = _load_dict(path, "positions_3d")
    result = {}
    for subject, actions in positions.items():
        if not isinstance(actions, Mapping):
            raise ValueError(f"{_where(path, subject)}: expected a dict {{action: (N, J, 3)}}")
        result[subject] = {}
        for action, value in actions.items():
            where = _where(path, subject, action)
            array = _as_float_array(value, where)
            if array.ndim != 3 or array.shape[1] not in (32, 17) or array.shape[2] != 3:
                raise ValueError(
                    f"{where}: wrong joint count or shape {array.shape}; expected (N, 32, 3) or "
                    f"(N, {skeleton.NUM_JOINTS}, 3)"
                )
            if array.shape[0] == 0:
                raise ValueError(f"{where}: empty sequence")
            if array.shape[1] == 32:
                array = array[:, KEPT_JOINTS_32]
            _check_finite(array, where)
            result[subject][action] = array.astype(np.float32)
    return result


def _camera_views(views, path: PathLike, subject: str, action: str, num_frames: int):
    """Validates the per-camera 2D arrays of one sequence; returns trimmed keypoints and scores."""
    num_cameras = len(h36m.CAMERA_IDS)
    if not isinstance(views, (list, tuple)):
        raise ValueError(
            f"{_where(path, subject, action)}: expected a list of {num_cameras} arrays"
        )
    keypoints, scores = [], []
    for index in range(num_cameras):
        where = _where(path, subject, action, index)
        if index >= len(views):
            raise ValueError(f"{where}: missing (only {len(views)} of {num_cameras} cameras)")
        array = _as_float_array(views[index], where)
        if array.ndim != 3 or array.shape[1] != skeleton.NUM_JOINTS or array.shape[2] not in (2, 3):
            raise ValueError(
                f"{where}: wrong joint count or shape {array.shape}; expected "
                f"(N, {skeleton.NUM_JOINTS}, 2) or (N, {skeleton.NUM_JOINTS}, 3)"
            )
        if array.shape[0] < num_frames:
            raise ValueError(
                f"{where}: 2D sequence has {array.shape[0]} frames, shorter than the "
                f"{num_frames} frames of the 3D sequence"
            )
        array = array[:num_frames]
        _check_finite(array, where)
        keypoints.append(array[..., :2].astype(np.float32))
        if array.shape[2] == 3:
            scores.append(array[..., 2].astype(np.float32))
        else:
            scores.append(np.ones(array.shape[:2], np.float32))
    return tuple(keypoints), tuple(scores)


def load_sequences(
    data_3d: PathLike,
    data_2d: PathLike,
    subjects: Iterable[str],
    positions_3d: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> list[MocapSequence]:
    """Validated sequences of `subjects`, sorted by (subject, action).

    Args:
      data_3d: the `data_3d_h36m.npz` file (read unless `positions_3d` is given).
      data_2d: a `data_2d_h36m_<source>.npz` file.
      subjects: the subjects to keep; those absent from the 3D file are skipped.
      positions_3d: the already loaded content of `data_3d` (see `load_positions_3d`).

    Returns:
      One `MocapSequence` per (subject, action) of the 3D file; 2D entries without 3D are ignored.
    """
    if positions_3d is None:
        positions_3d = load_positions_3d(data_3d)
    positions_2d = _load_dict(data_2d, "positions_2d")
    sequences = []
    for subject in sorted(set(subjects) & set(positions_3d)):
        actions = positions_3d[subject]
        if subject not in h36m.EXTRINSICS:
            raise ValueError(
                f"{_where(data_3d, subject)}: no camera parameters for this subject (actions "
                f"{sorted(actions)[:3]}...; subjects with cameras: {sorted(h36m.EXTRINSICS)})"
            )
        for action in sorted(actions):
            if subject not in positions_2d or action not in positions_2d[subject]:
                raise ValueError(
                    f"{_where(data_2d, subject, action)}: missing key (the 3D file {data_3d} has "
                    "this sequence, the 2D file does not)"
                )
            poses = actions[action]
            views = positions_2d[subject][action]
            keypoints, scores = _camera_views(views, data_2d, subject, action, len(poses))
            sequences.append(MocapSequence(subject, action, poses, keypoints, scores))
    return sequences


def camera_examples(sequence: MocapSequence) -> Iterator[tuple[str, dict]]:
    """(key, example) per camera of a sequence, with the 3D moved into that camera's frame."""
    for index, (keypoints, scores) in enumerate(
        zip(sequence.keypoints_2d, sequence.scores, strict=True)
    ):
        cam = h36m.camera(sequence.subject, index)
        pose = camera.world_to_camera(sequence.positions_3d, cam.orientation, cam.translation)
        example = {
            "subject": sequence.subject,
            "action": sequence.action,
            "camera": cam.id,
            "keypoints_2d": keypoints,
            "scores": scores,
            "pose_3d": pose.astype(np.float32),
            "intrinsics": cam.intrinsic,
            "image_size": np.asarray(cam.image_size, np.int32),
        }
        yield f"{sequence.subject}/{sequence.action}/{cam.id}", example
