"""Tests for gentg_jax.losses against numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tgt_base
from gentg_jax import losses, skeleton

B, T, J = 2, 5, 17


def make_batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.normal(scale=0.3, size=(B, T, J, 3)).astype(np.float32)
    target[:, :, 0] = 0.0
    pred = (target + rng.normal(scale=0.05, size=target.shape)).astype(np.float32)
    pred[:, :, 0] = 0.0
    log_sigma = rng.uniform(-4.0, -1.0, size=(B, T, J)).astype(np.float32)
    bones = (skeleton.limb_vectors(pred) + rng.normal(scale=0.02, size=(B, T, 16, 3))).astype(
        np.float32
    )
    mask = np.ones((B, T), np.float32)
    mask[0, 3:] = 0.0
    mask[1, 0] = 0.0
    return pred, target, log_sigma, bones, mask


def numpy_masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def test_weighted_mpjpe_against_numpy():
    pred, target, _, _, mask = make_batch()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=J).astype(np.float32)
    errors = np.linalg.norm(pred - target, axis=-1)
    want = numpy_masked_mean((errors * weights).sum(-1) / weights.sum(), mask)
    got = losses.weighted_mpjpe(pred, target, mask, weights)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    plain = numpy_masked_mean(errors.mean(-1), mask)
    np.testing.assert_allclose(losses.weighted_mpjpe(pred, target, mask), plain, rtol=1e-5)
    with pytest.raises(ValueError, match="joint_weights"):
        losses.weighted_mpjpe(pred, target, mask, weights[:16])


def test_uncertainty_nll_against_numpy_and_gradients():
    pred, target, log_sigma, _, mask = make_batch()
    beta = 0.5
    errors = np.linalg.norm(pred - target, axis=-1)
    sigma = np.exp(log_sigma.astype(np.float64))
    nll = np.log(sigma) + errors**2 / (2 * sigma**2)
    want = numpy_masked_mean((sigma ** (2 * beta) * nll).mean(-1), mask)
    got = losses.uncertainty_nll(pred, target, log_sigma, mask, beta)
    np.testing.assert_allclose(got, want, rtol=1e-5)

    grad_pred, grad_sigma = jax.grad(losses.uncertainty_nll, argnums=(0, 2))(
        jnp.asarray(pred), target, jnp.asarray(log_sigma), mask, beta
    )
    np.testing.assert_array_equal(grad_pred, 0.0)  # the error is stop-gradient: trains sigma only
    # d/dlog_sigma of w * nll with w = sg(sigma^(2 beta)): w (1 - e^2 / sigma^2), per-frame mean.
    want_grad = sigma ** (2 * beta) * (1 - errors**2 / sigma**2) / J * mask[..., None] / mask.sum()
    np.testing.assert_allclose(grad_sigma, want_grad, rtol=1e-4, atol=1e-9)


def test_bone_consistency_and_velocity_against_numpy():
    pred, target, _, bones, mask = make_batch()
    joint_bones = pred[:, :, skeleton.LIMB_CHILDREN] - pred[:, :, skeleton.LIMB_PARENTS]
    want_bone = numpy_masked_mean(np.linalg.norm(bones - joint_bones, axis=-1).mean(-1), mask)
    np.testing.assert_allclose(losses.bone_consistency(pred, bones, mask), want_bone, rtol=1e-5)

    velocity_error = np.linalg.norm(np.diff(pred, axis=1) - np.diff(target, axis=1), axis=-1)
    pair_mask = mask[:, 1:] * mask[:, :-1]
    want_velocity = numpy_masked_mean(velocity_error.mean(-1), pair_mask)
    np.testing.assert_allclose(losses.velocity_error(pred, target, mask), want_velocity, rtol=1e-5)
    single = losses.velocity_error(pred[:, :1], target[:, :1], mask[:, :1])
    assert float(single) == 0.0


def outputs_dict(pred, log_sigma, bones):
    return {"joints_3d": pred, "log_sigma": log_sigma, "bones_3d": bones}


def test_masked_frames_have_no_effect():
    pred, target, log_sigma, bones, mask = make_batch()
    config = tgt_base.get_config("tiny").loss
    batch = {"pose_3d": target, "frame_mask": mask}
    _, metrics = losses.tgt_loss(outputs_dict(pred, log_sigma, bones), batch, config)
    masked = mask == 0
    garbage = np.random.default_rng(2).normal(size=pred.shape).astype(np.float32) * 10
    pred2, target2, bones2, log_sigma2 = pred.copy(), target.copy(), bones.copy(), log_sigma.copy()
    pred2[masked] = garbage[masked]
    target2[masked] = -garbage[masked]
    bones2[masked] = garbage[masked][:, :16]
    log_sigma2[masked] = 0.7
    batch2 = {"pose_3d": target2, "frame_mask": mask}
    _, metrics2 = losses.tgt_loss(outputs_dict(pred2, log_sigma2, bones2), batch2, config)
    for name in metrics:
        np.testing.assert_allclose(metrics2[name], metrics[name], rtol=1e-5, err_msg=name)

    empty = {"pose_3d": target, "frame_mask": np.zeros_like(mask)}
    loss, metrics = losses.tgt_loss(outputs_dict(pred, log_sigma, bones), empty, config)
    assert float(loss) == 0.0 and all(float(v) == 0.0 for v in metrics.values())


def test_total_is_weighted_sum_and_metrics_are_scalars():
    pred, target, log_sigma, bones, mask = make_batch()
    config = tgt_base.get_config("tiny").loss
    config.joint_weights = tuple(np.linspace(0.5, 1.5, J))
    batch = {"pose_3d": target, "frame_mask": mask}
    loss, metrics = losses.tgt_loss(outputs_dict(pred, log_sigma, bones), batch, config)
    assert all(np.shape(v) == () for v in metrics.values())
    want = (
        config.mpjpe * metrics["weighted_mpjpe_mm"] / 1000
        + config.uncertainty * metrics["uncertainty"]
        + config.bone * metrics["bone_mm"] / 1000
        + config.velocity * metrics["velocity_mm"] / 1000
    )
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], loss)
    errors = np.linalg.norm(pred - target, axis=-1).mean(-1)
    np.testing.assert_allclose(metrics["mpjpe_mm"], 1000 * numpy_masked_mean(errors, mask), 1e-5)
    sigma_mm = 1000 * numpy_masked_mean(np.exp(log_sigma).mean(-1), mask)
    np.testing.assert_allclose(metrics["sigma_mm"], sigma_mm, rtol=1e-5)


def test_perfect_prediction_gives_zero_terms_and_finite_gradients():
    _, target, log_sigma, _, mask = make_batch()
    config = tgt_base.get_config("tiny").loss
    batch = {"pose_3d": target, "frame_mask": mask}

    def total(pred, bones):
        return losses.tgt_loss(outputs_dict(pred, log_sigma, bones), batch, config)

    bones = skeleton.limb_vectors(target)
    (_, metrics), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(target, bones)
    for name in ("mpjpe_mm", "weighted_mpjpe_mm", "bone_mm", "velocity_mm"):
        assert float(metrics[name]) == 0.0, name
    assert all(np.all(np.isfinite(g)) for g in grads)  # safe norm: no NaN at zero error
