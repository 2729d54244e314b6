"""Sliding windows of the Predictor: overlapping windows blended, short sequences padded,
batches equal to single sequences."""

import numpy as np

from gentg_jax import skeleton
from tests.inference import common


def test_long_sequence_blends_overlapping_windows(predictor):
    length = 3 * common.T + 5  # stride T // 2 = 8: starts 0, 8, ..., 32, 37
    keypoints, scores = common.sequence(length, seed=1)
    out = predictor.predict(keypoints, scores, common.SIZE)
    starts = [0, 8, 16, 24, 32, 37]
    joints, sigma = common.reference(
        predictor,
        np.stack([keypoints[s : s + common.T] for s in starts]),
        np.stack([scores[s : s + common.T] for s in starts]),
    )
    weights = np.sin(np.pi * (np.arange(common.T) + 1) / (common.T + 1)) ** 2
    total, norm = np.zeros((length, 17, 3)), np.zeros(length)
    for index, start in enumerate(starts):
        total[start : start + common.T] += weights[:, None, None] * joints[index]
        norm[start : start + common.T] += weights
    np.testing.assert_allclose(out["coarse_3d"], total / norm[:, None, None], atol=1e-5)
    assert out["uncertainty"].shape == (length, 17) and np.all(out["uncertainty"] > 0)
    np.testing.assert_allclose(out["uncertainty"][:8], sigma[0, :8], rtol=1e-5)
    assert np.all(out["coarse_3d"][:, skeleton.ROOT] == 0)


def test_short_sequence_is_edge_padded(predictor):
    keypoints, scores = common.sequence(5, seed=2)
    out = predictor.predict(keypoints, scores, common.SIZE)
    padded = np.concatenate([np.arange(5), np.full(common.T - 5, 4)])
    joints, sigma = common.reference(predictor, keypoints[padded][None], scores[padded][None])
    np.testing.assert_allclose(out["coarse_3d"], joints[0, :5], atol=1e-5)
    np.testing.assert_allclose(out["uncertainty"], sigma[0, :5], rtol=1e-5)


def test_batch_equals_single_sequences(predictor):
    keypoints, scores = common.sequence(23, batch=3, seed=3)
    batched = predictor.predict(keypoints, scores, common.SIZE)
    for b in range(3):
        single = predictor.predict(keypoints[b], scores[b], common.SIZE)
        for key in ("coarse_3d", "uncertainty"):
            np.testing.assert_allclose(batched[key][b], single[key], rtol=1e-5, atol=1e-6)
