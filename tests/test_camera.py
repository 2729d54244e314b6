"""Camera math: transforms, projection against real 2D data, flips, numpy/jax types."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gentg_jax import camera
from gentg_jax.data import h36m
from tests import helpers

DATA = helpers.TESTDATA


@pytest.fixture(scope="module")
def mocap():
    """(subject, action) -> world poses (N, 17, 3) and the 4 ground-truth 2D tracks in pixels."""
    poses_3d = np.load(DATA / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    poses_2d = np.load(DATA / "data_2d_h36m_gt.npz", allow_pickle=True)["positions_2d"].item()
    return {
        (subject, action): (poses, poses_2d[subject][action])
        for subject, actions in poses_3d.items()
        for action, poses in actions.items()
    }


def _in_view_points(seed, n=50):
    """Camera-frame points (n, 3) in front of the camera, |x/z|, |y/z| < 0.5."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 6.0, size=(n, 1))
    return np.concatenate([rng.uniform(-0.5, 0.5, size=(n, 2)) * z, z], axis=-1)


@pytest.mark.parametrize("index", range(4))
def test_optical_axis_lands_on_principal_point(index):
    cam = h36m.camera("S1", index)
    on_axis = np.array([[0.0, 0.0, 3.5]], np.float32)
    projected = camera.project_to_2d(on_axis, cam.intrinsic)
    np.testing.assert_allclose(projected[0], cam.intrinsic[2:4], atol=1e-7)
    pixels = camera.image_coordinates(projected, cam.res_w, cam.res_h)
    np.testing.assert_allclose(pixels[0], h36m.INTRINSICS[index].center, atol=1e-3)


def test_distortion_free_projection_is_pinhole():
    points = _in_view_points(0)
    fx, fy, cx, cy = 2.3, 2.25, 0.03, -0.02
    intrinsic = np.array([fx, fy, cx, cy, 0, 0, 0, 0, 0], np.float64)
    expected = np.stack(
        [fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy], axis=-1
    )
    np.testing.assert_allclose(camera.project_to_2d(points, intrinsic), expected, atol=1e-12)
    # The linear projection ignores distortion whatever the coefficients are.
    distorted = h36m.camera("S5", 1).intrinsic.astype(np.float64)
    pinhole = distorted * [1, 1, 1, 1, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(
        camera.project_to_2d_linear(points, distorted),
        camera.project_to_2d(points, pinhole),
        atol=1e-12,
    )


def test_rotations_and_round_trip():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(5, 17, 3))
    cam = h36m.camera("S11", 3)
    q = cam.orientation.astype(np.float64)
    # qrot against scipy (scalar-last quaternions), an independent rotation implementation.
    scipy_rotated = Rotation.from_quat(q[[1, 2, 3, 0]]).apply(points.reshape(-1, 3))
    np.testing.assert_allclose(
        camera.qrot(np.broadcast_to(q, points.shape[:-1] + (4,)), points).reshape(-1, 3),
        scipy_rotated,
        atol=1e-6,  # the published quaternion has float32 precision, scipy renormalises it
    )
    t = cam.translation.astype(np.float64)
    local = camera.world_to_camera(points, q, t)
    np.testing.assert_allclose(camera.camera_to_world(local, q, t), points, atol=1e-6)
    np.testing.assert_allclose(camera.world_to_camera(t, q, t), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.norm(local, axis=-1), np.linalg.norm(points - t, axis=-1), atol=1e-6
    )


def test_projection_reproduces_ground_truth_2d(mocap):
    for (subject, action), (world, tracks) in mocap.items():
        for index, track in enumerate(tracks):
            cam = h36m.camera(subject, index)
            local = camera.world_to_camera(world, cam.orientation, cam.translation)
            assert np.all(local[..., 2] > 0), (subject, action, index)
            projected = camera.project_to_2d(local, cam.intrinsic)
            pixels = camera.image_coordinates(projected, cam.res_w, cam.res_h)
            # The 2D tracks may be longer than the mocap (S1 by 3 frames): trimmed to it.
            assert len(track) >= len(world)
            error = np.abs(pixels - track[: len(world)]).max()
            assert error < 0.01, (subject, action, index, error)


def test_numpy_in_numpy_out_jax_in_jax_out():
    points = _in_view_points(2).astype(np.float32)[None]
    cam = h36m.camera("S9", 0)
    np_out = camera.project_to_2d(points, cam.intrinsic)
    assert isinstance(np_out, np.ndarray) and np_out.dtype == np.float32
    jax_out = camera.project_to_2d(jnp.asarray(points), jnp.asarray(cam.intrinsic))
    assert isinstance(jax_out, jax.Array)
    jit_out = jax.jit(camera.project_to_2d)(points, cam.intrinsic)
    np.testing.assert_allclose(jax_out, np_out, atol=1e-6)
    np.testing.assert_allclose(jit_out, np_out, atol=1e-6)

    def to_pixels(x, q, t, intrinsic):
        projected = camera.project_to_2d(camera.world_to_camera(x, q, t), intrinsic)
        return camera.image_coordinates(projected, cam.res_w, cam.res_h)

    world = camera.camera_to_world(points, cam.orientation, cam.translation)
    assert isinstance(world, np.ndarray)
    args = (world, cam.orientation, cam.translation, cam.intrinsic)
    np.testing.assert_allclose(jax.jit(to_pixels)(*args), to_pixels(*args), atol=1e-3)
    pixels = camera.image_coordinates(np_out, 1000, 1002)
    assert isinstance(pixels, np.ndarray)
    assert isinstance(
        camera.normalize_screen_coordinates(jnp.asarray(pixels), 1000, 1002), jax.Array
    )


def test_screen_coordinates_round_trip_batched():
    rng = np.random.default_rng(3)
    w = np.array([1000, 1000, 640])[:, None]  # broadcasts against x[..., 0] of shape (3, 17)
    h = np.array([1002, 1000, 480])[:, None]
    pixels = (rng.random((3, 17, 2)) * np.stack([w, h], -1)).astype(np.float32)
    normalised = camera.normalize_screen_coordinates(pixels, w, h)
    for b in range(3):
        expected = pixels[b] / w[b, 0] * 2 - [1, h[b, 0] / w[b, 0]]
        np.testing.assert_allclose(normalised[b], expected, atol=1e-6)
    assert np.abs(normalised[..., 0]).max() <= 1
    np.testing.assert_allclose(camera.image_coordinates(normalised, w, h), pixels, atol=1e-3)
    jax_round = camera.image_coordinates(
        camera.normalize_screen_coordinates(jnp.asarray(pixels), jnp.asarray(w), jnp.asarray(h)),
        w,
        h,
    )
    np.testing.assert_allclose(jax_round, pixels, atol=1e-3)


@pytest.mark.parametrize("index", range(4))
def test_flip_intrinsic_mirrors_the_projection(index):
    """Mirroring the scene in x and projecting with the flipped intrinsic mirrors the image."""
    intrinsic = h36m.camera("S1", index).intrinsic.astype(np.float64)
    points = _in_view_points(4 + index)
    mirrored = points * [-1, 1, 1]
    flipped = camera.flip_intrinsic(intrinsic)
    np.testing.assert_allclose(camera.flip_intrinsic(flipped), intrinsic)
    expected = camera.project_to_2d(points, intrinsic) * [-1, 1]
    np.testing.assert_allclose(camera.project_to_2d(mirrored, flipped), expected, atol=1e-9)
    np.testing.assert_allclose(
        camera.project_to_2d_linear(mirrored, flipped),
        camera.project_to_2d_linear(points, intrinsic) * [-1, 1],
        atol=1e-12,
    )
