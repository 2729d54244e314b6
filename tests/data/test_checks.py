"""Dataset sanity checks (gentg_jax.data.checks) against independent computations."""

import numpy as np
import pytest

from gentg_jax.data import checks, synthetic
from tests import helpers


def test_reprojection_of_a_pinhole_camera_by_hand():
    pose = helpers.STANDING[None] + np.array([0.0, 0.0, 4.5], np.float32)  # (1, 17, 3)
    fx, fy, cx, cy, (w, h) = 1.1, 1.1, 0.02, -0.01, (1000.0, 1002.0)
    # Pixels by hand: normalised x = f X / Z + c, then pixel = (x + [1, h / w]) * w / 2.
    u = (fx * pose[..., 0] / pose[..., 2] + cx + 1.0) * w / 2
    v = (fy * pose[..., 1] / pose[..., 2] + cy + h / w) * w / 2
    shifted = np.stack([u + 3.0, v - 4.0], axis=-1)  # 5 px off everywhere
    example = {
        "pose_3d": pose,
        "keypoints_2d": shifted,
        "intrinsics": np.array([fx, fy, cx, cy, 0, 0, 0, 0, 0], np.float32),
        "image_size": np.array([w, h]),
    }
    np.testing.assert_allclose(checks.reprojection_errors(example), 5.0, rtol=1e-4)


def test_summary_of_synthetic_examples():
    config = synthetic.SyntheticConfig(
        subjects=("S1",), actions=("Walking", "Sitting"), frames_per_sequence=30
    )
    exact = checks.summarize(e for _, e in synthetic.generate_examples(config, "gt"))
    noisy = checks.summarize(e for _, e in synthetic.generate_examples(config, "detector"))
    assert exact["reprojection_px"]["max"] < 1e-2  # ground-truth 2D is the projection
    assert noisy["reprojection_px"]["median"] > 1.0  # detector-like noise
    assert max(exact["bone_length_spread_mm"]) < 1e-2  # forward kinematics: rigid bones
    assert len(exact["bone_length_mm"]) == 16 and 300 < exact["bone_length_mm"][1] < 600  # thigh
    assert exact["frames_per_action"] == {"Sitting": 4 * 30, "Walking": 4 * 30}  # four cameras
    assert exact["sequences"] == 8 and exact["frames"] == 240
    with pytest.raises(ValueError, match="at least one example"):
        checks.summarize([])
