"""Reading and validating the VideoPose3D Human3.6M npz files that users bring.

`data_3d_h36m.npz` holds `positions_3d = {subject: {action: (N, 32 or 17, 3)}}` in world metres;
`data_2d_h36m_<source>.npz` holds `positions_2d = {subject: {action: [4 x (N, 17, 2 or 3)]}}` in
pixels, one array per camera in `h36m.CAMERA_IDS` order (a third channel is a confidence).
Everything is checked before anything is returned, and every error names the file and, where it
applies, the subject, action and camera.

Safe loading: these files store their dicts as pickled numpy object arrays, and unpickling can
run any code a file names. `load_npz_item` unpickles with `SafeUnpickler`, which builds only
what numpy writes for arrays, dicts, lists, strings and numbers (numpy's array reconstruction,
`ndarray`, `dtype` and scalars); a file that names anything else is refused (`UnsafeFileError`)
before any of it runs. Every reader of user npz files (this module, `gentg_jax.inference.io`)
goes through it.

Limits (checked at the door): scores in [0, 1]; 2D coordinates within +-`MAX_IMAGE_SPANS` image
widths (heights) of the origin; world coordinates within +-`MAX_WORLD_METRES`; 2D at most
`trim_tolerance(N)` frames longer than its N-frame 3D (the extra frames that real detector files
have) unless `allow_trim`, never shorter.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import pickle
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from gentg_jax import camera, skeleton
from gentg_jax.data import h36m

# The 17 Human3.6M joints kept from the 32-joint mocap skeleton, in `skeleton.JOINT_NAMES` order.
KEPT_JOINTS_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
_SOURCE_FILE = re.compile(r"^data_2d_h36m_(?P<source>[\w\+\-\.]+)\.npz$")
PathLike = str | os.PathLike

# 2D keypoints further than this many image widths (heights) from the origin are not pixels.
MAX_IMAGE_SPANS = 10.0
# World 3D coordinates beyond this are not metres (millimetres, or garbage).
MAX_WORLD_METRES = 100.0
# 2D may be this much longer than its 3D and is then cut to it: detector files of real videos
# run a few frames past the motion capture.
TRIM_TOLERANCE_FRAMES = 5
TRIM_TOLERANCE_FRACTION = 0.01


def trim_tolerance(num_frames: int) -> int:
    """The extra 2D frames cut silently from an N-frame sequence: max(5, 1 % of N)."""
    return max(TRIM_TOLERANCE_FRAMES, int(TRIM_TOLERANCE_FRACTION * num_frames))


class UnsafeFileError(ValueError):
    """A user file holds pickled objects that numpy arrays, dicts and lists never need."""


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What unpickling a numpy object array of dicts/lists/str/numbers/arrays needs (written
    by numpy 1.x as numpy.core.*, by numpy 2 as numpy._core.*; protocol 2 adds _codecs)."""
    import _codecs
    import builtins

    multiarray = _numpy_multiarray()
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[module, "_reconstruct"] = multiarray._reconstruct
        allowed[module, "scalar"] = multiarray.scalar
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float"):
        allowed["builtins", name] = getattr(builtins, name)
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, tuples, strings and numbers, nothing else.

    `find_class` is the only way a pickle reaches code: every global a pickle names (including
    through the copyreg extension registry) passes through it, so refusing all but the
    allow-list means nothing else is ever imported or called.
    """

    def __init__(self, file, where: str):
        super().__init__(file)
        self._where = where
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise UnsafeFileError(
                f"{self._where}: refused to load: the file's pickled data names {module}.{name}, "
                "which numpy arrays, dicts, lists, strings and numbers never need (loading it "
                "could run code); only read VideoPose3D files written by numpy"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self._where}: refused to load: pickled persistent ids")


def _check_npz(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    # Checking the zip signature first means a stray pickle is never unpickled.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an npz file (expected a numpy .npz zip archive)")
    return path


def npz_keys(path: PathLike) -> list[str]:
    """The array names in an npz file (FileNotFoundError / ValueError if it is not one)."""
    path = _check_npz(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return sorted(n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy"))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a readable npz file ({error})") from error


def load_npz_item(path: PathLike, key: str) -> np.ndarray:
    """The array `key` of an npz file; a pickled object array (how VideoPose3D stores its dicts)
    is unpickled by `SafeUnpickler`, so a crafted file cannot run code.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: not an npz file, no `key`, or unreadable; UnsafeFileError (a ValueError): the
        pickled data names something other than numpy arrays, dicts, lists and scalars.
    """
    keys = npz_keys(path)
    where = f"{path}: {key!r}"
    if key not in keys:
        raise ValueError(f"{path}: missing key {key!r} (found {keys})")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
            version = npy_format.read_magic(f)
            read_header = (
                npy_format.read_array_header_1_0
                if version == (1, 0)
                else npy_format.read_array_header_2_0
            )
            _, _, dtype = read_header(f)
            if not dtype.hasobject:
                with archive.open(f"{key}.npy") as again:
                    return npy_format.read_array(again, allow_pickle=False)
            value = SafeUnpickler(f, where).load()
    except UnsafeFileError:
        raise
    except (ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        message = f"{where} is not a readable array ({type(error).__name__}: {error})"
        raise ValueError(message) from error
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{where} holds a pickled {type(value).__name__}, not a numpy array")
    return value


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
    """The pickled dict stored under `key` in an npz archive (safely unpickled)."""
    value = load_npz_item(path, key)
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


def _check_within(array: np.ndarray, limit: Any, where: str, what: str) -> None:
    """Raises naming the first (frame, joint) where |array| exceeds `limit` (per channel)."""
    outside = np.abs(array) > np.asarray(limit)
    if outside.any():
        frame, joint, channel = (int(i[0]) for i in np.nonzero(outside))
        value = float(array[frame, joint, channel])
        raise ValueError(
            f"{where}: {what} (frame {frame}, joint {joint}: {'xyz'[channel]}={value:.6g}; "
            f"{int(outside.any(axis=(1, 2)).sum())} frames affected)"
        )


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
            _check_within(
                array,
                MAX_WORLD_METRES,
                where,
                f"world coordinates beyond +-{MAX_WORLD_METRES:g} m are not metres",
            )
            result[subject][action] = array.astype(np.float32)
    return result


def _check_lengths(arrays, path, subject, action, num_frames: int, allow_trim: bool) -> None:
    """Every camera's 2D covers the 3D, and runs past it by at most the trim tolerance."""
    lengths = [len(array) for array in arrays]
    for index, length in enumerate(lengths):
        if length < num_frames:
            raise ValueError(
                f"{_where(path, subject, action, index)}: 2D sequence has {length} frames, "
                f"shorter than the {num_frames} frames of the 3D sequence"
            )
    tolerance = trim_tolerance(num_frames)
    if not allow_trim and max(lengths) - num_frames > tolerance:
        raise ValueError(
            f"{_where(path, subject, action)}: the 2D has {lengths} frames per camera "
            f"{list(h36m.CAMERA_IDS)} but the 3D has {num_frames}; more than {tolerance} extra "
            "frames are not cut silently (do the files belong together?): pass --allow_trim "
            "(allow_trim=True) to cut the 2D to the 3D length"
        )


def _camera_views(
    views, path: PathLike, subject: str, action: str, num_frames: int, allow_trim: bool = False
):
    """Validates the per-camera 2D arrays of one sequence; returns trimmed keypoints and scores."""
    num_cameras = len(h36m.CAMERA_IDS)
    if not isinstance(views, (list, tuple)):
        raise ValueError(
            f"{_where(path, subject, action)}: expected a list of {num_cameras} arrays"
        )
    arrays = []
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
        arrays.append(array)
    _check_lengths(arrays, path, subject, action, num_frames, allow_trim)
    keypoints, scores = [], []
    for index, array in enumerate(arrays):
        where = _where(path, subject, action, index)
        array = array[:num_frames]
        _check_finite(array, where)
        size = np.asarray(h36m.camera(subject, index).image_size, np.float64)
        _check_within(
            array[..., :2],
            MAX_IMAGE_SPANS * size,
            where,
            f"2D coordinates beyond +-{MAX_IMAGE_SPANS:g} image sizes ({size[0]:g} x "
            f"{size[1]:g} px) are not pixels",
        )
        if array.shape[2] == 3:
            _check_scores(array[..., 2], where)
        keypoints.append(array[..., :2].astype(np.float32))
        if array.shape[2] == 3:
            scores.append(array[..., 2].astype(np.float32))
        else:
            scores.append(np.ones(array.shape[:2], np.float32))
    return tuple(keypoints), tuple(scores)


def _check_scores(scores: np.ndarray, where: str) -> None:
    outside = (scores < 0) | (scores > 1)
    if outside.any():
        frame, joint = (int(i[0]) for i in np.nonzero(outside))
        raise ValueError(
            f"{where}: scores (the third 2D channel) must lie in [0, 1]; frame {frame}, joint "
            f"{joint} has {float(scores[frame, joint]):.6g} ({int(outside.sum())} values outside)"
        )


def load_sequences(
    data_3d: PathLike,
    data_2d: PathLike,
    subjects: Iterable[str],
    positions_3d: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    *,
    allow_trim: bool = False,
) -> list[MocapSequence]:
    """Validated sequences of `subjects`, sorted by (subject, action).

    Args:
      data_3d: the `data_3d_h36m.npz` file (read unless `positions_3d` is given).
      data_2d: a `data_2d_h36m_<source>.npz` file.
      subjects: the subjects to keep; those absent from the 3D file are skipped.
      positions_3d: the already loaded content of `data_3d` (see `load_positions_3d`).
      allow_trim: cut 2D of any length to its 3D; by default only up to `trim_tolerance`.

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
            keypoints, scores = _camera_views(
                views, data_2d, subject, action, len(poses), allow_trim
            )
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
