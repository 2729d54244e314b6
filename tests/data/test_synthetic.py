"""Tests for gentg_jax/data/synthetic.py (motion, cameras, examples) and
gentg_jax/data/detector_noise.py (the noise model and its scores)."""

import dataclasses
import itertools

import numpy as np
import pytest

from gentg_jax import camera, skeleton
from gentg_jax.data import h36m, synthetic
from gentg_jax.data.detector_noise import NoiseConfig, detector_noise

SMALL = synthetic.SyntheticConfig(
    subjects=("S1", "S9"), actions=("Walking", "Sitting", "Eating"), frames_per_sequence=100
)
FEATURES = {
    "subject",
    "action",
    "camera",
    "keypoints_2d",
    "scores",
    "pose_3d",
    "intrinsics",
    "image_size",
}


def _examples(config, source="detector"):
    return dict(synthetic.generate_examples(config, source))


def _motion(action, subject="S1", frames=300, seed=0):
    return synthetic.generate_motion(subject, action, frames, np.random.default_rng(seed))


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        for name in FEATURES:
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key} {name}")


def test_deterministic_by_seed_and_subset():
    first, again = _examples(SMALL), _examples(SMALL)
    _assert_same(first, again)
    other = _examples(dataclasses.replace(SMALL, seed=1))
    for key in first:
        assert not np.allclose(first[key]["pose_3d"], other[key]["pose_3d"])
        assert not np.allclose(first[key]["keypoints_2d"], other[key]["keypoints_2d"])
    # Any subset generates exactly as within the full set.
    subset = _examples(dataclasses.replace(SMALL, subjects=("S9",), actions=("Eating",)))
    _assert_same(subset, {key: first[key] for key in subset})


def test_keys_order_shapes_and_dtypes_for_both_sources():
    for source in synthetic.SOURCES:
        examples = list(synthetic.generate_examples(SMALL, source))
        expected = [
            f"{s}/{a}/{c}"
            for s, a, c in itertools.product(SMALL.subjects, SMALL.actions, h36m.CAMERA_IDS)
        ]
        assert [key for key, _ in examples] == expected
        t = SMALL.frames_per_sequence
        for key, ex in examples:
            assert set(ex) == FEATURES
            subject, action, camera_id = key.split("/")
            assert (ex["subject"], ex["action"], ex["camera"]) == (subject, action, camera_id)
            index = h36m.CAMERA_IDS.index(camera_id)
            cam = h36m.camera(subject, index)
            assert ex["keypoints_2d"].shape == (t, 17, 2) and ex["keypoints_2d"].dtype == np.float32
            assert ex["scores"].shape == (t, 17) and ex["scores"].dtype == np.float32
            assert ex["pose_3d"].shape == (t, 17, 3) and ex["pose_3d"].dtype == np.float32
            assert ex["intrinsics"].dtype == np.float32
            np.testing.assert_array_equal(ex["intrinsics"], cam.intrinsic)
            assert ex["image_size"].dtype == np.int32
            assert tuple(ex["image_size"]) == (cam.res_w, cam.res_h)
            assert np.all(ex["pose_3d"][..., 2] > 1.0)  # in front of the camera
            if source == "gt":
                np.testing.assert_array_equal(ex["scores"], 1.0)
            else:
                assert np.all((ex["scores"] >= 0) & (ex["scores"] <= 1))


def test_projection_of_pose_3d_is_gt_keypoints_and_cameras_agree():
    gt = _examples(SMALL, "gt")
    detector = _examples(SMALL)
    for key, ex in gt.items():
        w, h = ex["image_size"]
        screen = camera.project_to_2d(ex["pose_3d"], ex["intrinsics"])
        projected = camera.image_coordinates(screen, w, h)
        np.testing.assert_allclose(projected, ex["keypoints_2d"], atol=1e-3)
        # Both sources share the 3D; only the 2D differs.
        np.testing.assert_array_equal(ex["pose_3d"], detector[key]["pose_3d"])
    # The four cameras see one motion: back in world coordinates their poses coincide.
    for subject, action in itertools.product(SMALL.subjects, SMALL.actions):
        worlds = []
        for index, camera_id in enumerate(h36m.CAMERA_IDS):
            cam = h36m.camera(subject, index)
            pose = gt[f"{subject}/{action}/{camera_id}"]["pose_3d"].astype(np.float64)
            worlds.append(camera.camera_to_world(pose, cam.orientation, cam.translation))
        for world in worlds[1:]:
            np.testing.assert_allclose(world, worlds[0], atol=1e-4)
        assert worlds[0][..., 2].min() > -1e-4  # nothing below the floor


@pytest.mark.parametrize("action", h36m.ACTIONS)
def test_every_action_has_rigid_bones_smooth_motion_on_the_floor(action):
    joints = _motion(action).astype(np.float64)
    assert joints.shape == (300, 17, 3) and np.all(np.isfinite(joints))
    lengths = np.linalg.norm(skeleton.limb_vectors(joints), axis=-1)
    assert np.abs(lengths - lengths[0]).max() < 1e-5
    reference = synthetic.subject_bone_lengths("S1")
    np.testing.assert_allclose(lengths[0], reference, atol=1e-5)
    # Per-frame speed and acceleration at 50 fps stay within human limits.
    velocity = np.linalg.norm(np.diff(joints, axis=0), axis=-1) * synthetic.FPS
    acceleration = np.linalg.norm(np.diff(joints, 2, axis=0), axis=-1) * synthetic.FPS**2
    assert velocity.max() < 8.0, velocity.max()
    assert acceleration.max() < 120.0, acceleration.max()
    # The lowest joint touches the floor (z = 0) and nothing goes below it.
    lowest = joints[..., 2].min(axis=1)
    assert np.all(lowest >= 0) and np.all(lowest < 0.03)
    # The capture volume: within about 2 m of the world origin.
    assert np.linalg.norm(joints[..., :2], axis=-1).max() < 2.5


def test_bone_lengths_per_subject_are_plausible_and_symmetric():
    mean = np.array([0.13, 0.45, 0.45, 0.13, 0.45, 0.45, 0.23, 0.25, 0.11, 0.12, 0.15, 0.28])
    mean = np.concatenate([mean, [0.25, 0.15, 0.28, 0.25]])
    all_lengths = np.stack([synthetic.subject_bone_lengths(s) for s in h36m.SUBJECTS])
    assert np.all(all_lengths > 0.8 * mean) and np.all(all_lengths < 1.2 * mean)
    left = np.asarray(skeleton.JOINTS_LEFT) - 1
    right = np.asarray(skeleton.JOINTS_RIGHT) - 1
    np.testing.assert_array_equal(all_lengths[:, left], all_lengths[:, right])
    assert len({tuple(row) for row in all_lengths}) == len(h36m.SUBJECTS)
    np.testing.assert_array_equal(
        synthetic.subject_bone_lengths("S5", seed=3), synthetic.subject_bone_lengths("S5", seed=3)
    )
    assert not np.allclose(
        synthetic.subject_bone_lengths("S5", seed=3), synthetic.subject_bone_lengths("S5")
    )


def test_walking_travels_and_sitting_lowers_the_hip():
    walking, sitting = _motion("Walking", frames=500), _motion("Sitting", frames=500)
    step = np.linalg.norm(np.diff(walking[:, 0, :2], axis=0), axis=-1)
    duration = 500 / synthetic.FPS
    assert step.sum() > 0.7 * duration  # at least 0.7 m/s on average
    spread = walking[:, 0, :2].max(axis=0) - walking[:, 0, :2].min(axis=0)
    assert spread.max() > 1.0  # it goes somewhere, not on the spot
    assert np.linalg.norm(np.diff(sitting[:, 0, :2], axis=0), axis=-1).sum() < 0.3 * step.sum()
    standing_hip, seated_hip = walking[:, 0, 2].mean(), sitting[:, 0, 2].mean()
    assert 0.75 < standing_hip < 1.0
    assert seated_hip < standing_hip - 0.25


def test_joints_inside_the_image_most_of_the_time():
    config = dataclasses.replace(
        SMALL, subjects=h36m.SUBJECTS, actions=h36m.ACTIONS, frames_per_sequence=50
    )
    inside = []
    for _, ex in synthetic.generate_examples(config, "gt"):
        x, y = np.moveaxis(ex["keypoints_2d"], -1, 0)
        w, h = ex["image_size"]
        inside.append((x >= 0) & (x < w) & (y >= 0) & (y < h))
    assert np.mean(inside) > 0.95


def _noise(frames=3000, seed=0, **overrides):
    """Detector noise on fixed, well-separated keypoints in the middle of a 1000 x 1000 image."""
    keypoints = np.random.default_rng(123).uniform(300, 700, (1, 17, 2)).repeat(frames, axis=0)
    config = NoiseConfig(**overrides)
    noisy, scores = detector_noise(keypoints, (1000, 1000), np.random.default_rng(seed), config)
    assert noisy.shape == keypoints.shape and noisy.dtype == np.float32
    assert scores.shape == keypoints.shape[:2] and scores.dtype == np.float32
    return noisy - keypoints, scores, config


def _run_lengths(mask):
    """Lengths of the runs of True along axis 0 of a (frames, joints) mask."""
    padded = np.pad(mask, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)
    starts, ends = np.nonzero(edges.T == 1), np.nonzero(edges.T == -1)
    return ends[1] - starts[1]


def test_jitter_and_drift_as_configured():
    error, scores, config = _noise(drift_px=0.0, occlusion_rate=0.0, gross_error_rate=0.0)
    assert abs(error.std() / config.jitter_px - 1) < 0.05
    assert abs(np.corrcoef(error[1:].ravel(), error[:-1].ravel())[0, 1]) < 0.05
    assert scores.min() > config.bad_score_max  # nothing is flagged
    expected = config.clean_score_mean - config.score_drop_per_px * np.linalg.norm(error, axis=-1)
    assert abs(scores.mean() - expected.mean()) < 0.01
    error, _, config = _noise(jitter_px=0.0, occlusion_rate=0.0, gross_error_rate=0.0)
    assert abs(error.std() / config.drift_px - 1) < 0.15
    for lag in (1, 25):
        correlation = np.corrcoef(error[lag:].ravel(), error[:-lag].ravel())[0, 1]
        assert abs(correlation - np.exp(-lag / config.drift_timescale_frames)) < 0.08


def test_occlusions_as_configured():
    error, scores, config = _noise(occlusion_rate=0.05, gross_error_rate=0.0)
    flagged = scores <= config.bad_score_max
    assert abs(flagged.mean() / config.occlusion_rate - 1) < 0.25
    runs = _run_lengths(flagged)
    assert abs(runs.mean() / config.occlusion_length_frames - 1) < 0.3
    distance = np.linalg.norm(error, axis=-1)
    assert np.median(distance[flagged]) > 3 * np.median(distance[~flagged])
    assert scores[flagged].max() < scores[~flagged].min()


def test_gross_errors_as_configured():
    error, scores, config = _noise(occlusion_rate=0.0, gross_error_rate=0.03)
    flagged = scores <= config.bad_score_max
    assert abs(flagged.mean() / config.gross_error_rate - 1) < 0.25
    assert abs(_run_lengths(flagged).mean() / config.gross_error_length_frames - 1) < 0.3
    distance = np.linalg.norm(error, axis=-1)
    assert np.median(distance[flagged]) > 20 and np.median(distance[~flagged]) < 10
    # Some gross errors land exactly on the left/right counterpart (up to the usual noise).
    keypoints = np.random.default_rng(123).uniform(300, 700, (17, 2))
    counterpart = keypoints[list(skeleton.FLIP_PERMUTATION)] - keypoints
    swapped = np.linalg.norm(error - counterpart, axis=-1) < 20
    has_counterpart = np.asarray(skeleton.FLIP_PERMUTATION) != np.arange(17)
    share = swapped[flagged & has_counterpart].mean()
    assert abs(share - config.gross_error_swap_fraction) < 0.15


def test_detector_scores_follow_the_error_on_generated_data():
    config = dataclasses.replace(SMALL, frames_per_sequence=600)
    gt = _examples(config, "gt")
    errors, scores = [], []
    for key, ex in synthetic.generate_examples(config, "detector"):
        errors.append(np.linalg.norm(ex["keypoints_2d"] - gt[key]["keypoints_2d"], axis=-1))
        scores.append(ex["scores"])
    errors, scores = np.concatenate(errors).ravel(), np.concatenate(scores).ravel()
    confident = scores > 0.6
    # 2D error of a clean joint: Rayleigh with per-axis std sqrt(jitter^2 + drift^2).
    sigma = np.hypot(config.jitter_px, config.drift_px)
    assert abs(np.median(errors[confident]) / (sigma * np.sqrt(2 * np.log(2))) - 1) < 0.15
    expected_bad = config.occlusion_rate + config.gross_error_rate
    assert 0.7 < (1 - confident.mean()) / expected_bad < 1.4
    assert errors[~confident].mean() > 5 * errors[confident].mean()
    rank_error = np.argsort(np.argsort(errors))
    rank_score = np.argsort(np.argsort(scores))
    assert np.corrcoef(rank_error, rank_score)[0, 1] < -0.3  # Spearman


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="subjects"):
        synthetic.SyntheticConfig(subjects=("S2",))
    with pytest.raises(ValueError, match="actions"):
        synthetic.SyntheticConfig(actions=("Dancing",))
    with pytest.raises(ValueError, match="SyntheticConfig.occlusion_rate"):
        synthetic.SyntheticConfig(occlusion_rate=1.0)
    with pytest.raises(ValueError, match="NoiseConfig.bad_score_max"):
        NoiseConfig(bad_score_max=0.01)
    with pytest.raises(ValueError, match="source"):
        next(synthetic.generate_examples(SMALL, source="cpn"))
    with pytest.raises(ValueError, match="action"):
        _motion("Dancing")
    with pytest.raises(ValueError, match="keypoints_px"):
        detector_noise(np.zeros((5, 16, 2)), (1000, 1000), np.random.default_rng(0), SMALL)
