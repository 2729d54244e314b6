"""Inference inputs: validated, H36M-order, gap-filled pixel keypoints and the camera to use.

Pure numpy (no JAX), so a script can check and convert its input before loading a model.
Errors name the argument and its shape, since they reach users of `Predictor.predict` directly.

Limits: scores in [0, 1]; finite keypoints (NaN marks a missing joint, with scores) within
+-`MAX_IMAGE_SPANS` image widths (x) and heights (y) of the origin: further out they are not
pixels of that image (normalised coordinates, a wrong image_size or garbage).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gentg_jax import skeleton

LAYOUTS = ("h36m", "coco")
MAX_IMAGE_SPANS = 10.0  # as gentg_jax.data.videopose3d.MAX_IMAGE_SPANS
_J = skeleton.NUM_JOINTS


def generic_intrinsics(image_size: Any) -> np.ndarray:
    """Normalised intrinsics (..., 9) of a generic pinhole camera for images of (..., 2) = (w, h).

    The principal point is the image centre, there is no distortion and the focal length in
    pixels equals the image's larger side (about a 53 degree field of view along it). Only the
    reprojection-based hypothesis aggregation and root estimate of refinement use a camera.
    """
    size = np.asarray(image_size, np.float32)
    focal = 2.0 * size.max(-1) / size[..., 0]  # pixels / w * 2, as normalised coordinates are
    out = np.zeros(size.shape[:-1] + (9,), np.float32)
    out[..., 0] = out[..., 1] = focal
    return out


def camera_intrinsics(camera: Any, image_sizes: np.ndarray) -> np.ndarray:
    """(B, 9) normalised intrinsics: `camera` ((9,) or (B, 9)) or, when None, a generic camera
    for each of the (B, 2) image sizes."""
    if camera is None:
        return generic_intrinsics(image_sizes)
    intrinsics = _float_array(camera, "camera")
    batch = len(image_sizes)
    if intrinsics.shape not in ((9,), (batch, 9)) or not np.all(np.isfinite(intrinsics)):
        raise ValueError(f"camera must be normalised intrinsics (9,) or (B, 9), got {intrinsics}")
    return np.broadcast_to(intrinsics, (batch, 9))


def _float_array(value: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value, np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from error


def _check_keypoints(keypoints: np.ndarray, scores: np.ndarray | None) -> None:
    shape = keypoints.shape
    if keypoints.ndim not in (3, 4):
        raise ValueError(f"keypoints_2d of shape {shape} is not (T, 17, 2) or (B, T, 17, 2)")
    problems = (
        (shape[-2] != _J, "needs 17 joints per frame, H36M (layout='h36m') or COCO ('coco')"),
        (shape[-1] != 2, "must hold (x, y) pixels in its last axis (scores go in scores=)"),
        (0 in shape, "is empty: there are no frames to lift"),
    )
    for bad, message in problems:
        if bad:
            raise ValueError(f"keypoints_2d of shape {shape} {message}")
    if scores is not None and scores.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"scores shape {scores.shape} does not match keypoints_2d {keypoints.shape}; "
            f"expected {keypoints.shape[:-1]}"
        )
    if scores is not None and not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf; use 0 for missing joints")
    if scores is not None and ((scores < 0) | (scores > 1)).any():
        outside = (scores < 0) | (scores > 1)
        where = tuple(int(i[0]) for i in np.nonzero(outside))
        raise ValueError(
            f"scores must be confidences in [0, 1]; {int(outside.sum())} are outside (first "
            f"{float(scores[where]):.6g} at index {where})"
        )


def _check_range(keypoints: np.ndarray, size: np.ndarray) -> None:
    """Finite keypoints (B, T, 17, 2) must lie within MAX_IMAGE_SPANS image sizes (B, 2)."""
    limit = MAX_IMAGE_SPANS * size[:, None, None, :]
    finite = np.isfinite(keypoints)  # NaN (or inf) joints are missing ones, handled below
    outside = finite & (np.abs(np.where(finite, keypoints, 0.0)) > limit)
    if outside.any():
        b, t, j, c = (int(i[0]) for i in np.nonzero(outside))
        raise ValueError(
            f"keypoints_2d must be pixels of an image of image_size {tuple(size[b].tolist())}: "
            f"{'xy'[c]}={float(keypoints[b, t, j, c]):.6g} at (sequence {b}, frame {t}, joint "
            f"{j}) is beyond +-{MAX_IMAGE_SPANS:g} image sizes ({int(outside.any(-1).sum())} "
            "joints outside)"
        )


def _image_sizes(image_size: Any, batch: int) -> np.ndarray:
    if image_size is None:
        raise ValueError("image_size=(w, h) in pixels is required: keypoints are normalised by it")
    size = _float_array(image_size, "image_size")
    if size.shape not in ((2,), (batch, 2)) or not np.all(np.isfinite(size) & (size > 0)):
        raise ValueError(f"image_size must be (w, h) > 0, or one per sequence (B, 2); got {size}")
    return np.broadcast_to(size, (batch, 2)).copy()


def _fill_missing(keypoints: np.ndarray, scores: np.ndarray, size: np.ndarray) -> None:
    """In place: non-finite joints get score 0 and the mean of the frame's valid joints (the
    image centre when none is valid), so they are harmless inputs the model sees as missing."""
    valid = np.all(np.isfinite(keypoints), axis=-1)
    count = valid.sum(-1, keepdims=True)[..., None]
    total = np.where(valid[..., None], keypoints, 0.0).sum(-2, keepdims=True)
    centre = np.broadcast_to((size / 2)[:, None, None, :], total.shape)
    fill = np.where(count > 0, total / np.maximum(count, 1), centre)
    keypoints[:] = np.where(valid[..., None], keypoints, fill)
    scores[:] = np.where(valid, scores, 0.0)


def prepare_keypoints(
    keypoints_2d: Any, scores: Any = None, image_size: Any = None, layout: str = "h36m"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated H36M-order pixel keypoints with missing (NaN) joints filled in.

    Args:
      keypoints_2d: (T, 17, 2) or (B, T, 17, 2) pixels in `layout` order; NaN marks a missing
        joint (allowed only with `scores`; it gets score 0); finite values must lie within
        +-MAX_IMAGE_SPANS image sizes.
      scores: optional confidences (T, 17) / (B, T, 17) in [0, 1]; None means all ones.
      image_size: (w, h), or (B, 2) per sequence.
      layout: "h36m" or "coco" (COCO-17 detector order, converted by skeleton.coco_to_h36m).

    Returns:
      (keypoints (B, T, 17, 2), scores (B, T, 17), image sizes (B, 2)), float32, always batched.
    """
    keypoints = _float_array(keypoints_2d, "keypoints_2d")
    given = scores is not None
    scores = _float_array(scores, "scores") if given else None
    _check_keypoints(keypoints, scores)
    if keypoints.ndim == 3:
        keypoints, scores = keypoints[None], (scores[None] if given else None)
    if scores is None:
        scores = np.ones(keypoints.shape[:-1], np.float32)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; use 'h36m' or 'coco'")
    size = _image_sizes(image_size, keypoints.shape[0])
    _check_range(keypoints, size)
    if layout == "coco":
        keypoints, scores = skeleton.coco_to_h36m(keypoints, scores)
    keypoints, scores = np.array(keypoints, np.float32), np.array(scores, np.float32)
    missing = ~np.all(np.isfinite(keypoints), axis=-1)
    if missing.any() and not given:
        where = tuple(int(i[0]) for i in np.nonzero(missing))
        raise ValueError(
            f"keypoints_2d has {int(missing.sum())} non-finite joints (first at sequence, frame, "
            f"joint {where}); pass scores to treat them as missing, or fill them in"
        )
    _fill_missing(keypoints, scores, size)
    return keypoints, scores, size
