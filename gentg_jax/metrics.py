"""3D pose evaluation metrics and the Human3.6M per-action protocol tables.

Every metric takes a prediction and a target of shape (..., J, 3) in metres and returns one value
per frame, shape (...,): errors in metres, PCK and AUC in percent. Per-frame values are what the
protocol table needs (frame-weighted means within an action); `weighted_mean` averages them,
optionally under a frame mask. An optional joint `mask`, broadcastable to (..., J), restricts a
metric to the joints where it is non-zero (its values act as weights); a frame whose joints are
all masked scores 0 and should be given zero weight in the frame average.

MPJPE, N-MPJPE and the protocol follow VideoPose3D (Pavllo et al., CVPR 2019): poses are expected
root-relative, nothing here subtracts the root. The metric functions are jnp code wrapped in
`jax.jit` (eager dispatch of the batched SVD alone costs seconds per new shape) and can be called
inside other jitted code; `protocol_table` and `format_markdown` run on the host.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# 3DPCK threshold and the AUC thresholds 0, 5, ..., 150 mm, in metres.
PCK_THRESHOLD = 0.15
AUC_THRESHOLDS = tuple(np.linspace(0.0, 0.15, 31).tolist())


def _joint_weights(mask, shape, dtype):
    """The mask broadcast to `shape` (..., J) as weights, or None for all joints."""
    if mask is None:
        return None
    return jnp.broadcast_to(jnp.asarray(mask, dtype), shape)


def _safe_divide(numerator, denominator):
    """numerator / denominator, and 0 where the denominator is 0 (no NaN from empty sums)."""
    nonzero = denominator != 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0)


def _joint_mean(values, weights):
    """Mean of (..., J) values over joints, weighted when `weights` is given."""
    if weights is None:
        return jnp.mean(values, axis=-1)
    return _safe_divide(jnp.sum(values * weights, axis=-1), jnp.sum(weights, axis=-1))


def _check_shapes(pred, target):
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape or pred.ndim < 2 or pred.shape[-1] != 3:
        raise ValueError(
            f"prediction and target must both have shape (..., J, 3); got {pred.shape} and "
            f"{target.shape}"
        )
    dtype = jnp.result_type(pred.dtype, target.dtype, jnp.float32)
    return pred.astype(dtype), target.astype(dtype)


@jax.jit
def weighted_mean(values: ArrayLike, weights: ArrayLike | None = None) -> jax.Array:
    """Mean of per-frame values over all axes, weighted by e.g. a frame mask of the same shape."""
    values = jnp.asarray(values)
    if weights is None:
        return jnp.mean(values)
    weights = jnp.broadcast_to(jnp.asarray(weights, values.dtype), values.shape)
    return _safe_divide(jnp.sum(values * weights), jnp.sum(weights))


@jax.jit
def joint_errors(pred: ArrayLike, target: ArrayLike) -> jax.Array:
    """Euclidean distance per joint, (..., J, 3) -> (..., J)."""
    pred, target = _check_shapes(pred, target)
    return jnp.linalg.norm(pred - target, axis=-1)


@jax.jit
def mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """Mean per-joint position error (protocol 1), per frame: (..., J, 3) -> (...,) metres."""
    errors = joint_errors(pred, target)
    return _joint_mean(errors, _joint_weights(mask, errors.shape, errors.dtype))


@jax.jit
def n_mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """MPJPE after the least-squares scale of the prediction, per frame (VideoPose3D's N-MPJPE).

    The scale s minimising sum_j |s * pred_j - target_j|^2 over the (masked) joints of each frame
    is <pred, target> / <pred, pred>; an all-zero prediction keeps scale 0.
    """
    pred, target = _check_shapes(pred, target)
    weights = _joint_weights(mask, pred.shape[:-1], pred.dtype)
    w = 1 if weights is None else weights[..., None]
    cross = jnp.sum(w * pred * target, axis=(-2, -1))
    norm = jnp.sum(w * pred * pred, axis=(-2, -1))
    scale = _safe_divide(cross, norm)
    return mpjpe(scale[..., None, None] * pred, target, mask)


@jax.jit
def procrustes_align(
    pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None
) -> jax.Array:
    """Aligns each frame of `pred` to `target` by the best similarity transform.

    Scale, proper rotation and translation minimise the (masked) sum of squared joint distances
    (Umeyama / Kabsch). When the best orthogonal map is a reflection, the sign of the last
    singular vector and singular value is flipped, giving the best proper rotation, as the
    Human3.6M protocol 2 implementation of VideoPose3D does. Degenerate frames stay finite: a
    prediction whose joints all coincide maps to the target centroid. Nearly collinear or nearly
    coincident frames are ill-conditioned, so float32 results there may differ from a float64
    computation by tens of micrometres; real poses agree to well under a micrometre.

    Args:
      pred: (..., J, 3) predicted joints.
      target: (..., J, 3) ground-truth joints.
      mask: optional joint weights broadcastable to (..., J); masked joints do not influence the
        alignment.

    Returns:
      (..., J, 3) the aligned prediction (every joint, masked ones included).
    """
    pred, target = _check_shapes(pred, target)
    weights = _joint_weights(mask, pred.shape[:-1], pred.dtype)
    w = jnp.ones(pred.shape[:-1] + (1,), pred.dtype) if weights is None else weights[..., None]
    total = jnp.sum(w, axis=-2, keepdims=True)
    mu_pred = _safe_divide(jnp.sum(w * pred, axis=-2, keepdims=True), total)
    mu_target = _safe_divide(jnp.sum(w * target, axis=-2, keepdims=True), total)
    p0, t0 = pred - mu_pred, target - mu_target
    # Row-vector convention: aligned = a * p0 @ rotation + mu_target, with
    # rotation = V U^T for the SVD U S V^T of the weighted cross-covariance t0^T W p0.
    cov = jnp.einsum("...ji,...jk->...ik", w * t0, p0)
    u, s, vt = jnp.linalg.svd(cov)
    v = jnp.swapaxes(vt, -1, -2)
    det = jnp.linalg.det(v @ jnp.swapaxes(u, -1, -2))
    sign = jnp.where(det < 0, -1.0, 1.0).astype(pred.dtype)
    flip = jnp.concatenate([jnp.ones_like(s[..., :2]), sign[..., None]], axis=-1)
    rotation = (v * flip[..., None, :]) @ jnp.swapaxes(u, -1, -2)
    scale = _safe_divide(jnp.sum(s * flip, axis=-1), jnp.sum(w * p0 * p0, axis=(-2, -1)))
    return scale[..., None, None] * (p0 @ rotation) + mu_target


@jax.jit
def p_mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """MPJPE after per-frame similarity Procrustes alignment (protocol 2): (...,) metres."""
    return mpjpe(procrustes_align(pred, target, mask), target, mask)


@jax.jit
def mpjve(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """Mean per-joint velocity error along the frames axis (axis -3), in metres per frame.

    Velocities are first differences between consecutive frames, so the result has shape
    (..., T - 1): entry t compares the motion from frame t to frame t + 1. A joint counts in a
    pair of frames only when it is unmasked in both.

    Args:
      pred: (..., T, J, 3) predicted joints over T >= 2 frames.
      target: (..., T, J, 3) ground-truth joints.
      mask: optional joint weights broadcastable to (..., T, J).
    """
    pred, target = _check_shapes(pred, target)
    if pred.ndim < 3 or pred.shape[-3] < 2:
        raise ValueError(f"mpjve needs (..., T, J, 3) with T >= 2 frames, got {pred.shape}")
    errors = jnp.linalg.norm(jnp.diff(pred, axis=-3) - jnp.diff(target, axis=-3), axis=-1)
    weights = _joint_weights(mask, pred.shape[:-1], pred.dtype)
    if weights is not None:
        weights = weights[..., 1:, :] * weights[..., :-1, :]
    return _joint_mean(errors, weights)


def _pck_curve(pred, target, thresholds, mask):
    """Percentage of joints closer than each threshold: (..., len(thresholds))."""
    errors = joint_errors(pred, target)
    hits = (errors[..., None] < jnp.asarray(thresholds, errors.dtype)).astype(errors.dtype)
    weights = _joint_weights(mask, errors.shape, errors.dtype)
    if weights is None:
        return 100 * jnp.mean(hits, axis=-2)
    hit_weight = jnp.sum(hits * weights[..., None], axis=-2)
    return 100 * _safe_divide(hit_weight, jnp.sum(weights, axis=-1, keepdims=True))


@jax.jit
def pck3d(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    threshold: float = PCK_THRESHOLD,
) -> jax.Array:
    """3DPCK per frame: percentage of joints with error strictly below `threshold` metres."""
    return _pck_curve(pred, target, (threshold,), mask)[..., 0]


@functools.partial(jax.jit, static_argnames="thresholds")
def auc(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    thresholds: tuple[float, ...] = AUC_THRESHOLDS,
) -> jax.Array:
    """Area under the 3DPCK curve per frame: mean PCK (percent) over 0, 5, ..., 150 mm.

    PCK uses a strict `<`, so the 0 mm threshold never counts a joint and an exact prediction
    scores 100 * 30 / 31.
    """
    return jnp.mean(_pck_curve(pred, target, thresholds, mask), axis=-1)


def action_name(action: str) -> str:
    """The protocol's action label: the text before the first space ("Walking 1" -> "Walking")."""
    return action.split(" ")[0]


@dataclasses.dataclass(frozen=True)
class ProtocolTable:
    """One metric over the Human3.6M actions, in output units (millimetres by default).

    Attributes:
      actions: action label -> frame-weighted mean over every frame of that action (all subjects,
        cameras and sub-actions pooled).
      frames: action label -> number of frames pooled.
      mean: the protocol number, the unweighted mean over actions.
      subjects: subject -> the same table restricted to that subject (empty unless requested).
    """

    actions: dict[str, float]
    frames: dict[str, int]
    mean: float
    subjects: dict[str, ProtocolTable] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-serialisable nested dict."""
        return dataclasses.asdict(self)


def _sorted_actions(names):
    # Case-insensitive order puts WalkDog, Walking, WalkTogether in the order papers print them.
    return sorted(names, key=str.lower)


def _action_table(sequences: list[tuple[str, np.ndarray]], scale: float) -> ProtocolTable:
    """Pools (action, per-frame values) pairs by action label and averages over actions."""
    pooled: dict[str, list[np.ndarray]] = {}
    for action, values in sequences:
        pooled.setdefault(action_name(action), []).append(values)
    actions, frames = {}, {}
    for name in _sorted_actions(pooled):
        values = np.concatenate(pooled[name])
        if values.size == 0:
            raise ValueError(f"action {name!r} has no frames")
        actions[name] = float(scale * values.mean())
        frames[name] = int(values.size)
    return ProtocolTable(actions, frames, float(np.mean(list(actions.values()))))


def protocol_table(
    errors_by_sequence: Mapping[tuple[str, str, str], np.ndarray],
    *,
    per_subject: bool = False,
    scale: float = 1000.0,
) -> ProtocolTable:
    """Reproduces the Human3.6M per-action protocol from per-frame values of one metric.

    Within an action every frame counts once (frame-weighted, not sequence-weighted), pooling
    subjects, cameras and sub-actions ("Walking 1" joins "Walking"); the reported number is the
    mean over actions.

    Args:
      errors_by_sequence: (subject, action, camera) -> per-frame values (N,), e.g. `mpjpe` of one
        test sequence seen from one camera, with padded or duplicate frames already removed.
      per_subject: also compute the table of each subject on its own.
      scale: multiplier applied to every value: 1000 turns metres into millimetres; use 1.0 for
        metrics that are already percentages (PCK, AUC).

    Returns:
      A ProtocolTable of floats, unrounded.
    """
    if not errors_by_sequence:
        raise ValueError("protocol_table needs at least one sequence")
    by_subject: dict[str, list[tuple[str, np.ndarray]]] = {}
    for key, values in errors_by_sequence.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise ValueError(
                f"sequence keys must be (subject, action, camera) strings, got {key!r}"
            )
        values = np.asarray(values, np.float64)
        if values.ndim != 1:
            raise ValueError(f"sequence {key}: expected per-frame values (N,), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"sequence {key}: non-finite per-frame values")
        by_subject.setdefault(key[0], []).append((key[1], values))
    table = _action_table([item for items in by_subject.values() for item in items], scale)
    if per_subject:
        subjects = {s: _action_table(by_subject[s], scale) for s in sorted(by_subject)}
        table = dataclasses.replace(table, subjects=subjects)
    return table


def format_markdown(
    tables: Mapping[str, ProtocolTable], digits: int = 1, mean_label: str = "Avg"
) -> str:
    """A Markdown table: one row per metric (plus one per subject when present), actions as
    columns and the mean over actions last (headed `mean_label`). Values are rounded here, for
    printing only."""
    rows = []
    for metric, table in tables.items():
        rows.append((metric, table))
        rows.extend((f"{metric} ({subject})", sub) for subject, sub in table.subjects.items())
    columns = _sorted_actions({a for _, table in rows for a in table.actions})
    lines = [
        "| " + " | ".join(["Metric", *columns, mean_label]) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for label, table in rows:
        cells = [f"{table.actions[a]:.{digits}f}" if a in table.actions else "-" for a in columns]
        lines.append("| " + " | ".join([label, *cells, f"{table.mean:.{digits}f}"]) + " |")
    return "\n".join(lines) + "\n"
