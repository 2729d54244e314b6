"""Sanity checks of a loaded clip; each names the file and says what is wrong.

Every `*_problem` function returns None for a good clip and a one-line message otherwise;
`clip_problems` collects them and `check_clip` raises them as one ValueError.
"""

from __future__ import annotations

import pathlib

import numpy as np

from gentg_jax import skeleton
from gentg_jax.data.mocap.rigs import Clip

MIN_FRAMES = 50  # one second at 50 fps
BONE_RTOL = 0.02
# H36M limbs that are one rigid rig bone (or a fixed offset) in every built-in rig map: the
# pelvis halves, thighs, shins, upper arms, forearms and nose -> head top.
RIGID_LIMBS = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (9, 10),
               (11, 12), (12, 13), (14, 15), (15, 16))  # fmt: skip
# Shares of the judged frames that must agree with the body's left/right and facing.
MIN_AGREEMENT = 0.7
MIN_KNEE_BEND_M = 0.03  # knees nearer than this to the hip-ankle line are not judged
UPRIGHT_DEG = 30.0  # knees and toes are judged while the hip->thorax line is this near vertical
STANCE_M = 0.05  # a foot whose toes and ankle are this close to their lowest is flat on the floor
# A joint step between two frames faster than this (m/s) is taken as a tracking or retargeting
# glitch (a limb that jumps and stays). The fastest joint in the Bandai-Namco dashes and kicks
# reaches 10.4 m/s; an all-out sprint's swinging foot can exceed 15, so raise it for sprints.
MAX_JOINT_SPEED = 15.0


def _where(clip: Clip) -> str:
    """The file, and the clip's name when it is a piece of the file."""
    stem = pathlib.PurePath(clip.path).stem
    return clip.path if clip.name == stem else f"{clip.path} ({clip.name})"


def finite_problem(clip: Clip) -> str | None:
    """NaN or inf anywhere in the joints or toes."""
    arrays = [clip.positions_world] + ([clip.toes_world] if clip.toes_world is not None else [])
    bad = sum(int(np.size(a) - np.isfinite(a).sum()) for a in arrays)
    if bad:
        frames = np.flatnonzero(~np.isfinite(clip.positions_world).all(axis=(1, 2)))
        return f"{_where(clip)}: {bad} non-finite values (NaN/inf), first in frame {frames[:1]}"
    return None


def length_problem(clip: Clip, min_frames: int = MIN_FRAMES) -> str | None:
    """Fewer than `min_frames` frames (at the clip's fps)."""
    if clip.num_frames < min_frames:
        return f"{_where(clip)}: {clip.num_frames} frames at {clip.fps:g} fps, need {min_frames}"
    return None


def limb_length_variation(positions: np.ndarray, limbs=RIGID_LIMBS) -> np.ndarray:
    """(max - min) / median length over frames of each limb (parent, child) of (F, J, 3)."""
    parents, children = np.asarray(limbs).T
    lengths = np.linalg.norm(positions[:, children] - positions[:, parents], axis=-1)
    median = np.median(lengths, axis=0)
    return (lengths.max(axis=0) - lengths.min(axis=0)) / np.maximum(median, 1e-9)


def bone_length_problem(clip: Clip, rtol: float = BONE_RTOL, limbs=RIGID_LIMBS) -> str | None:
    """A rigid limb whose length varies by more than `rtol` (relative) over the clip."""
    variation = limb_length_variation(np.asarray(clip.positions_world, np.float64), limbs)
    worst = int(np.argmax(variation))
    if variation[worst] > rtol:
        parent, child = limbs[worst]
        names = skeleton.JOINT_NAMES
        return (
            f"{_where(clip)}: limb {names[parent]}->{names[child]} length varies by "
            f"{variation[worst]:.1%} over the clip (> {rtol:.1%}): broken kinematics or rig map"
        )
    return None


def _horizontal_unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v.copy()
    v[..., 2] = 0
    norm = np.linalg.norm(v, axis=-1)
    return v / np.maximum(norm, 1e-9)[..., None], norm


def _share(values: np.ndarray) -> float:
    return float(np.mean(values > 0)) if len(values) else 1.0


def mirror_problem(clip: Clip) -> str | None:
    """Left/right swapped or mirrored rig: knees, toes and shoulders disagree with the hips.

    The body's forward direction is taken from the hips alone, forward = (lhip - rhip) x up
    (z up, right-handed). A correct rig then has its knees bending forward (where they bend by
    at least MIN_KNEE_BEND_M), its toes pointing forward and its left shoulder on the same side
    as its left hip, each in at least MIN_AGREEMENT of the judged frames. Knees and toes are
    judged while the torso is upright (UPRIGHT_DEG), toes only while their foot is flat on the
    floor (a running foot behind the body points backwards).
    """
    p = np.asarray(clip.positions_world, np.float64)
    forward, _ = _horizontal_unit(np.cross(p[:, 4] - p[:, 1], np.array([0.0, 0.0, 1.0])))
    torso = p[:, 8] - p[:, 0]
    upright = torso[:, 2] > np.cos(np.deg2rad(UPRIGHT_DEG)) * np.linalg.norm(torso, axis=-1)
    knee_shares = []
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        line = p[:, ankle] - p[:, hip]
        t = np.sum((p[:, knee] - p[:, hip]) * line, -1) / np.maximum(np.sum(line**2, -1), 1e-9)
        bend = p[:, knee] - (p[:, hip] + t[:, None] * line)
        bent = (np.linalg.norm(bend, axis=-1) >= MIN_KNEE_BEND_M) & upright
        knee_shares.append(np.sum(bend * forward, -1)[bent])
    tests = {
        "knees bending forward": _share(np.concatenate(knee_shares)),
        "left shoulder on the left hip's side": _share(
            np.sum((p[:, 11] - p[:, 14]) * (p[:, 4] - p[:, 1]), -1)
        ),
    }
    if clip.toes_world is not None:
        toes, ankles = np.asarray(clip.toes_world, np.float64), p[:, [6, 3]]
        direction, length = _horizontal_unit(toes - ankles)
        flat = (toes[..., 2] < np.percentile(toes[..., 2], 2) + STANCE_M) & (
            ankles[..., 2] < np.percentile(ankles[..., 2], 2) + STANCE_M
        )
        judged = flat & (length > 0.01) & upright[:, None]
        pointing = np.sum(direction * forward[:, None], -1)[judged]
        tests["toes of flat feet pointing forward"] = _share(pointing)
    failed = [f"{name} in {share:.0%} of frames" for name, share in tests.items()]
    failed = [f for f, share in zip(failed, tests.values(), strict=True) if share < MIN_AGREEMENT]
    if failed:
        return (
            f"{_where(clip)}: left/right swapped or mirrored rig? (forward from the hips) "
            + ", ".join(failed)
            + f" (need {MIN_AGREEMENT:.0%})"
        )
    return None


def joint_speeds(clip: Clip) -> np.ndarray:
    """(F - 1, 17) speed (m/s) of each joint from each frame to the next."""
    return np.linalg.norm(np.diff(clip.positions_world, axis=0), axis=-1) * clip.fps


def glitch_steps(clip: Clip, max_speed: float = MAX_JOINT_SPEED) -> np.ndarray:
    """Frames k whose step to frame k + 1 moves a joint faster than `max_speed` m/s."""
    return np.flatnonzero(joint_speeds(clip).max(axis=1, initial=0) > max_speed)


def speed_problem(clip: Clip, max_speed: float = MAX_JOINT_SPEED) -> str | None:
    """A joint that moves faster than `max_speed` m/s between two frames (a glitch)."""
    speed = joint_speeds(clip)
    fast = glitch_steps(clip, max_speed)
    if len(fast):
        frame, joint = fast[0], int(np.argmax(speed[fast[0]]))
        return (
            f"{_where(clip)}: {len(fast)} glitch frames (a joint faster than {max_speed:g} m/s), "
            f"first {skeleton.JOINT_NAMES[joint]} at {speed[frame, joint]:.1f} m/s in frame {frame}"
        )
    return None


def clip_problems(
    clip: Clip, *, min_frames: int = MIN_FRAMES, bone_rtol: float = BONE_RTOL
) -> list[str]:
    """Every problem found in a clip (empty when it passes all checks)."""
    problems = [finite_problem(clip), length_problem(clip, min_frames)]
    if problems[0] is None and clip.num_frames:
        problems += [bone_length_problem(clip, bone_rtol), mirror_problem(clip)]
        problems += [speed_problem(clip)]
    return [p for p in problems if p is not None]


def check_clip(clip: Clip, *, min_frames: int = MIN_FRAMES, bone_rtol: float = BONE_RTOL) -> None:
    """Raises a one-line ValueError naming the file and every problem, if there are any."""
    problems = clip_problems(clip, min_frames=min_frames, bone_rtol=bone_rtol)
    if problems:
        raise ValueError("; ".join(problems))
