"""TGT training losses: weighted MPJPE, beta-NLL uncertainty, bone consistency and velocity.

All terms are means over the frames where batch['frame_mask'] is 1 (a zero mask gives 0, not NaN),
in metres; `tgt_loss` also reports them in millimetres for logs.

Uncertainty: the model predicts a per-joint log sigma. The target is the per-joint Euclidean error
e = ||pred - gt|| with a stop-gradient, so the uncertainty term trains sigma only and can never
pull the pose towards the mean at the expense of accuracy (the failure mode beta-NLL was designed
against; Seitzer et al., ICLR 2022). On e we use the Gaussian NLL log sigma + e^2 / (2 sigma^2)
(constants dropped), whose minimiser is sigma^2 = E[e^2]: sigma estimates the RMS per-joint error
in metres. Each term is weighted by stop_gradient(sigma^(2 beta)) as in beta-NLL: the log-sigma
gradient 1 - e^2 / sigma^2 becomes sigma^(2 beta) (1 - e^2 / sigma^2); beta = 0 is the plain NLL,
beta = 1 gives sigma^2 - e^2 (a regression of sigma^2 on e^2), and beta = 0.5 sits between, so
joints whose error far exceeds their sigma do not dominate the gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from gentg_jax import skeleton


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm whose gradient at 0 is 0 rather than NaN (the root joint's error is 0)."""
    squared = jnp.sum(x**2, axis=axis)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of (B, T) values over mask (B, T); 0 when the mask is empty."""
    total = jnp.sum(mask)
    return jnp.where(total > 0, jnp.sum(values * mask) / jnp.where(total > 0, total, 1.0), 0.0)


def _joint_weights(weights: Sequence[float] | jax.Array | None, num: int) -> jax.Array:
    if weights is None:
        return jnp.ones((num,), jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != (num,):
        raise ValueError(f"joint_weights must have {num} entries, got shape {weights.shape}")
    return weights


def weighted_mpjpe(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    joint_weights: Sequence[float] | jax.Array | None = None,
) -> jax.Array:
    """Per-joint-weighted mean per-joint position error (metres).

    Args:
      pred, target: (B, T, J, 3).
      mask: (B, T) frame weights.
      joint_weights: (J,) weights; each frame's error is sum_j w_j e_j / sum_j w_j.
    """
    weights = _joint_weights(joint_weights, pred.shape[-2])
    per_frame = safe_norm(pred - target) @ weights / jnp.sum(weights)
    return masked_mean(per_frame, mask)


def uncertainty_nll(
    pred: jax.Array, target: jax.Array, log_sigma: jax.Array, mask: jax.Array, beta: float = 0.5
) -> jax.Array:
    """Beta-NLL of the stop-gradient per-joint error under N(0, sigma^2); trains only log_sigma.

    Args:
      pred, target: (B, T, J, 3).
      log_sigma: (B, T, J) predicted log sigma (metres).
      mask: (B, T).
      beta: exponent of the stop-gradient sigma^(2 beta) weight; 0 is the plain Gaussian NLL.
    """
    error = jax.lax.stop_gradient(safe_norm(pred - target))
    nll = log_sigma + 0.5 * error**2 * jnp.exp(-2.0 * log_sigma)
    weight = jax.lax.stop_gradient(jnp.exp(2.0 * beta * log_sigma))
    return masked_mean(jnp.mean(weight * nll, axis=-1), mask)


def bone_consistency(joints_3d: jax.Array, bones_3d: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean distance (metres) between the limb head's bones and the joint head's bone vectors."""
    error = safe_norm(bones_3d - skeleton.limb_vectors(joints_3d))
    return masked_mean(jnp.mean(error, axis=-1), mask)


def velocity_error(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean per-joint error of frame-to-frame velocities (metres per frame).

    A velocity counts when both of its frames are in the mask; T = 1 gives 0.
    """
    pred_velocity = pred[:, 1:] - pred[:, :-1]
    target_velocity = target[:, 1:] - target[:, :-1]
    pair_mask = mask[:, 1:] * mask[:, :-1]
    error = jnp.mean(safe_norm(pred_velocity - target_velocity), axis=-1)
    return masked_mean(error, pair_mask)


def tgt_loss(
    outputs: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    loss_config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The TGT training objective.

    Args:
      outputs: the model's 'joints_3d' (B, T, 17, 3), 'bones_3d' (B, T, 16, 3), 'log_sigma'
        (B, T, 17).
      batch: 'pose_3d' (B, T, 17, 3) root-relative metres, 'frame_mask' (B, T).
      loss_config: config.loss: joint_weights, mpjpe, uncertainty, uncertainty_beta, bone,
        velocity.

    Returns:
      The weighted total and scalar metrics: 'loss', 'mpjpe_mm' (unweighted), 'weighted_mpjpe_mm',
      'uncertainty' (the beta-NLL), 'bone_mm', 'velocity_mm', 'sigma_mm' (mean predicted sigma).
    """
    pred = outputs["joints_3d"].astype(jnp.float32)
    target = batch["pose_3d"].astype(jnp.float32)
    if pred.shape != target.shape:
        raise ValueError(f"joints_3d shape {pred.shape} != pose_3d shape {target.shape}")
    mask = batch["frame_mask"].astype(jnp.float32)
    log_sigma = outputs["log_sigma"].astype(jnp.float32)
    terms = {
        "mpjpe": weighted_mpjpe(pred, target, mask, loss_config.joint_weights),
        "uncertainty": uncertainty_nll(pred, target, log_sigma, mask, loss_config.uncertainty_beta),
        "bone": bone_consistency(pred, outputs["bones_3d"].astype(jnp.float32), mask),
        "velocity": velocity_error(pred, target, mask),
    }
    loss = sum(loss_config[name] * value for name, value in terms.items())
    metrics = {
        "loss": loss,
        "mpjpe_mm": 1000.0 * weighted_mpjpe(pred, target, mask),
        "weighted_mpjpe_mm": 1000.0 * terms["mpjpe"],
        "uncertainty": terms["uncertainty"],
        "bone_mm": 1000.0 * terms["bone"],
        "velocity_mm": 1000.0 * terms["velocity"],
        "sigma_mm": 1000.0 * masked_mean(jnp.mean(jnp.exp(log_sigma), axis=-1), mask),
    }
    return loss, metrics
