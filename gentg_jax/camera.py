"""Camera math: world <-> camera transforms, projection with distortion, 2D coordinate conventions.

Every function accepts numpy or jax arrays (jax in, jax out; numpy in, numpy out), broadcasts over
leading batch dimensions and can be traced under `jax.jit`.

Projection follows the VideoPose3D formulation on the 9-vector intrinsic
[fx, fy, cx, cy, k1, k2, k3, p1, p2] with focal length and centre normalised to screen
coordinates (x / w * 2 - [1, h / w]), so projected points live in the same normalised space the
models see. The Human3.6M calibration itself is data: `gentg_jax.data.h36m`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays):
    """jax.numpy when any argument is a jax array or tracer, numpy otherwise."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def qrot(q, v):
    """Rotates vectors v (..., 3) by unit quaternions q (..., 4) in (w, x, y, z) order."""
    xp = _xp(q, v)
    qvec = q[..., 1:]
    uv = xp.cross(qvec, v)
    uuv = xp.cross(qvec, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


def qinverse(q):
    """Inverse of unit quaternions (..., 4): the conjugate."""
    xp = _xp(q)
    return q * xp.asarray([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def world_to_camera(x, orientation, translation):
    """World points (..., 3) -> camera frame, given the camera-to-world rotation and centre (m)."""
    return qrot(qinverse(orientation), x - translation)


def camera_to_world(x, orientation, translation):
    """Camera-frame points (..., 3) -> world coordinates (inverse of `world_to_camera`)."""
    return qrot(orientation, x) + translation


def _screen_scale_offset(xp, w, h, dtype):
    """w and h as (..., 1) scales and [1, h / w] as (..., 2) offsets, in the points' dtype."""
    w = xp.asarray(w, dtype)[..., None]
    h = xp.asarray(h, dtype)[..., None]
    return w, xp.concatenate([xp.ones_like(w), h / w], axis=-1)


def normalize_screen_coordinates(x, w, h):
    """Pixels (..., 2) -> [-1, 1] along the width, aspect kept: x / w * 2 - [1, h / w].

    w and h are scalars or arrays that broadcast against x[..., 0].
    """
    w, offset = _screen_scale_offset(_xp(x, w, h), w, h, x.dtype)
    return x / w * 2 - offset


def image_coordinates(x, w, h):
    """Inverse of `normalize_screen_coordinates`: normalised screen coordinates -> pixels."""
    w, offset = _screen_scale_offset(_xp(x, w, h), w, h, x.dtype)
    return (x + offset) * w / 2


def project_to_2d(x, intrinsic):
    """Projects camera-frame points with radial and tangential distortion.

    Args:
      x: (..., J, 3) camera-frame points.
      intrinsic: (..., 9) normalised [fx, fy, cx, cy, k1, k2, k3, p1, p2], broadcast over J.

    Returns:
      (..., J, 2) points in normalised screen coordinates.
    """
    xp = _xp(x, intrinsic)
    intrinsic = intrinsic[..., None, :]
    f, c, k, p = (
        intrinsic[..., 0:2],
        intrinsic[..., 2:4],
        intrinsic[..., 4:7],
        intrinsic[..., 7:9],
    )
    # The clip keeps points far outside the field of view from blowing up the polynomial.
    xx = xp.clip(x[..., :2] / x[..., 2:], -1, 1)
    r2 = xp.sum(xx**2, axis=-1, keepdims=True)
    radial = 1 + xp.sum(k * xp.concatenate([r2, r2**2, r2**3], axis=-1), axis=-1, keepdims=True)
    tangential = xp.sum(p * xx, axis=-1, keepdims=True)
    distorted = xx * (radial + tangential) + p * r2
    return f * distorted + c


def project_to_2d_linear(x, intrinsic):
    """Pinhole projection (distortion ignored) of camera-frame points; see `project_to_2d`."""
    xp = _xp(x, intrinsic)
    intrinsic = intrinsic[..., None, :]
    xx = xp.clip(x[..., :2] / x[..., 2:], -1, 1)
    return intrinsic[..., 0:2] * xx + intrinsic[..., 2:4]


def flip_intrinsic(intrinsic):
    """Intrinsics of the left-right mirrored image (normalised units).

    Mirroring x -> -x keeps the projection model only if cx and the tangential coefficient that
    multiplies x, p1 (index 7), change sign; VideoPose3D's flip augmentation does the same.
    """
    xp = _xp(intrinsic)
    return intrinsic * xp.asarray([1, 1, -1, 1, 1, 1, 1, -1, 1], dtype=intrinsic.dtype)
