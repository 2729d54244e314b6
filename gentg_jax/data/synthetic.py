"""Synthetic Human3.6M-like data: motion on the H36M-17 skeleton, seen by the real H36M cameras.

Motion is built from joint angles by forward kinematics, so bone lengths are exactly constant. The
angles mix a few primitives (walking along an elliptic path with turns, arm gestures and goal
poses such as hand-to-face or pointing, bending/crouching, sitting), weighted per action by smooth
on/off signals. The 2D keypoints are projections through the public calibration (with
distortion), and for the `detector` source passed through data.detector_noise.

Every random draw comes from a numpy Generator seeded by np.random.SeedSequence over
(config.seed, stream, subject, action, camera), so any subset of the dataset generates identically.

  for key, example in generate_examples(SyntheticConfig(frames_per_sequence=300)): ...
"""

from __future__ import annotations

import dataclasses
import statistics
import zlib
from collections.abc import Iterator

import numpy as np

from gentg_jax import camera, skeleton
from gentg_jax.data import h36m
from gentg_jax.data.detector_noise import NoiseConfig, detector_noise

FPS = 50.0
SOURCES = ("detector", "gt")


@dataclasses.dataclass(frozen=True)
class _Action:
    """How much of each motion primitive an action uses."""

    walk: float = 0.0  # fraction of the time spent walking
    sit: float = 0.0  # fraction of the time seated
    crouch: float = 0.0  # fraction of the time bent over / crouching
    turn: float = 0.3  # amplitude (rad) of turning on the spot while not walking
    gesture: float = 0.15  # amplitude (rad) of free arm movement
    arm_goals: tuple[tuple[str, float], ...] = ()  # (goal pose in _ARM_GOALS, fraction of time)
    speed: float = 1.1  # walking speed, m/s


# The motion mix of each Human3.6M action (h36m.ACTIONS; a test checks that all are here).
_ACTIONS = {
    "Directions": _Action(
        walk=0.3, crouch=0.05, turn=0.8, gesture=0.3, arm_goals=(("point", 0.3),)
    ),
    "Discussion": _Action(walk=0.2, turn=0.6, gesture=0.5),
    "Eating": _Action(sit=0.7, arm_goals=(("table", 0.5), ("face", 0.25))),
    "Greeting": _Action(walk=0.3, turn=0.6, gesture=0.3, arm_goals=(("wave", 0.3),)),
    "Phoning": _Action(walk=0.3, sit=0.3, arm_goals=(("ear", 0.6),)),
    "Photo": _Action(walk=0.2, crouch=0.3, turn=0.6, arm_goals=(("camera", 0.5),)),
    "Posing": _Action(crouch=0.2, turn=0.5, gesture=0.8, arm_goals=(("hips", 0.3),)),
    "Purchases": _Action(walk=0.3, crouch=0.3, gesture=0.3, arm_goals=(("front", 0.4),)),
    "Sitting": _Action(sit=1.0, gesture=0.25, arm_goals=(("front", 0.2), ("face", 0.1))),
    "SittingDown": _Action(sit=0.6, crouch=0.15, gesture=0.2),
    "Smoking": _Action(walk=0.1, sit=0.4, arm_goals=(("face", 0.35),)),
    "Waiting": _Action(walk=0.2, turn=0.5, arm_goals=(("hips", 0.3),)),
    "WalkDog": _Action(walk=0.85, crouch=0.1, speed=0.9, arm_goals=(("leash", 0.8),)),
    "Walking": _Action(walk=1.0, turn=0.0, speed=1.2),
    "WalkTogether": _Action(walk=0.95, turn=0.0, gesture=0.1, speed=0.9),
}

# Mean bone lengths (m) of the Human3.6M subjects, in skeleton.LIMBS order (limb i ends at joint
# i + 1): hip-rhip ~0.13, thigh ~0.45, shin ~0.45, hip-spine ~0.23, spine-thorax ~0.25,
# thorax-neck/nose ~0.11, nose-head ~0.12, thorax-shoulder ~0.15, upper arm ~0.28, forearm ~0.25.
_MEAN_BONE_LENGTHS = np.array(
    [0.13, 0.45, 0.45, 0.13, 0.45, 0.45, 0.23, 0.25, 0.11, 0.12, 0.15, 0.28, 0.25, 0.15, 0.28, 0.25]
)
# Rest-pose bone directions in the body frame (x forward, y left, z up): upright, arms hanging.
_REST_DIRECTIONS = np.array(
    [
        [0, -1, 0], [0, 0, -1], [0, 0, -1],  # right leg
        [0, 1, 0], [0, 0, -1], [0, 0, -1],  # left leg
        [0, 0, 1], [0, 0, 1], [0.35, 0, 1], [-0.2, 0, 1],  # spine, thorax, nose (forward), head
        [0, 1, -0.1], [0, 0, -1], [0, 0, -1],  # left arm
        [0, -1, -0.1], [0, 0, -1], [0, 0, -1],  # right arm
    ],
    dtype=np.float64,
)  # fmt: skip
_REST_DIRECTIONS /= np.linalg.norm(_REST_DIRECTIONS, axis=1, keepdims=True)

# Joint ranges (rad). Flexion is positive forward (knees: backward); abduction/twist positive
# outward on both sides. Knees and elbows only bend one way.
_LIMITS = {
    "hip_flex": (-0.5, 2.1), "hip_abd": (-0.3, 0.7), "hip_twist": (-0.6, 0.6), "knee": (0.0, 2.4),
    "spine_flex": (-0.4, 1.1), "spine_side": (-0.4, 0.4), "spine_twist": (-0.6, 0.6),
    "chest_flex": (-0.3, 0.5), "chest_side": (-0.3, 0.3), "chest_twist": (-0.4, 0.4),
    "neck_flex": (-0.7, 0.8), "neck_side": (-0.5, 0.5), "neck_twist": (-1.2, 1.2),
    "shoulder_flex": (-0.8, 2.8), "shoulder_abd": (-0.2, 2.6), "shoulder_twist": (-1.2, 1.6),
    "elbow": (0.0, 2.6), "root_pitch": (-0.2, 0.5), "root_roll": (-0.2, 0.2),
}  # fmt: skip
# Small always-on posture noise (rad std), so that no two frames are exactly the same pose.
_POSTURE_NOISE = {
    "root_pitch": 0.03, "root_roll": 0.03, "hip_flex": 0.05, "hip_abd": 0.04, "hip_twist": 0.05,
    "knee": 0.05, "spine_flex": 0.06, "spine_side": 0.04, "spine_twist": 0.08, "chest_flex": 0.04,
    "chest_side": 0.03, "chest_twist": 0.05, "neck_flex": 0.15, "neck_side": 0.08,
    "neck_twist": 0.35,
}  # fmt: skip
_STAND = {"knee": 0.08, "root_pitch": 0.03}
_SIT = {"hip_flex": 1.5, "knee": 1.5, "hip_abd": 0.1, "spine_flex": -0.15, "neck_flex": 0.1}
_CROUCH = {"hip_flex": 1.3, "knee": 1.8, "spine_flex": 0.6, "neck_flex": -0.3, "root_pitch": 0.1}
# Arm poses (shoulder flex, shoulder abd, shoulder twist, elbow), whether both arms take them
# (otherwise the dominant arm only), and an elbow oscillation (rad) such as waving or cutting.
_ARM_REST = np.array([0.0, 0.12, 0.0, 0.15])
_ARM_GOALS = {
    "face": ((0.8, 0.0, -0.7, 2.6), False, 0.0),  # hand to mouth: eating, smoking
    "ear": ((0.6, 0.4, -0.5, 2.6), False, 0.0),  # phone at the ear
    "point": ((1.45, 0.25, 0.0, 0.1), False, 0.0),
    "wave": ((0.0, 2.1, 1.3, 1.0), False, 0.35),  # upper arm out sideways, forearm up
    "leash": ((0.45, 0.2, 0.0, 0.5), False, 0.0),
    "table": ((0.4, 0.1, 0.0, 1.3), True, 0.2),  # hands on a table in front
    "camera": ((0.9, -0.1, -0.3, 2.2), True, 0.0),  # both hands in front of the face
    "front": ((0.7, 0.1, 0.0, 1.5), True, 0.1),  # holding or reaching for something
    "hips": ((-0.6, 0.7, -0.6, 1.6), True, 0.0),  # hands on hips, elbows out
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticConfig(NoiseConfig):
    """What to generate; the detector-noise fields (jitter_px, ...) come from NoiseConfig."""

    seed: int = 0
    subjects: tuple[str, ...] = h36m.SUBJECTS
    actions: tuple[str, ...] = h36m.ACTIONS
    frames_per_sequence: int = 600  # 12 s at 50 fps

    def _checks(self) -> dict[str, tuple[bool, object]]:
        return {
            "seed": (self.seed >= 0, ">= 0"),
            "subjects": (
                bool(self.subjects) and set(self.subjects) <= set(h36m.SUBJECTS),
                h36m.SUBJECTS,
            ),
            "actions": (
                bool(self.actions) and set(self.actions) <= set(h36m.ACTIONS),
                h36m.ACTIONS,
            ),
            "frames_per_sequence": (self.frames_per_sequence >= 2, ">= 2"),
            **super()._checks(),
        }


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A Generator that depends only on the seed and the names (crc32 is stable across runs)."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, *(zlib.crc32(n.encode()) for n in names)])
    )


def subject_bone_lengths(subject: str, seed: int = 0) -> np.ndarray:
    """(16,) bone lengths (m) of a synthetic subject: H36M means, scaled per subject, symmetric."""
    rng = _rng(seed, "bones", subject)
    scale = np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)
    per_bone = np.clip(rng.normal(1.0, 0.03, skeleton.NUM_LIMBS), 0.92, 1.08)
    per_bone[np.asarray(skeleton.JOINTS_RIGHT) - 1] = per_bone[np.asarray(skeleton.JOINTS_LEFT) - 1]
    return _MEAN_BONE_LENGTHS * scale * per_bone


def _smooth_noise(rng: np.random.Generator, n: int, channels: int, max_hz: float) -> np.ndarray:
    """(n, channels) band-limited noise of unit variance: random sinusoids below max_hz."""
    components = 8
    t = np.arange(n)[:, None, None] / FPS
    freq = rng.uniform(0.0, max_hz, (components, channels))
    phase = rng.uniform(0.0, 2 * np.pi, (components, channels))
    return np.sqrt(2 / components) * np.sin(2 * np.pi * freq * t + phase).sum(axis=1)


def _activation(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """(n,) smooth on/off weight in [0, 1], on for about `fraction` of the time (~1 s ramps)."""
    if fraction <= 0 or fraction >= 1:
        return np.full(n, float(fraction >= 1))
    threshold = statistics.NormalDist().inv_cdf(1 - fraction)
    u = _smooth_noise(rng, n, 1, 0.15)[:, 0]
    return 1 / (1 + np.exp(-(u - threshold) / 0.15))


def _rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations by `angle` (n,) about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    out = np.zeros((*angle.shape, 3, 3))
    out[..., axis, axis] = 1
    out[..., i, i] = out[..., j, j] = np.cos(angle)
    out[..., i, j] = -np.sin(angle)
    out[..., j, i] = np.sin(angle)
    return out


def _euler(flex: np.ndarray, side: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Rotation about y (flexion), then x (sideways), then z (twist), as (n, 3, 3) matrices."""
    return _rotation(1, flex) @ _rotation(0, side) @ _rotation(2, twist)


def _forward_kinematics(angles: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """(n, 17, 3) joints with the root at the origin, from joint angles and (16,) bone lengths.

    Each bone has a frame: its parent bone's frame times the local rotation of the joint that
    drives it (identity for rigid links such as hip-rhip). The rest-pose bone vector is rotated
    by that frame, so every bone keeps its length exactly.
    """
    a = angles
    local = {}
    for s, sign, knee, ankle, elbow, wrist in (("r", -1, 2, 3, 15, 16), ("l", 1, 5, 6, 12, 13)):
        local[knee] = _euler(-a[s + "hip_flex"], sign * a[s + "hip_abd"], sign * a[s + "hip_twist"])
        local[ankle] = _rotation(1, a[s + "knee"])  # the shin folds backward
        local[elbow] = _euler(
            -a[s + "shoulder_flex"], sign * a[s + "shoulder_abd"], sign * a[s + "shoulder_twist"]
        )
        local[wrist] = _rotation(1, -a[s + "elbow"])  # the forearm folds forward
    for joint, part in ((7, "spine"), (8, "chest"), (9, "neck")):
        local[joint] = _euler(a[part + "_flex"], a[part + "_side"], a[part + "_twist"])
    frames = {
        skeleton.ROOT: _rotation(2, a["root_yaw"])
        @ _rotation(1, a["root_pitch"])
        @ _rotation(0, a["root_roll"])
    }
    offsets = _REST_DIRECTIONS * lengths[:, None]
    joints = np.zeros((len(a["root_yaw"]), skeleton.NUM_JOINTS, 3))
    for child in range(1, skeleton.NUM_JOINTS):
        parent = skeleton.PARENTS[child]
        frames[child] = frames[parent] @ local[child] if child in local else frames[parent]
        joints[:, child] = joints[:, parent] + frames[child] @ offsets[child - 1]
    return joints


def _trajectory(
    rng: np.random.Generator, walk: np.ndarray, speed: float, leg_length: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root path (n, 2) along an ellipse near the origin, walking heading (n,), gait phase (n,).

    The root advances along the ellipse at `speed` times the walking weight, so it stands still
    when not walking, and turns at the ends of the ellipse (H36M subjects walk in loops).
    """
    # The region all four H36M cameras see whole is a diamond around (0.2, 0.2) m, longest in y.
    semi_axes = rng.uniform([1.0, 0.5], [1.4, 0.8])
    tilt = np.pi / 2 + rng.uniform(-0.3, 0.3)
    centre = rng.uniform([0.05, 0.05], [0.3, 0.35])
    direction = rng.choice([-1.0, 1.0])
    grid = np.linspace(0, 2 * np.pi, 1025)
    ellipse = semi_axes * np.stack([np.cos(grid), np.sin(grid)], axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ellipse, axis=0), axis=1))])
    travelled = np.concatenate([[0.0], np.cumsum(walk[:-1])]) * speed / FPS
    start = rng.uniform(0, arc[-1])
    psi = np.interp(np.mod(start + direction * travelled, arc[-1]), arc, grid)
    rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    point = (semi_axes * np.stack([np.cos(psi), np.sin(psi)], -1)) @ rotation.T + centre
    tangent = direction * (semi_axes * np.stack([-np.sin(psi), np.cos(psi)], -1)) @ rotation.T
    heading = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
    # One gait cycle (two steps) covers about 1.5 leg lengths.
    return point, heading, 2 * np.pi * travelled / (1.5 * leg_length)


def _soft_clip(x: np.ndarray, lo: float, hi: float, width: float = 0.05) -> np.ndarray:
    """Clips to [lo, hi] with rounded (softplus) corners, so motion slows into a joint limit."""
    x = lo + width * np.logaddexp(0, (x - lo) / width)
    return np.clip(hi - width * np.logaddexp(0, (hi - x) / width), lo, hi)


def _channel_base(name: str) -> str:
    """'rknee' -> 'knee': the side-independent name of a left/right channel."""
    return name[1:] if name[0] in "rl" and name[1:] in _LIMITS else name


def _body_angles(
    rng: np.random.Generator,
    profile: _Action,
    weights: dict[str, np.ndarray],
    phase: np.ndarray,
    heading: np.ndarray,
) -> dict[str, np.ndarray]:
    """Legs, trunk, neck and root orientation: posture noise + stand/sit/crouch poses + gait."""
    bilateral = ("hip_flex", "hip_abd", "hip_twist", "knee")
    names = [s + n for n in _POSTURE_NOISE for s in ("rl" if n in bilateral else ("",))]
    walk = weights["walk"]
    noise = _smooth_noise(rng, len(walk), len(names), 0.4)
    angles = {n: noise[:, i] * _POSTURE_NOISE[_channel_base(n)] for i, n in enumerate(names)}
    stand = 1 - weights["sit"] - weights["crouch"]
    for pose, weight in ((_STAND, stand), (_SIT, weights["sit"]), (_CROUCH, weights["crouch"])):
        for name in names:
            angles[name] = angles[name] + weight * pose.get(_channel_base(name), 0.0)
    for s, shift in (("r", 0.0), ("l", np.pi)):
        angles[s + "hip_flex"] += walk * (0.05 + 0.38 * np.sin(phase + shift))
        # Knee flexion peaks (~60 deg) in the swing phase, just after the hip's full extension.
        angles[s + "knee"] += walk * 0.95 * ((1 + np.cos(phase + shift + 1.31)) / 2) ** 3
    angles["spine_twist"] -= walk * 0.08 * np.sin(phase)
    turn = profile.turn * _smooth_noise(rng, len(walk), 1, 0.1)[:, 0] + rng.uniform(-np.pi, np.pi)
    angles["root_yaw"] = heading + (1 - walk) * turn + walk * 0.08 * np.sin(phase)
    return angles


def _arm_angles(
    rng: np.random.Generator, profile: _Action, walk: np.ndarray, phase: np.ndarray
) -> dict[str, np.ndarray]:
    """Both arms: rest + walking swing + free gestures, blended towards the action's goal poses."""
    n = len(walk)
    dominant = 0 if rng.random() < 0.75 else 1  # index 0: right arm, 1: left arm
    base = _ARM_REST + profile.gesture * _smooth_noise(rng, n, 8, 0.5).reshape(n, 2, 4)
    swing = np.stack([-np.sin(phase), np.sin(phase)], axis=1)  # arms swing against the legs
    base[..., 0] += walk[:, None] * 0.3 * swing
    base[..., 3] += walk[:, None] * 0.15 * (1 + swing)
    goal_weights = [_activation(rng, n, fraction) for _, fraction in profile.arm_goals]
    total = np.maximum(1.0, sum(goal_weights, np.zeros(n)))  # goals share at most all the time
    pose = base.copy()
    for (name, _), weight in zip(profile.arm_goals, goal_weights, strict=True):
        target, both_arms, wiggle = _ARM_GOALS[name]
        target = np.tile(target, (n, 1))
        target[:, 3] += wiggle * np.sin(2 * np.pi * 2.0 * np.arange(n) / FPS + rng.uniform(0, 6.3))
        for arm in (0, 1) if both_arms else (dominant,):
            pose[:, arm] += (weight / total)[:, None] * (target - base[:, arm])
    dofs = ("shoulder_flex", "shoulder_abd", "shoulder_twist", "elbow")
    return {s + dof: pose[:, arm, k] for arm, s in enumerate("rl") for k, dof in enumerate(dofs)}


def generate_motion(
    subject: str,
    action: str,
    num_frames: int,
    rng: np.random.Generator,
    bone_lengths: np.ndarray | None = None,
) -> np.ndarray:
    """One synthetic motion: (num_frames, 17, 3) float32 world coordinates, metres, Z up.

    Args:
      subject: subject name; picks the bone lengths when `bone_lengths` is None.
      action: one of h36m.ACTIONS; picks the mix of motion primitives.
      num_frames: number of frames at 50 fps.
      rng: the source of all randomness of this motion.
      bone_lengths: optional (16,) lengths in skeleton.LIMBS order (default:
        `subject_bone_lengths(subject)`).
    """
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {h36m.ACTIONS}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    lengths = subject_bone_lengths(subject) if bone_lengths is None else np.asarray(bone_lengths)
    if lengths.shape != (skeleton.NUM_LIMBS,):
        raise ValueError(f"bone_lengths must have shape (16,), got {lengths.shape}")
    profile = _ACTIONS[action]
    sit = _activation(rng, num_frames, profile.sit)
    crouch = _activation(rng, num_frames, profile.crouch) * (1 - sit)
    walk = _activation(rng, num_frames, profile.walk) * (1 - sit) * (1 - crouch)
    path, heading, phase = _trajectory(rng, walk, profile.speed, lengths[1] + lengths[2])
    weights = {"sit": sit, "crouch": crouch, "walk": walk}
    angles = _body_angles(rng, profile, weights, phase, heading)
    angles.update(_arm_angles(rng, profile, walk, phase))
    for name, value in angles.items():
        if _channel_base(name) in _LIMITS:
            angles[name] = _soft_clip(value, *_LIMITS[_channel_base(name)])
    return _place(_forward_kinematics(angles, lengths), path, walk).astype(np.float32)


def _place(joints: np.ndarray, path: np.ndarray, walk: np.ndarray) -> np.ndarray:
    """Moves root-centred (n, 17, 3) joints onto the floor (z = 0) along the (n, 2) path."""
    # Unless walking, the feet stay planted: the body moves over the midpoint of the ankles.
    ankles = joints[:, [3, 6], :2].mean(axis=1, keepdims=True)
    joints[..., :2] += path[:, None] - (1 - walk)[:, None, None] * ankles
    # A soft minimum (<= the true minimum) keeps every joint at or above the floor, smoothly.
    z = joints[..., 2]
    low = z.min(axis=1, keepdims=True)
    joints[..., 2] -= low - 0.01 * np.log(np.exp(-(z - low) / 0.01).sum(axis=1, keepdims=True))
    return joints


def _example(world: np.ndarray, cam: h36m.Camera, subject: str, action: str) -> dict:
    """The gt example of one camera: camera-frame pose and its exact (distorted) projection."""
    pose_3d = camera.world_to_camera(
        world.astype(np.float64),
        cam.orientation.astype(np.float64),
        cam.translation.astype(np.float64),
    ).astype(np.float32)
    screen = camera.project_to_2d(pose_3d, cam.intrinsic)
    keypoints = camera.image_coordinates(screen, cam.res_w, cam.res_h).astype(np.float32)
    return {
        "subject": subject,
        "action": action,
        "camera": cam.id,
        "keypoints_2d": keypoints,
        "scores": np.ones(keypoints.shape[:2], np.float32),
        "pose_3d": pose_3d,
        "intrinsics": cam.intrinsic.astype(np.float32),
        "image_size": np.asarray(cam.image_size, np.int32),
    }


def generate_examples(
    config: SyntheticConfig, source: str = "detector"
) -> Iterator[tuple[str, dict]]:
    """Yields (f"{subject}/{action}/{camera_id}", example) for every subject, action and camera.

    Order: config.subjects, then config.actions, then the four cameras in h36m.CAMERA_IDS order.
    The four cameras see the same motion. `source` "gt" gives exact projections with scores 1,
    "detector" the same with `detector_noise`. Features as in DESIGN.md ("Data formats").
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {SOURCES}")
    for subject in config.subjects:
        lengths = subject_bone_lengths(subject, config.seed)
        cameras = [h36m.camera(subject, i) for i in range(len(h36m.CAMERA_IDS))]
        for action in config.actions:
            rng = _rng(config.seed, "motion", subject, action)
            world = generate_motion(subject, action, config.frames_per_sequence, rng, lengths)
            for cam in cameras:
                example = _example(world, cam, subject, action)
                if source == "detector":
                    rng = _rng(config.seed, "noise", subject, action, cam.id)
                    example["keypoints_2d"], example["scores"] = detector_noise(
                        example["keypoints_2d"], cam.image_size, rng, config
                    )
                yield f"{subject}/{action}/{cam.id}", example
