"""Predictor inputs: COCO layout, missing joints, off-image coordinates, clear errors."""

import numpy as np
import pytest

from gentg_jax import skeleton
from tests.inference import common


def test_coco_layout_is_converted(predictor):
    keypoints, scores = common.sequence(20, seed=4)
    out = predictor.predict(keypoints, scores, common.SIZE, layout="coco")
    converted = skeleton.coco_to_h36m(keypoints, scores)
    want = predictor.predict(*converted, common.SIZE, layout="h36m")
    np.testing.assert_allclose(out["coarse_3d"], want["coarse_3d"], atol=1e-6)


def test_nan_joints_are_missing_with_scores(predictor):
    keypoints, scores = common.sequence(20, seed=5)
    keypoints[3, 7] = np.nan
    out = predictor.predict(keypoints, scores, common.SIZE)
    filled, filled_scores = keypoints.copy(), scores.copy()
    filled[3, 7] = np.delete(keypoints[3], 7, axis=0).mean(0)
    filled_scores[3, 7] = 0.0
    want = predictor.predict(filled, filled_scores, common.SIZE)
    np.testing.assert_allclose(out["coarse_3d"], want["coarse_3d"], atol=1e-6)
    with pytest.raises(ValueError, match="non-finite joints .* pass scores"):
        predictor.predict(keypoints, None, common.SIZE)


def test_coordinates_outside_the_image_are_allowed(predictor):
    keypoints, _ = common.sequence(10, seed=6)
    out = predictor.predict(keypoints * 3.0 - 1500.0, None, common.SIZE)
    assert np.all(np.isfinite(out["coarse_3d"]))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(keypoints_2d=np.zeros((10, 18, 2))), "needs 17 joints"),
        (dict(keypoints_2d=np.zeros((17, 2))), r"is not \(T, 17, 2\)"),
        (dict(keypoints_2d=np.zeros((10, 17, 3))), r"\(x, y\)"),
        (dict(keypoints_2d=np.zeros((0, 17, 2))), "empty"),
        (dict(scores=np.ones((10, 16))), "scores shape"),
        (dict(scores=np.full((10, 17), np.nan)), "scores contain NaN"),
        (dict(image_size=None), "image_size=.* required"),
        (dict(image_size=(0, 100)), "image_size must be"),
        (dict(layout="openpose"), "layout="),
        (dict(camera=np.ones(4)), "camera must be"),
        (dict(keypoints_2d=[["a"]]), "numeric"),
        (dict(scores=np.full((10, 17), 1e6)), r"scores must be confidences in \[0, 1\]"),
        (dict(scores=np.full((10, 17), -0.5)), r"first -0.5 at index \(0, 0\)"),
        (dict(keypoints_2d=np.full((10, 17, 2), 1e30)), r"x=1e\+30 at \(sequence 0, frame 0"),
        (dict(keypoints_2d=np.full((10, 17, 2), -10_021.0)), "beyond \\+-10 image sizes"),
    ],
)
def test_bad_input_is_a_clear_error(predictor, change, match):
    args = {
        "keypoints_2d": np.zeros((10, 17, 2)),
        "scores": None,
        "image_size": common.SIZE,
        **change,
    }
    with pytest.raises(ValueError, match=match):
        predictor.predict(**args)
