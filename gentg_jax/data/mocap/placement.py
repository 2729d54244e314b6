"""Placing a clip in the Human3.6M capture volume: floor, centre, yaw, in-image share.

The rule (`place_clip`):
1. Floor: z = 0 where the feet stand: the FLOOR_PERCENTILE-th percentile over frames of the
   lowest contact point (toes, or ankles when the rig map has none) minus the rig's contact
   height. A low percentile, not the minimum, so one glitch frame does not sink the clip.
2. Centre: the middle of the root's horizontal bounding box goes to `capture_centre(subject)`,
   the floor point nearest to the four cameras' optical axes.
3. Yaw: every YAW_STEP_DEG rotation about the vertical is tried; the one with the largest share
   of joint-frames inside all four images wins, ties broken by the largest minimum distance to
   an image border (deterministic: the first best in angle order). If no yaw keeps everything
   inside, horizontal shifts of up to MAX_SHIFT_M (nearest first) are tried for the SHIFT_YAWS
   best yaws. No scaling: a clip that travels further than the volume is wide keeps a share
   below 1; `place_segments` cuts such a clip into pieces that fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gentg_jax import camera as camera_lib
from gentg_jax.data import h36m
from gentg_jax.data.mocap.rigs import Clip

FLOOR_PERCENTILE = 2.0
YAW_STEP_DEG = 10.0
SHIFT_STEP_M = 0.25
MAX_SHIFT_M = 1.0
SHIFT_YAWS = 4  # the best yaws (without a shift) that the shift search tries
SEARCH_FRAMES = 100  # frames (evenly spaced) that the yaw/shift search projects
MIN_DEPTH_M = 0.1  # points nearer to (or behind) a camera than this are outside its image
# A clip whose root travels further than this (horizontal bounding-box diagonal) is cut: the
# volume seen by all four cameras is about 3.7 m x 5.5 m.
MAX_TRAVEL_M = 3.5
MIN_SEGMENT_FRAMES = 100


def floor_height(clip: Clip, percentile: float = FLOOR_PERCENTILE) -> float:
    """Height of the floor under the clip's feet (metres, the clip's own z), see module rule 1."""
    contacts = clip.toes_world if clip.toes_world is not None else clip.positions_world[:, [3, 6]]
    lowest = contacts[..., 2].min(axis=-1)
    lowest = lowest[np.isfinite(lowest)]
    if not len(lowest):
        raise ValueError(f"{clip.path}: no finite foot positions to find the floor from")
    return float(np.percentile(lowest, percentile)) - clip.contact_height_m


def capture_centre(subject: str) -> np.ndarray:
    """(2,) floor point (x, y) closest, in least squares, to the optical axes of the 4 cameras."""
    normal_matrix, rhs = np.zeros((3, 3)), np.zeros(3)
    for index in range(len(h36m.CAMERA_IDS)):
        cam = h36m.camera(subject, index)
        axis = camera_lib.qrot(cam.orientation.astype(np.float64), np.array([0.0, 0.0, 1.0]))
        projector = np.eye(3) - np.outer(axis, axis)
        normal_matrix += projector
        rhs += projector @ cam.translation.astype(np.float64)
    return np.linalg.solve(normal_matrix, rhs)[:2]


def image_margins(points: np.ndarray, subject: str) -> np.ndarray:
    """Pixels from each world point (..., 3) to the nearest border of each camera's image.

    Returns:
      (..., 4) margins, one per camera in h36m.CAMERA_IDS order: negative outside the image and
      -inf for points behind (or within MIN_DEPTH_M of) the camera.
    """
    points = np.asarray(points, np.float64)
    out = []
    for index in range(len(h36m.CAMERA_IDS)):
        cam = h36m.camera(subject, index)
        local = camera_lib.world_to_camera(
            points, cam.orientation.astype(np.float64), cam.translation.astype(np.float64)
        )
        flat = local.reshape(-1, 1, 3)
        screen = camera_lib.project_to_2d(flat, cam.intrinsic.astype(np.float64))[:, 0]
        pixels = camera_lib.image_coordinates(screen, cam.res_w, cam.res_h)
        u, v = pixels[:, 0], pixels[:, 1]
        margin = np.minimum(np.minimum(u, cam.res_w - u), np.minimum(v, cam.res_h - v))
        margin = np.where(flat[:, 0, 2] > MIN_DEPTH_M, margin, -np.inf)
        out.append(margin.reshape(points.shape[:-1]))
    return np.stack(out, axis=-1)


def in_image_share(points: np.ndarray, subject: str) -> float:
    """Share of world points (..., 3) (e.g. (F, 17, 3)) that lie inside all four images."""
    margins = image_margins(points, subject)
    return float(np.mean(np.all(margins >= 0, axis=-1))) if margins.size else 0.0


def rotate_z(points: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Points (..., 3) rotated by `yaw_deg` about the vertical (z) axis through the origin."""
    c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
    return points @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T


def apply_placement(points: np.ndarray, info: dict) -> np.ndarray:
    """Applies a `place_clip` placement to any of the clip's points (..., 3): R_z(yaw) p + t."""
    return rotate_z(np.asarray(points, np.float64), info["yaw_deg"]) + np.asarray(
        info["translation_m"]
    )


def _score(candidates: np.ndarray, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """(share inside all images, minimum margin) per candidate placement (C, S, J, 3)."""
    margins = image_margins(candidates, subject).min(axis=-1)
    inside = margins >= 0
    return inside.mean(axis=(1, 2)), margins.min(axis=(1, 2))


def _search(sample: np.ndarray, centre: np.ndarray, subject: str, yaws, shifts) -> list:
    """(share, margin, yaw, offset) of every candidate, best first (ties: given order)."""
    rotated = np.stack([rotate_z(sample, yaw) for yaw in yaws])
    results = []
    for shift in shifts:
        offset = np.array([centre[0] + shift[0], centre[1] + shift[1], 0.0])
        share, margin = _score(rotated + offset, subject)
        results += [(share[k], margin[k], yaw, offset) for k, yaw in enumerate(yaws)]
    order = sorted(range(len(results)), key=lambda k: (-results[k][0], -results[k][1], k))
    return [results[k] for k in order]


def place_clip(clip: Clip, subject: str = "S1") -> tuple[np.ndarray, dict]:
    """Places a clip on the floor in the middle of `subject`'s H36M capture volume.

    Args:
      clip: from `load_clip` (metres, z up).
      subject: the H36M subject whose four calibrated cameras look at the volume.

    Returns:
      (F, 17, 3) float32 placed world positions, and an info dict: subject, floor_m (the floor
      height in the clip's own z), yaw_deg, translation_m (3,) (see `apply_placement`),
      in_image_share (over all joint-frames, four cameras) and min_margin_px.
    """
    positions = np.asarray(clip.positions_world, np.float64)
    if not len(positions) or not np.all(np.isfinite(positions)):
        raise ValueError(f"{clip.path}: cannot place an empty or non-finite clip")
    floor = floor_height(clip)
    root_xy = positions[:, 0, :2]
    middle = (root_xy.min(axis=0) + root_xy.max(axis=0)) / 2
    to_origin = np.array([-middle[0], -middle[1], -floor])
    centred = positions + to_origin
    sample = centred[np.unique(np.linspace(0, len(centred) - 1, SEARCH_FRAMES).astype(int))]
    centre = capture_centre(subject)
    yaws = np.arange(0.0, 360.0, YAW_STEP_DEG)
    ranked = _search(sample, centre, subject, yaws, [(0.0, 0.0)])
    if ranked[0][0] < 1.0:  # shifts, for the few best yaws only
        steps = np.arange(-MAX_SHIFT_M, MAX_SHIFT_M + 1e-9, SHIFT_STEP_M)
        shifts = sorted(
            ((x, y) for x in steps for y in steps), key=lambda s: (s[0] ** 2 + s[1] ** 2, s)
        )
        best_yaws = [yaw for _, _, yaw, _ in ranked[:SHIFT_YAWS]]
        ranked = _search(sample, centre, subject, best_yaws, shifts)
    _, _, yaw, offset = ranked[0]
    info = {"subject": subject, "floor_m": floor, "yaw_deg": float(yaw)}
    info["translation_m"] = [float(v) for v in rotate_z(to_origin, yaw) + offset]
    placed = apply_placement(positions, info)
    margins = image_margins(placed, subject).min(axis=-1)
    info["in_image_share"] = float(np.mean(margins >= 0))
    info["min_margin_px"] = float(margins.min())
    return placed.astype(np.float32), info


def _segment(clip: Clip, start: int, end: int, part: int | None) -> Clip:
    toes = None if clip.toes_world is None else clip.toes_world[start:end]
    name = clip.name if part is None else f"{clip.name}_part{part}"
    return dataclasses.replace(
        clip, name=name, positions_world=clip.positions_world[start:end], toes_world=toes
    )


def travel_cuts(root_xy: np.ndarray, max_travel_m: float = MAX_TRAVEL_M) -> list[int]:
    """Frame indices where a greedy cut keeps each piece's root bounding-box diagonal in range."""
    if not len(root_xy):
        return []
    cuts, low, high = [], root_xy[0], root_xy[0]
    for k, xy in enumerate(root_xy):
        new_low, new_high = np.minimum(low, xy), np.maximum(high, xy)
        if np.linalg.norm(new_high - new_low) > max_travel_m:
            cuts.append(k)
            new_low, new_high = xy, xy
        low, high = new_low, new_high
    return cuts


def place_segments(
    clip: Clip,
    subject: str = "S1",
    *,
    max_travel_m: float = MAX_TRAVEL_M,
    min_frames: int = MIN_SEGMENT_FRAMES,
) -> list[tuple[Clip, np.ndarray, dict]]:
    """Cuts a clip that travels too far into pieces that fit, and places each (`place_clip`).

    The clip is cut into as many equal pieces as greedy cuts at `max_travel_m` of root travel
    would make (`travel_cuts`); a piece that still leaves an image is halved while both halves
    keep `min_frames`. Pieces are named "<name>_part<k>" when there are several. A fast clip
    gives short pieces: check each with `check_clip` (length) and its info["in_image_share"].

    Returns:
      [(piece, placed (F_k, 17, 3), info)] in time order.
    """
    num_pieces = len(travel_cuts(clip.positions_world[:, 0, :2], max_travel_m)) + 1
    bounds = np.linspace(0, clip.num_frames, num_pieces + 1).round().astype(int).tolist()
    pieces = list(zip(bounds[:-1], bounds[1:], strict=True))
    placed = []
    while pieces:
        start, end = pieces.pop(0)
        piece = _segment(clip, start, end, None)
        positions, info = place_clip(piece, subject)
        if info["in_image_share"] < 1.0 and end - start >= 2 * min_frames:
            middle = (start + end) // 2
            pieces[:0] = [(start, middle), (middle, end)]
            continue
        placed.append((start, end, positions, info))
    if len(placed) == 1:
        return [(clip, placed[0][2], placed[0][3])]
    return [
        (_segment(clip, start, end, k), positions, info)
        for k, (start, end, positions, info) in enumerate(placed, 1)
    ]
