"""Sanity checks of a dataset split: rigid bones, 2D that matches the 3D, frames per action.

Each works on examples as `tfds_builders.open_split` (or `pipeline.load_sequences`) returns
them: `pose_3d` (T, 17, 3) camera-frame metres, `keypoints_2d` (T, 17, 2) pixels, `intrinsics`
(9,) normalised, `image_size` (w, h), `action` text. `gentg_jax.viz.dataset` plots them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gentg_jax import camera, metrics, skeleton


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def bone_lengths(pose_3d: np.ndarray) -> np.ndarray:
    """(..., 17, 3) joints -> (..., 16) limb lengths (same units), limbs in `skeleton.LIMBS`
    order. A motion-capture skeleton is rigid: each limb keeps its length over a sequence."""
    return np.linalg.norm(skeleton.limb_vectors(np.asarray(pose_3d, np.float64)), axis=-1)


def reprojection_errors(example: Mapping[str, Any]) -> np.ndarray:
    """(T, 17) pixel distance between the 2D keypoints and the 3D pose projected through the
    example's camera (with distortion): about 0 for ground-truth 2D, the detector's error
    otherwise."""
    width, height = (float(v) for v in np.asarray(example["image_size"]))
    pose = np.asarray(example["pose_3d"], np.float64)
    projected = camera.project_to_2d(pose, np.asarray(example["intrinsics"], np.float64))
    pixels = camera.image_coordinates(projected, width, height)
    return np.linalg.norm(pixels - np.asarray(example["keypoints_2d"], np.float64), axis=-1)


def frames_per_action(examples: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Action label (sub-actions merged, as the protocol does) -> frames over all subjects and
    cameras, in table order."""
    counts: dict[str, int] = {}
    for example in examples:
        action = metrics.action_name(_text(example["action"]))
        counts[action] = counts.get(action, 0) + len(example["pose_3d"])
    return {action: counts[action] for action in sorted(counts, key=str.lower)}


def summarize(examples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The checks over a split, JSON-ready:

    bone_length_mm            per limb, the mean length over all frames
    bone_length_spread_mm     per limb, the largest within-sequence standard deviation (0 for
                              a rigid skeleton)
    reprojection_px           median, 95th percentile and max of `reprojection_errors`
    frames_per_action         `frames_per_action`
    sequences, frames         totals
    """
    examples = list(examples)
    if not examples:
        raise ValueError("summarize needs at least one example")
    lengths = [bone_lengths(e["pose_3d"]) for e in examples]
    reprojection = np.concatenate([reprojection_errors(e).ravel() for e in examples])
    return {
        "bone_length_mm": (1e3 * np.concatenate(lengths).mean(axis=0)).tolist(),
        "bone_length_spread_mm": (1e3 * np.max([x.std(axis=0) for x in lengths], axis=0)).tolist(),
        "reprojection_px": {
            "median": float(np.median(reprojection)),
            "p95": float(np.percentile(reprojection, 95)),
            "max": float(reprojection.max()),
        },
        "frames_per_action": frames_per_action(examples),
        "sequences": len(examples),
        "frames": int(sum(len(e["pose_3d"]) for e in examples)),
    }
