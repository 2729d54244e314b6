"""Rig maps (rig points -> the 17 H36M joints, as data) and `load_clip`: file -> `Clip`."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from gentg_jax import skeleton
from gentg_jax.data.mocap.asf import read_asf_amc
from gentg_jax.data.mocap.bvh import read_bvh
from gentg_jax.data.mocap.kinematics import Motion, forward_kinematics, resample_motion

TARGET_FPS = 50.0
# Frame times outside this range (seconds) are taken as a broken header, not as a frame rate.
PLAUSIBLE_FRAME_TIME = (1e-3, 1.0)

# Built-in rig maps, in the JSON shape that user maps have (see the package docstring).
# Joint centres (the same rule for every rig):
#   hip        the pelvis/root joint             thorax     base of the neck, on the spine
#   r/l hip    hip joint (thigh start)           neck_nose  the nose: a head-frame offset
#   knee/ankle knee, ankle joint centres         head       top of the head: a head-frame offset
#   spine      mid-torso, about halfway up       shoulder/elbow/wrist: those joint centres
# The offsets are in the head point's own frame and file units: CC_Base's head frame has y up
# and z forward (its eyes sit at (+-3.3, 8.2, 8.2) cm), Bandai's has x up and y forward, CMU
# ASF uses rest-pose axes (y up, z forward) from the end of the `head` bone (top of the head).
RIG_MAPS = {
    "cmu": {  # CMU ASF/AMC; an ASF point is a bone's *end* (lfemur = knee, ltibia = ankle)
        "name": "cmu",
        "joints": {
            "hip": "root", "rhip": "rhipjoint", "rknee": "rfemur", "rankle": "rtibia",
            "lhip": "lhipjoint", "lknee": "lfemur", "lankle": "ltibia",
            "spine": "upperback",  # ~0.23 m above the root; lowerback ends only ~0.11 m up
            "thorax": "thorax",  # where the clavicles and lowerneck start
            # nose: 7 cm below and 9 cm before the head top (an estimate: no ASF data to measure)
            "neck_nose": {"point": "head", "offset": [0.0, -2.8, 3.5]},
            "head": "head",
            "lshoulder": "lclavicle", "lelbow": "lhumerus", "lwrist": "lradius",
            "rshoulder": "rclavicle", "relbow": "rhumerus", "rwrist": "rradius",
        },
        "toes": {"left": "lfoot", "right": "rfoot"},  # ball of the foot
        "length_unit_m": 0.0254,  # inches once the ASF's `:units length` 0.45 is divided out
        "up_axis": "y",
        "contact_height_m": 0.03,  # a ball-of-foot joint centre (estimate)
        "fps": 120.0,
    },
    "cc_base": {  # CMU retargeted to the Reallusion CC_Base rig (BVH); twist bones unused
        "name": "cc_base",
        "joints": {
            "hip": "CC_Base_Hip", "rhip": "CC_Base_R_Thigh", "rknee": "CC_Base_R_Calf",
            "rankle": "CC_Base_R_Foot", "lhip": "CC_Base_L_Thigh", "lknee": "CC_Base_L_Calf",
            "lankle": "CC_Base_L_Foot",
            "spine": "CC_Base_Spine02",  # 26 cm above the hip, thorax 53 cm
            "thorax": "CC_Base_NeckTwist01",  # neck base, 6 cm above the shoulder joints
            "neck_nose": {"point": "CC_Base_Head", "offset": [0.0, 5.0, 10.0]},  # below the eyes
            "head": {"point": "CC_Base_Head", "offset": [0.0, 17.0, 3.0]},  # 9 cm above the eyes
            "lshoulder": "CC_Base_L_Upperarm", "lelbow": "CC_Base_L_Forearm",
            "lwrist": "CC_Base_L_Hand", "rshoulder": "CC_Base_R_Upperarm",
            "relbow": "CC_Base_R_Forearm", "rwrist": "CC_Base_R_Hand",
        },
        "toes": {"left": "CC_Base_L_ToeBase", "right": "CC_Base_R_ToeBase"},
        "length_unit_m": 0.01,
        "up_axis": "y",
        # Toe joints sit 2.5-3.6 cm below the ankles; 0.06 m puts standing ankles ~9 cm up (the
        # files' own floors differ by subject: their toes' 2nd percentile is 3 to 12 cm).
        "contact_height_m": 0.06,
        "drop_first_frames": 1,  # the converter's T-pose
    },
    "bandai": {  # Bandai-Namco Research Motion Dataset (BVH)
        "name": "bandai",
        "joints": {
            "hip": "Hips", "rhip": "UpperLeg_R", "rknee": "LowerLeg_R", "rankle": "Foot_R",
            "lhip": "UpperLeg_L", "lknee": "LowerLeg_L", "lankle": "Foot_L",
            "spine": ["Spine", "Chest"],  # halfway between the hips and the neck
            "thorax": "Neck",  # neck base, 3 cm above the shoulder joints
            "neck_nose": {"point": "Head", "offset": [3.0, 8.0, 0.0]},
            "head": {"point": "Head", "offset": [10.0, 0.0, 0.0]},  # 11 files have this End Site
            "lshoulder": "UpperArm_L", "lelbow": "LowerArm_L", "lwrist": "Hand_L",
            "rshoulder": "UpperArm_R", "relbow": "LowerArm_R", "rwrist": "Hand_R",
        },
        "toes": {"left": "Toes_L", "right": "Toes_R"},
        "length_unit_m": 0.01,
        "up_axis": "y",
        "contact_height_m": 0.04,  # toes' 2nd percentile above the files' floor: 2.5-4.5 cm
    },
}  # fmt: skip

# Proper rotations that take each file up axis to +z.
_TO_Z_UP = {
    "z": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "-z": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    "y": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "-y": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    "x": ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    "-x": ((0, 1, 0), (0, 0, -1), (-1, 0, 0)),
}


class RigMapError(ValueError):
    """A file lacks a point that the rig map names: the map does not fit the file's rig."""


@dataclasses.dataclass(frozen=True)
class PointSource:
    """A rig point, the mean of two, or a point plus an offset in its own frame (file units)."""

    names: tuple[str, ...]
    offset: tuple[float, float, float] | None = None


@dataclasses.dataclass(frozen=True)
class RigMap:
    """How one rig's named points give the 17 H36M joints (see the package docstring)."""

    name: str
    joints: tuple[PointSource, ...]  # in skeleton.JOINT_NAMES order
    length_unit_m: float
    up_axis: str
    toes: tuple[PointSource, PointSource] | None = None  # (left, right)
    contact_height_m: float = 0.0
    drop_first_frames: int = 0
    fps: float | None = None


@dataclasses.dataclass(frozen=True)
class Clip:
    """One motion clip as H36M-17 world poses (metres, z up, `fps`), before placement."""

    name: str
    path: str
    rig: str
    positions_world: np.ndarray  # (F, 17, 3) float32
    toes_world: np.ndarray | None  # (F, 2, 3) float32 left and right toes, or None
    contact_height_m: float  # height of the toes (or ankles) above a floor they stand on
    fps: float
    source_fps: float
    source_frames: int  # frames read from the file, after drop_first_frames

    @property
    def num_frames(self) -> int:
        return len(self.positions_world)


def _point_source(value, where: str) -> PointSource:
    if isinstance(value, str):
        return PointSource((value,))
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        return PointSource(tuple(value))
    if isinstance(value, dict) and set(value) == {"point", "offset"}:
        offset = value["offset"]
        if (
            isinstance(value["point"], str)
            and isinstance(offset, list | tuple)
            and len(offset) == 3
        ):
            return PointSource((value["point"],), tuple(float(v) for v in offset))
    raise ValueError(
        f"{where}: expected a point name, a list of two names or "
        f'{{"point": name, "offset": [x, y, z]}}, got {value!r}'
    )


def parse_rig_map(spec: dict, source: str = "<dict>") -> RigMap:
    """A `RigMap` from its JSON-shaped dict; errors name `source` and the field."""
    if not isinstance(spec, dict) or not isinstance(spec.get("joints"), dict):
        raise ValueError(f"{source}: a rig map needs a 'joints' object")
    known = {"name", "joints", "toes", "length_unit_m", "up_axis", "contact_height_m"}
    unknown = set(spec) - known - {"drop_first_frames", "fps", "comment"}
    missing = [j for j in skeleton.JOINT_NAMES if j not in spec["joints"]]
    extra = sorted(set(spec["joints"]) - set(skeleton.JOINT_NAMES))
    if unknown or missing or extra:
        raise ValueError(
            f"{source}: rig map fields: unknown {sorted(unknown)}, missing H36M joints {missing}, "
            f"unknown joints {extra} (joints are {list(skeleton.JOINT_NAMES)})"
        )
    for field in ("length_unit_m", "up_axis"):
        if field not in spec:
            raise ValueError(f"{source}: rig map needs {field!r}")
    if spec["up_axis"] not in _TO_Z_UP:
        raise ValueError(
            f"{source}: up_axis must be one of {list(_TO_Z_UP)}, not {spec['up_axis']!r}"
        )
    joints = tuple(
        _point_source(spec["joints"][j], f"{source}: joints.{j}") for j in skeleton.JOINT_NAMES
    )
    toes = spec.get("toes")
    if toes is not None:
        if not isinstance(toes, dict) or set(toes) != {"left", "right"}:
            raise ValueError(f'{source}: \'toes\' must be {{"left": ..., "right": ...}}')
        toes = tuple(_point_source(toes[s], f"{source}: toes.{s}") for s in ("left", "right"))
    numbers = {}
    defaults = {"length_unit_m": None, "contact_height_m": 0.0, "drop_first_frames": 0, "fps": None}
    for field, default in defaults.items():
        value = spec.get(field, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{source}: {field} must be a number, got {value!r}")
        numbers[field] = value
    if not numbers["length_unit_m"] > 0 or numbers["drop_first_frames"] < 0:
        raise ValueError(f"{source}: length_unit_m must be > 0 and drop_first_frames >= 0")
    return RigMap(
        name=str(spec.get("name", pathlib.Path(source).stem)),
        joints=joints,
        length_unit_m=float(numbers["length_unit_m"]),
        up_axis=spec["up_axis"],
        toes=toes,
        contact_height_m=float(numbers["contact_height_m"]),
        drop_first_frames=int(numbers["drop_first_frames"]),
        fps=None if numbers["fps"] is None else float(numbers["fps"]),
    )


def rig_map(rig: str | os.PathLike | dict | RigMap) -> RigMap:
    """A built-in map by name ('cmu', 'cc_base', 'bandai'), a JSON file, a dict or a RigMap."""
    if isinstance(rig, RigMap):
        return rig
    if isinstance(rig, dict):
        return parse_rig_map(rig)
    if isinstance(rig, str) and rig in RIG_MAPS:
        return parse_rig_map(RIG_MAPS[rig], f"built-in rig map {rig!r}")
    path = pathlib.Path(rig)
    if not path.is_file():
        raise ValueError(
            f"rig {str(rig)!r} is neither a built-in map {sorted(RIG_MAPS)} nor a file"
        )
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    return parse_rig_map(spec, str(path))


def _check_points(motion: Motion, rig: RigMap) -> None:
    """A one-line error naming the file and the first rig point that it lacks."""
    uses = list(zip(rig.joints, [f"H36M joint {j!r}" for j in skeleton.JOINT_NAMES], strict=True))
    if rig.toes is not None:
        uses += list(zip(rig.toes, ("the left toes", "the right toes"), strict=True))
    known = set(motion.names)
    for source, what in uses:
        for name in source.names:
            if name not in known:
                raise RigMapError(
                    f"{motion.path}: rig map {rig.name!r} needs point {name!r} (for {what}), "
                    f"which the file does not have; it has {len(motion.names)} points, e.g. "
                    f"{list(motion.names[:8])}"
                )


def _resolve(names: tuple[str, ...], kinematics, source: PointSource) -> np.ndarray:
    """(F, 3) positions of one point source, in file units and axes."""
    positions, rotations = kinematics
    indices = [names.index(name) for name in source.names]
    points = positions[:, indices].mean(axis=1)
    if source.offset is not None:
        points = points + rotations[:, indices[0]] @ np.asarray(source.offset)
    return points


def to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    """Rotates points (..., 3) so that the file's `up_axis` becomes +z (a proper rotation)."""
    return points @ np.asarray(_TO_Z_UP[up_axis], np.float64).T


def _source_fps(motion: Motion, rig: RigMap, fps: float | None) -> float:
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"{motion.path}: fps override must be positive, got {fps}")
        return float(fps)
    if motion.frame_time is None:
        if rig.fps is None:
            raise ValueError(f"{motion.path}: no frame time in the file; pass fps= or a map 'fps'")
        return rig.fps
    low, high = PLAUSIBLE_FRAME_TIME
    if not low <= motion.frame_time <= high:
        raise ValueError(
            f"{motion.path}: implausible Frame Time {motion.frame_time} s (expected {low}..{high});"
            " pass fps= to override it"
        )
    return 1.0 / motion.frame_time


def _find_asf(amc_path: pathlib.Path) -> pathlib.Path:
    """The ASF of a CMU AMC file: '<subject>.asf' for '<subject>_<trial>.amc', or the only one."""
    candidate = amc_path.with_name(amc_path.stem.split("_")[0] + ".asf")
    if candidate.is_file():
        return candidate
    found = sorted(amc_path.parent.glob("*.asf"))
    if len(found) != 1:
        raise ValueError(
            f"{amc_path}: cannot tell which ASF goes with it ({len(found)} found); pass asf="
        )
    return found[0]


def load_clip(path, rig, *, fps: float | None = None, asf=None, name: str | None = None) -> Clip:
    """Reads a BVH or AMC file into H36M-17 world poses: metres, z up, resampled to 50 fps.

    Args:
      path: a .bvh file, or a .amc file (its ASF: `asf`, else '<subject>.asf' beside it, else
        the only .asf in its folder).
      rig: anything `rig_map` accepts.
      fps: the source frame rate, overriding the file's Frame Time. A Frame Time outside
        PLAUSIBLE_FRAME_TIME (e.g. 0 or 2 s) raises a ValueError unless `fps` is given.
      name: the clip name (default: the file name without its suffix).

    Returns:
      A `Clip`: the 17 joints (and the toes, when the map names them) at 50 fps, from the first
      frame kept (after the map's drop_first_frames) to the last.

    Raises:
      ValueError: one line naming the file, for a malformed file; a `RigMapError` (a
        ValueError) for a rig point it lacks.
    """
    path, rig = pathlib.Path(path), rig_map(rig)
    if path.suffix.lower() == ".amc":
        motion = read_asf_amc(asf if asf is not None else _find_asf(path), path)
    else:
        motion = read_bvh(path)
    _check_points(motion, rig)
    source_fps = _source_fps(motion, rig, fps)
    drop = rig.drop_first_frames
    motion = dataclasses.replace(
        motion,
        local_rotations=motion.local_rotations[drop:],
        local_translations=motion.local_translations[drop:],
    )
    kinematics = forward_kinematics(resample_motion(motion, source_fps, TARGET_FPS))

    def world(sources) -> np.ndarray:
        points = np.stack([_resolve(motion.names, kinematics, s) for s in sources], axis=1)
        return to_z_up(points * rig.length_unit_m, rig.up_axis).astype(np.float32)

    joints = world(rig.joints)
    toes = None if rig.toes is None else world(rig.toes)
    return Clip(
        name=name or path.stem,
        path=str(path),
        rig=rig.name,
        positions_world=joints,
        toes_world=toes,
        contact_height_m=rig.contact_height_m,
        fps=TARGET_FPS,
        source_fps=source_fps,
        source_frames=motion.num_frames,
    )
