"""Per-sequence accumulation of evaluated frames and the Human3.6M per-action tables.

The host collects the frames each window counts (frame_mask), puts them back in sequence order
and pools them per action with `metrics.protocol_table`. The velocity error needs whole sequences
and is computed after stitching.

A refining predict (GPC, e2e) also gets refinement tables: coarse (TGT) P1/P2, refined P1/P2 of
the first hypothesis and of both aggregates, the fraction of the 16 non-root joints resampled,
and the error of the resampled and of the kept non-root joints before and after refinement.
With a predicted sigma, its per-action correlation with the error of the pose it belongs to (the
coarse pose when refining) is tabulated too.
"""

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from gentg_jax import metrics, skeleton
from gentg_jax.types import Batch

SequenceKey = tuple[str, str, str]

# Per-frame metrics computed on device: table name -> (result key, scale to table units).
_FRAME_METRICS = {
    "P1": ("p1", 1000.0),
    "P2": ("p2", 1000.0),
    "N-MPJPE": ("n_mpjpe", 1000.0),
    "3DPCK": ("pck3d", 1.0),
    "AUC": ("auc", 1.0),
}
# Table name -> summary key (the mean over actions).
SUMMARY_KEYS = {**{name: key for name, (key, _) in _FRAME_METRICS.items()}, "MPJVE": "mpjve"}
# Refinement tables: row prefix -> (predict output, summary prefix).
AGGREGATES = {
    "Coarse": ("coarse_3d", "coarse"),
    "H=1": ("refined_h1", "h1"),
    "Mean": ("refined_mean", "mean"),
    "Reproj": ("refined_reproj", "reproj"),
}
# Pooled ratios: row -> (numerator, denominator, scale, summary key); both are summed per action
# before dividing. The summary keeps table units, except the fraction (in [0, 1]).
_RATIOS = {
    "Resampled (%)": ("resampled_count", "selectable_count", 100.0, "resampled_fraction"),
    "Resampled err before": ("resampled_before", "resampled_count", 1e3, "resampled_error_before"),
    "Resampled err after": ("resampled_after", "resampled_count", 1e3, "resampled_error_after"),
    "Kept err before": ("kept_before", "kept_count", 1e3, "kept_error_before"),
    "Kept err after": ("kept_after", "kept_count", 1e3, "kept_error_after"),
}


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Protocol tables (mm; PCK/AUC in percent) and the headline numbers.

    Attributes:
      tables: metric name ("P1", "P2", "N-MPJPE", "MPJVE", "3DPCK", "AUC") -> ProtocolTable.
      summary: lower-case name -> the mean over actions, plus `num_frames`, `num_actions` (the
        actions those means are over) and, when the model
        predicts uncertainty, `sigma_error_corr`, `sigma_error_slope` and `sigma_corr_ceiling`
        (see `sigma_error_correlation`, `sigma_calibration_slope` and
        `sigma_correlation_ceiling`: over all evaluated non-root joints). A refining predict
        adds `<agg>_p1` and `<agg>_p2` for agg in coarse, h1, mean, reproj, `resampled_fraction`
        (in [0, 1]) and
        `{resampled,kept}_error_{before,after}` (mm), each the mean over actions.
      refinement: (refining predict only) row name -> table: "<Coarse|H=1|Mean|Reproj>
        <P1|P2>" in mm, "Resampled (%)" of the non-root joints, and "<Resampled|Kept> err
        <before|after>" (mm, pooled over those joints of an action; `frames` counts joints).
      correlation: per-action Pearson correlation of sigma and error (None without sigma).
      deployable: which refinement aggregate `joints_3d` is ("mean" | "reproj"), when known.
      curves: per-joint errors, the 3DPCK curve and sigma calibration bins for plots
        (`curves.evaluation_curves`).
      split_actions: how many actions the evaluated split has (None: unknown); more than
        `summary["num_actions"]` when only a subset was evaluated (eval.max_windows).
    """

    tables: dict[str, metrics.ProtocolTable]
    summary: dict[str, float]
    refinement: dict[str, metrics.ProtocolTable] = dataclasses.field(default_factory=dict)
    correlation: metrics.ProtocolTable | None = None
    deployable: str | None = None
    curves: dict = dataclasses.field(default_factory=dict)
    split_actions: int | None = None

    @property
    def mean_label(self) -> str:
        """The mean column's label: "Avg", or "Avg (8 of 15 actions)" for part of the split."""
        covered = len(self.tables["P1"].actions) if "P1" in self.tables else None
        if self.split_actions is None or covered is None or covered >= self.split_actions:
            return "Avg"
        return f"Avg ({covered} of {self.split_actions} actions)"


def resampling_sums(result: dict[str, np.ndarray], target: np.ndarray) -> None:
    """In place: replaces a refining batch's coarse poses and resample mask by per-frame counts
    and error sums (float64, non-root joints only) of its resampled and kept joints.

    Computed in numpy so that the kept joints, which refinement returns bit-identical to the
    coarse pose, get bit-identical errors before and after.
    """
    if "resample_mask" not in result:
        return
    mask, coarse = result.pop("resample_mask"), result.pop("coarse_3d")
    target = np.asarray(target, np.float64)
    errors = {
        when: np.linalg.norm(np.asarray(pose, np.float64) - target, axis=-1)
        for when, pose in (("before", coarse), ("after", result["joints_3d"]))
    }
    non_root = np.arange(skeleton.NUM_JOINTS) != skeleton.ROOT
    for name, selected in (("resampled", mask & non_root), ("kept", ~mask & non_root)):
        result[f"{name}_count"] = selected.sum(-1).astype(np.float64)
        for when, error in errors.items():
            result[f"{name}_{when}"] = np.where(selected, error, 0.0).sum(-1)
    result["selectable_count"] = result["resampled_count"] + result["kept_count"]


class Collector:
    """Keeps the counted frames of each window, keyed by sequence, for stitching."""

    def __init__(self):
        self.keys: dict[int, SequenceKey] = {}
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, batch: Batch, result: Mapping[str, np.ndarray]) -> None:
        rows, frames = np.nonzero(np.asarray(batch["frame_mask"]) > 0)
        sequence = np.asarray(batch["sequence_index"])[rows, frames]
        for row in np.unique(rows):
            key = tuple(str(batch[k][row]) for k in ("subject", "action", "camera"))
            self.keys.setdefault(int(batch["sequence_index"][row, 0]), key)
        picked = {
            "sequence": sequence,
            "frame": np.asarray(batch["frame_index"])[rows, frames],
            "target": np.asarray(batch["pose_3d"])[rows, frames],
            **{name: np.asarray(value)[rows, frames] for name, value in result.items()},
        }
        for name, value in picked.items():
            self.parts.setdefault(name, []).append(value)

    def sequences(self) -> dict[SequenceKey, dict[str, np.ndarray]]:
        """(subject, action, camera) -> per-frame arrays in frame order."""
        if not self.parts:
            raise ValueError("evaluation saw no counted frames (empty split or all frame_mask 0)")
        flat = {name: np.concatenate(values) for name, values in self.parts.items()}
        order = np.lexsort((flat["frame"], flat["sequence"]))
        flat = {name: value[order] for name, value in flat.items()}
        bounds = np.flatnonzero(np.diff(flat["sequence"])) + 1
        out = {}
        for index in np.split(np.arange(len(order)), bounds):
            key = self.keys[int(flat["sequence"][index[0]])]
            if key in out:
                raise ValueError(f"sequence {key} appears twice in the evaluation data")
            if np.any(np.diff(flat["frame"][index]) == 0):
                raise ValueError(f"sequence {key}: a frame is counted by two windows (frame_mask)")
            out[key] = {name: value[index] for name, value in flat.items()}
        return out


def protocol_tables(
    sequences: dict[SequenceKey, dict[str, np.ndarray]],
) -> dict[str, metrics.ProtocolTable]:
    """Protocol tables in the order P1, P2, N-MPJPE, MPJVE, 3DPCK, AUC."""
    tables = {
        name: metrics.protocol_table({seq: v[key] for seq, v in sequences.items()}, scale=scale)
        for name, (key, scale) in _FRAME_METRICS.items()
    }
    # Velocities need consecutive frames: whole stitched sequences of at least two frames. The
    # formula of metrics.mpjve in numpy, so sequences of many lengths do not compile many programs.
    velocity = {
        seq: np.linalg.norm(
            np.diff(v["joints_3d"], axis=0) - np.diff(v["target"], axis=0), axis=-1
        ).mean(axis=-1)
        for seq, v in sequences.items()
        if len(v["frame"]) > 1
    }
    if velocity:
        tables["MPJVE"] = metrics.protocol_table(velocity)
    order = ("P1", "P2", "N-MPJPE", "MPJVE", "3DPCK", "AUC")
    return {name: tables[name] for name in order if name in tables}


def _non_root(values: np.ndarray) -> np.ndarray:
    """(..., 17) per-joint values -> the 16 non-root joints' values, flattened (float64): the
    root's error is 0 by construction, so it says nothing about the uncertainty."""
    values = np.asarray(values, np.float64)
    return np.delete(values, skeleton.ROOT, axis=-1).ravel()


def sigma_error_correlation(sigma: np.ndarray, error: np.ndarray) -> float:
    """Pearson correlation of per-joint sigma and error (..., 17) over the non-root joints; 0
    when either is constant."""
    sigma, error = _non_root(sigma), _non_root(error)
    if sigma.std() == 0 or error.std() == 0:
        return 0.0
    return float(np.corrcoef(sigma, error)[0, 1])


# E|x| / RMS|x| of an isotropic 3D Gaussian x: E[chi_3] / sqrt(3) = sqrt(8 / (3 pi)).
_GAUSSIAN_3D_MEAN_OVER_RMS = math.sqrt(8.0 / (3.0 * math.pi))


def sigma_correlation_ceiling(sigma: np.ndarray) -> float:
    """The sigma-error correlation a perfectly calibrated sigma (..., 17) would reach at its own
    spread, over the non-root joints; 0 when sigma is constant.

    Sigma estimates a joint's RMS error (losses.uncertainty_nll). If each joint's 3D error were
    an isotropic Gaussian with exactly that RMS, the error would be sigma * c with c independent
    of sigma, E[c] = sqrt(8 / (3 pi)) and E[c^2] = 1, so
        corr(sigma, error) = E[c] std(sigma) / sqrt(E[sigma^2] - E[c]^2 E[sigma]^2).
    The error's own randomness caps the correlation below 1: a measured correlation near this
    ceiling ranks errors as well as any sigma this spread out can; beyond it only a wider spread
    of sigma (or errors with less spread at a given sigma) raises it.
    """
    sigma = _non_root(sigma)
    if np.ptp(sigma) == 0:  # std() of a constant is rounding noise, not 0
        return 0.0
    mean_c = _GAUSSIAN_3D_MEAN_OVER_RMS
    spread = np.mean(sigma**2) - mean_c**2 * np.mean(sigma) ** 2
    return float(mean_c * sigma.std() / np.sqrt(spread))


def sigma_calibration_slope(sigma: np.ndarray, error: np.ndarray, bins: int = 10) -> float:
    """How the actual error scales with the predicted sigma (..., 17), non-root joints: joints
    are cut into `bins` equal-count bins by sigma, and the slope through the origin of the bins'
    RMS error against their RMS sigma is fitted by least squares (weights: the bin counts are
    equal). Sigma estimates the RMS error (losses.uncertainty_nll), so 1 is calibrated; above 1
    the lifter is over-confident."""
    sigma, error = _non_root(sigma), _non_root(error)
    order = np.argsort(sigma)
    parts = [p for p in np.array_split(order, min(bins, len(order))) if len(p)]
    rms_sigma = np.asarray([np.sqrt(np.mean(sigma[p] ** 2)) for p in parts])
    rms_error = np.asarray([np.sqrt(np.mean(error[p] ** 2)) for p in parts])
    denominator = float(np.sum(rms_sigma**2))
    return float(np.sum(rms_sigma * rms_error) / denominator) if denominator > 0 else 0.0


def _by_action(sequences: dict[SequenceKey, dict[str, np.ndarray]], key: str) -> dict:
    """Action label -> the sequences' `key` arrays concatenated, actions in table order."""
    pooled: dict[str, list[np.ndarray]] = {}
    for (_, action, _), values in sequences.items():
        pooled.setdefault(metrics.action_name(action), []).append(values[key])
    return {a: np.concatenate(pooled[a]) for a in sorted(pooled, key=str.lower)}


def correlation_table(
    sequences: dict[SequenceKey, dict[str, np.ndarray]],
) -> metrics.ProtocolTable | None:
    """Per-action correlation of sigma and error; `frames` counts the joints pooled."""
    if "sigma" not in next(iter(sequences.values())):
        return None
    sigma, error = _by_action(sequences, "sigma"), _by_action(sequences, "joint_error")
    actions = {a: sigma_error_correlation(sigma[a], error[a]) for a in sigma}
    frames = {a: int(sigma[a].size) for a in sigma}
    return metrics.ProtocolTable(actions, frames, float(np.mean(list(actions.values()))))


def _pooled_ratio(sequences, numerator: str, denominator: str, scale: float):
    """Per action sum(numerator) / sum(denominator) x scale, over actions whose denominator is
    positive (None when there is none); `frames` holds the denominators."""
    top, bottom = _by_action(sequences, numerator), _by_action(sequences, denominator)
    sums = {a: (float(top[a].sum()), float(bottom[a].sum())) for a in top}
    actions = {a: scale * n / d for a, (n, d) in sums.items() if d > 0}
    if not actions:
        return None
    frames = {a: int(sums[a][1]) for a in actions}
    return metrics.ProtocolTable(actions, frames, float(np.mean(list(actions.values()))))


def refinement_tables(
    sequences: dict[SequenceKey, dict[str, np.ndarray]],
) -> tuple[dict[str, metrics.ProtocolTable], dict[str, float]]:
    """(refinement tables, their summary entries); empty without refinement outputs."""
    if "kept_count" not in next(iter(sequences.values())):
        return {}, {}
    tables, summary = {}, {}
    for prefix, (_, name) in AGGREGATES.items():
        for metric in ("P1", "P2"):
            key = f"{name}_{metric.lower()}"
            table = metrics.protocol_table({seq: v[key] for seq, v in sequences.items()})
            tables[f"{prefix} {metric}"], summary[key] = table, table.mean
    for row, (numerator, denominator, scale, key) in _RATIOS.items():
        table = _pooled_ratio(sequences, numerator, denominator, scale)
        if table is not None:
            tables[row] = table
            summary[key] = table.mean / 100.0 if scale == 100.0 else table.mean
    return tables, summary
