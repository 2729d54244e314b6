"""Per-joint errors, the 3DPCK curve and sigma calibration bins of an evaluation, for plots.

Computed on the host from the stitched sequences (`tables.Collector.sequences`), JSON-ready
(lists of floats, millimetres and percent):

  per_joint    {method: [17 errors, mm]}: each action's frame-weighted mean per joint, then the
               mean over actions (as P1 is averaged)
  pck_curve    {"thresholds_mm": [0, 5, ..., 150], method: [3DPCK %]}: 3DPCK at each
               threshold (all 17 joints, strict <), the mean over actions; its value at 150 mm
               is the 3DPCK table's mean, and its mean over thresholds the AUC's
  calibration  the non-root joints sorted by predicted sigma into equal-count bins: per bin the
               mean sigma ("sigma_mm"), mean error ("error_mm"), RMS error ("rms_error_mm") and
               joint count ("count"); the error is that of the pose sigma belongs to (coarse)

Methods: "tgt" is the lifter's (coarse) pose, "refined" the deployed refined pose of a refining
predict (GPC, e2e).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gentg_jax import metrics, skeleton

SequenceKey = tuple[str, str, str]
CALIBRATION_BINS = 10


def _joint_errors(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """method -> (N, 17) per-joint errors in metres of one stitched sequence."""
    deployed = np.linalg.norm(
        np.asarray(values["joints_3d"], np.float64) - np.asarray(values["target"], np.float64),
        axis=-1,
    )
    if "kept_count" in values and "joint_error" in values:  # refining: joint_error is coarse
        return {"tgt": np.asarray(values["joint_error"], np.float64), "refined": deployed}
    return {"tgt": deployed}


def _by_action(sequences: Mapping[SequenceKey, Mapping[str, np.ndarray]]) -> dict:
    """action -> method -> (N, 17) errors pooled over the action's sequences."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    for (_, action, _), values in sequences.items():
        methods = pooled.setdefault(metrics.action_name(action), {})
        for method, errors in _joint_errors(values).items():
            methods.setdefault(method, []).append(errors)
    return {
        action: {method: np.concatenate(parts) for method, parts in methods.items()}
        for action, methods in pooled.items()
    }


def _pck(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Percent of the errors strictly below each threshold."""
    ordered = np.sort(errors.ravel())
    return 100.0 * np.searchsorted(ordered, thresholds, side="left") / ordered.size


def calibration_bins(
    sigma: np.ndarray, error: np.ndarray, num_bins: int = CALIBRATION_BINS
) -> dict[str, list[float]]:
    """Equal-count bins of (..., 17) sigma and error (metres) over the non-root joints, in mm."""
    non_root = np.arange(skeleton.NUM_JOINTS) != skeleton.ROOT
    sigma = 1e3 * np.asarray(sigma, np.float64)[..., non_root].ravel()
    error = 1e3 * np.asarray(error, np.float64)[..., non_root].ravel()
    bins = [b for b in np.array_split(np.argsort(sigma, kind="stable"), num_bins) if len(b)]
    return {
        "sigma_mm": [float(sigma[b].mean()) for b in bins],
        "error_mm": [float(error[b].mean()) for b in bins],
        "rms_error_mm": [float(np.sqrt(np.mean(error[b] ** 2))) for b in bins],
        "count": [len(b) for b in bins],
    }


def evaluation_curves(
    sequences: Mapping[SequenceKey, Mapping[str, np.ndarray]],
) -> dict[str, dict[str, list[float]]]:
    """{"per_joint", "pck_curve", and with a predicted sigma "calibration"} (module docstring)."""
    actions = _by_action(sequences)
    methods = list(next(iter(actions.values())))
    thresholds = np.asarray(metrics.AUC_THRESHOLDS, np.float64)
    per_joint, pck = {}, {"thresholds_mm": [float(t) for t in 1e3 * thresholds]}
    for method in methods:
        joint_means = np.mean([a[method].mean(axis=0) for a in actions.values()], axis=0)
        per_joint[method] = [float(v) for v in 1e3 * joint_means]
        curve = np.mean([_pck(a[method], thresholds) for a in actions.values()], axis=0)
        pck[method] = [float(v) for v in curve]
    curves = {"per_joint": per_joint, "pck_curve": pck}
    values = list(sequences.values())
    if "sigma" in values[0] and "joint_error" in values[0]:
        curves["calibration"] = calibration_bins(
            np.concatenate([v["sigma"] for v in values]),
            np.concatenate([v["joint_error"] for v in values]),
        )
    return curves
