"""What the readers share: the `Motion` record, forward kinematics, resampling, rotations.

A `Motion` keeps the local form of a file's motion (per-point local rotations and
translations), so that resampling interpolates rotations (normalised quaternion lerp) and
translations, and forward kinematics then gives positions with exactly rigid bones; linear
interpolation of positions would shorten a bone that turns fast between two frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np

AXES = {"x": 0, "y": 1, "z": 2}


@dataclasses.dataclass(frozen=True)
class Motion:
    """The motion of one file, in file units and axes, one entry per named point.

    Forward kinematics (`forward_kinematics`): a point's world rotation is
    R = R_parent @ local_rotations and its position is
    p = p_parent + R_parent @ local_translations + R @ end_offsets (BVH: the OFFSET or position
    channels are the translation and end_offsets are zero; ASF: a bone end is its start plus its
    rotated bone vector, the end_offset). The root's parent frame is the world.
    """

    path: str
    names: tuple[str, ...]
    parents: tuple[int, ...]  # index of each point's parent, -1 for a root; parents come first
    local_rotations: np.ndarray  # (F, P, 3, 3)
    local_translations: np.ndarray  # (F, P, 3)
    end_offsets: np.ndarray  # (P, 3), constant
    frame_time: float | None  # seconds per frame; None when the format has none (AMC)

    @property
    def num_frames(self) -> int:
        return len(self.local_rotations)


def forward_kinematics(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """World positions (F, P, 3) and rotations (F, P, 3, 3) of every point, all frames at once.

    A point `offset` in point p's own frame lies at positions[:, p] + rotations[:, p] @ offset.
    """
    shape = motion.local_translations.shape
    positions, rotations = np.zeros(shape), np.zeros(shape + (3,))
    for p, parent in enumerate(motion.parents):
        local_r, local_t = motion.local_rotations[:, p], motion.local_translations[:, p]
        if parent < 0:
            rotations[:, p], positions[:, p] = local_r, local_t
        else:
            rotations[:, p] = rotations[:, parent] @ local_r
            positions[:, p] = positions[:, parent] + np.einsum(
                "fij,fj->fi", rotations[:, parent], local_t
            )
        if np.any(motion.end_offsets[p]):
            positions[:, p] += rotations[:, p] @ motion.end_offsets[p]
    return positions, rotations


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) (w, x, y, z) of rotation matrices (..., 3, 3)."""
    m = r.reshape(-1, 3, 3)
    trace = np.trace(m, axis1=1, axis2=2)
    diagonal = np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    largest = np.argmax(diagonal, axis=1)  # the best-conditioned of four equivalent formulas
    q = np.zeros((len(m), 4))
    for k in range(4):
        rows = largest == k
        a = m[rows]
        if k == 0:
            s = np.sqrt(1 + trace[rows]) * 2
            q[rows, 0] = s / 4
            for i, j, n in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
                q[rows, 1 + i] = (a[:, n, j] - a[:, j, n]) / s
            continue
        i, j, n = k - 1, k % 3, (k + 1) % 3
        s = np.sqrt(1 + a[:, i, i] - a[:, j, j] - a[:, n, n]) * 2
        q[rows, 0] = (a[:, n, j] - a[:, j, n]) / s
        q[rows, 1 + i] = s / 4
        q[rows, 1 + j] = (a[:, j, i] + a[:, i, j]) / s
        q[rows, 1 + n] = (a[:, n, i] + a[:, i, n]) / s
    return q.reshape(r.shape[:-2] + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of quaternions (..., 4) (w, x, y, z), normalised first."""
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def resample_motion(motion: Motion, source_fps: float, target_fps: float) -> Motion:
    """The motion at `target_fps`, from its first frame to (at most) its last.

    Local rotations are interpolated by normalised quaternion lerp on the shorter arc, local
    translations linearly; `frame_time` becomes 1 / target_fps.
    """
    num_frames = motion.num_frames
    duration = max(num_frames - 1, 0) / source_fps
    num_out = int(np.floor(duration * target_fps + 1e-6)) + 1 if num_frames else 0
    position = np.arange(num_out) * (source_fps / target_fps)
    lower = np.clip(np.floor(position).astype(int), 0, max(num_frames - 2, 0))
    upper = np.minimum(lower + 1, num_frames - 1)
    weight = np.clip(position - lower, 0.0, 1.0)[:, None, None]
    q0 = matrix_to_quaternion(motion.local_rotations[lower])
    q1 = matrix_to_quaternion(motion.local_rotations[upper])
    q1 = np.where(np.sum(q0 * q1, -1, keepdims=True) < 0, -q1, q1)
    t = motion.local_translations
    return dataclasses.replace(
        motion,
        local_rotations=quaternion_to_matrix(q0 * (1 - weight) + q1 * weight),
        local_translations=t[lower] * (1 - weight) + t[upper] * weight,
        frame_time=1.0 / target_fps,
    )


def parse_error(path, line_no: int, message: str) -> ValueError:
    """The one-line error for a malformed file: 'path:line: message'."""
    return ValueError(f"{path}:{line_no}: {message}")


def parse_floats(path, line_no: int, tokens: list[str], count: int, what: str) -> np.ndarray:
    """`count` numbers from `tokens`, or a `parse_error` naming `what`."""
    if len(tokens) != count:
        raise parse_error(path, line_no, f"{what} needs {count} numbers, got {len(tokens)}")
    try:
        return np.asarray([float(t) for t in tokens])
    except ValueError:
        raise parse_error(path, line_no, f"{what} has a non-number in {tokens}") from None


def _axis_rotation(axis: int, angles: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations by `angles` (...,) radians about coordinate axis 0, 1 or 2."""
    c, s = np.cos(angles), np.sin(angles)
    out = np.zeros(angles.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1
    out[..., i, i], out[..., i, j], out[..., j, i], out[..., j, j] = c, -s, s, c
    return out


def euler_matrix(angles, axes: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) for angles (..., len(axes)) in radians.

    The matrix is the product in the listed order, R = R[axes[0]] @ R[axes[1]] @ ..., acting on
    column vectors, so the last-listed rotation acts on a point first (the BVH convention).
    """
    angles = np.asarray(angles, np.float64)
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes.lower()):
        out = out @ _axis_rotation(AXES[axis], angles[..., k])
    return out
