"""Evaluation over test windows: predictions (optionally with flip test-time augmentation),
stitching back into sequences, and the Human3.6M per-action tables.

Per-frame metrics are computed on device next to the prediction; the host collects the frames
each window counts (frame_mask), puts them back in sequence order and pools them per action with
`metrics.protocol_table`. The velocity error needs whole sequences and is computed after
stitching. Every process evaluates all windows on its local devices; process 0 writes files.

A predict that refines (GPC, e2e: it returns 'coarse_3d', 'refined_*' and 'resample_mask') also
gets refinement tables: coarse (TGT) P1/P2, refined P1/P2 of the first hypothesis and of both
aggregates (the deployable one, 'joints_3d', is marked), the fraction of the 16 non-root joints
resampled, and the error of the resampled and of the kept non-root joints before and after
refinement. Such a predict applies flip averaging itself (to the coarse pose) and is evaluated
with flip=False. With a predicted sigma, its per-action correlation with the error of the pose
it belongs to (the coarse pose when refining) is tabulated too.
"""

import csv
import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gentg_jax import files, metrics, skeleton
from gentg_jax.data import pipeline

PyTree = Any
Batch = Mapping[str, np.ndarray]
PredictFn = Callable[[PyTree, Mapping[str, jax.Array]], Mapping[str, jax.Array]]
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
_AGGREGATES = {
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
CORRELATION = "Sigma-error corr"
# The batch entries that go to devices (the rest is host-side metadata).
DEVICE_KEYS = ("keypoints_2d", "scores", "pose_3d", "intrinsics", "frame_mask")


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Protocol tables (mm; PCK/AUC in percent) and the headline numbers.

    Attributes:
      tables: metric name ("P1", "P2", "N-MPJPE", "MPJVE", "3DPCK", "AUC") -> ProtocolTable.
      summary: lower-case name -> the mean over actions, plus `num_frames` and, when the model
        predicts uncertainty, `sigma_error_corr` (Pearson correlation of per-joint sigma and
        per-joint error over all evaluated joints). A refining predict adds `<agg>_p1` and
        `<agg>_p2` for agg in coarse, h1, mean, reproj, `resampled_fraction` (in [0, 1]) and
        `{resampled,kept}_error_{before,after}` (mm), each the mean over actions.
      refinement: (refining predict only) row name -> table: "<Coarse|H=1|Mean|Reproj>
        <P1|P2>" in mm, "Resampled (%)" of the non-root joints, and "<Resampled|Kept> err
        <before|after>" (mm, pooled over those joints of an action; `frames` counts joints).
      correlation: per-action Pearson correlation of sigma and error (None without sigma).
      deployable: which refinement aggregate `joints_3d` is ("mean" | "reproj"), when known.
    """

    tables: dict[str, metrics.ProtocolTable]
    summary: dict[str, float]
    refinement: dict[str, metrics.ProtocolTable] = dataclasses.field(default_factory=dict)
    correlation: metrics.ProtocolTable | None = None
    deployable: str | None = None


def _average_flip(outputs: dict, flipped: dict) -> dict:
    """Averages predictions on the input and (mirrored back) on its left-right mirror."""
    merged = {"joints_3d": 0.5 * (outputs["joints_3d"] + pipeline.flip_poses(flipped["joints_3d"]))}
    if "log_sigma" in outputs:
        unflipped = flipped["log_sigma"][..., skeleton.FLIP_PERMUTATION]
        merged["log_sigma"] = 0.5 * (outputs["log_sigma"] + unflipped)
    return merged


def eval_outputs(params: PyTree, batch: Mapping[str, jax.Array], *, predict: PredictFn, flip: bool):
    """Predictions and per-frame metrics of one device batch (pure; jit it)."""
    outputs = dict(predict(params, batch))
    refines = "resample_mask" in outputs
    if flip and refines:
        raise ValueError(
            "this predict refines its coarse pose and applies test-time flip itself; "
            "evaluate it with flip=False (task.evaluation_flip)"
        )
    if flip:
        outputs = _average_flip(outputs, dict(predict(params, pipeline.flip_batch(batch))))
    pred, target = outputs["joints_3d"], batch["pose_3d"]
    poses = {"": pred}
    if refines:
        poses.update({f"{name}_": outputs[key] for key, name in _AGGREGATES.values()})
    # All Procrustes alignments in one batched SVD: XLA:CPU runs independent LAPACK SVD calls
    # concurrently, and two of them can deadlock jaxlib's thread pool on a 2-core machine.
    stacked = jnp.stack(list(poses.values()))
    p1 = metrics.mpjpe(stacked, jnp.broadcast_to(target, stacked.shape))
    p2 = metrics.p_mpjpe(stacked, jnp.broadcast_to(target, stacked.shape))
    result = {"joints_3d": pred}
    for index, prefix in enumerate(poses):
        result[f"{prefix}p1"], result[f"{prefix}p2"] = p1[index], p2[index]
    result.update(
        n_mpjpe=metrics.n_mpjpe(pred, target),
        pck3d=metrics.pck3d(pred, target),
        auc=metrics.auc(pred, target),
    )
    if "log_sigma" in outputs:
        # Sigma is the lifter's: it predicts the error of the coarse pose.
        result["joint_error"] = metrics.joint_errors(outputs.get("coarse_3d", pred), target)
        result["sigma"] = jnp.exp(outputs["log_sigma"])
    if refines:
        result["coarse_3d"] = outputs["coarse_3d"]
        result["resample_mask"] = outputs["resample_mask"]
    return result


def _resampling_sums(result: dict[str, np.ndarray], target: np.ndarray) -> None:
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


class _Collector:
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


def _tables(
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


def _correlation(sigma: np.ndarray, error: np.ndarray) -> float:
    sigma, error = np.asarray(sigma, np.float64).ravel(), np.asarray(error, np.float64).ravel()
    if sigma.std() == 0 or error.std() == 0:
        return 0.0
    return float(np.corrcoef(sigma, error)[0, 1])


def _by_action(sequences: dict[SequenceKey, dict[str, np.ndarray]], key: str) -> dict:
    """Action label -> the sequences' `key` arrays concatenated, actions in table order."""
    pooled: dict[str, list[np.ndarray]] = {}
    for (_, action, _), values in sequences.items():
        pooled.setdefault(metrics.action_name(action), []).append(values[key])
    return {a: np.concatenate(pooled[a]) for a in sorted(pooled, key=str.lower)}


def _correlation_table(
    sequences: dict[SequenceKey, dict[str, np.ndarray]],
) -> metrics.ProtocolTable | None:
    """Per-action correlation of sigma and error; `frames` counts the joints pooled."""
    if "sigma" not in next(iter(sequences.values())):
        return None
    sigma, error = _by_action(sequences, "sigma"), _by_action(sequences, "joint_error")
    actions = {a: _correlation(sigma[a], error[a]) for a in sigma}
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


def _refinement_tables(
    sequences: dict[SequenceKey, dict[str, np.ndarray]],
) -> tuple[dict[str, metrics.ProtocolTable], dict[str, float]]:
    """(refinement tables, their summary entries); empty without refinement outputs."""
    if "kept_count" not in next(iter(sequences.values())):
        return {}, {}
    tables, summary = {}, {}
    for prefix, (_, name) in _AGGREGATES.items():
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


def _pad_rows(batch: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    # Rows added to fill every local device count nothing: their frame_mask is 0.
    rows = next(iter(batch.values())).shape[0]
    extra = -rows % multiple
    if not extra:
        return batch
    padded = {k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)]) for k, v in batch.items()}
    padded["frame_mask"][rows:] = 0
    return padded


@functools.lru_cache(maxsize=8)
def _compiled_eval(predict: PredictFn, flip: bool):
    """(jitted eval_outputs over this process's devices, params sharding, device count).

    Cached so that periodic evaluations in a training run reuse one compiled program.
    """
    mesh = Mesh(np.asarray(jax.local_devices()), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    step = jax.jit(
        functools.partial(eval_outputs, predict=predict, flip=flip),
        in_shardings=(replicated, sharded),
        out_shardings=sharded,
    )
    return step, replicated, mesh.size


def evaluate(
    predict: PredictFn,
    params: PyTree,
    batches: Iterable[Batch],
    *,
    flip: bool = True,
    deployable: str | None = None,
) -> EvalResult:
    """Evaluates `predict` (e.g. `task.predict`) over evaluation batches.

    Args:
      predict: pure `(params, device_batch) -> {'joints_3d', optional 'log_sigma'}`; a refining
        predict also returns 'coarse_3d', 'refined_h1', 'refined_mean', 'refined_reproj' and
        'resample_mask' (see gentg_jax.train.gpc_tasks.refine_outputs).
      params: host or device parameters (replicated onto this process's devices).
      batches: `pipeline.eval_batches` output (with metadata and frame_mask).
      flip: average with the prediction on the mirrored input (test-time augmentation); must
        be False for a refining predict, which flips its coarse pose itself.
      deployable: the refinement aggregate that 'joints_3d' is, for marking it in the tables.

    Returns:
      The protocol tables and summary (and refinement tables for a refining predict).
    """
    step, replicated, num_devices = _compiled_eval(predict, flip)
    params = jax.device_put(params, replicated)
    collector = _Collector()
    for batch in batches:
        inputs = _pad_rows({k: np.asarray(batch[k]) for k in DEVICE_KEYS}, num_devices)
        rows = len(batch["frame_mask"])
        result = {k: v[:rows] for k, v in jax.device_get(step(params, inputs)).items()}
        _resampling_sums(result, batch["pose_3d"])
        collector.add(batch, result)
    sequences = collector.sequences()
    tables = _tables(sequences)
    summary = {SUMMARY_KEYS[name]: table.mean for name, table in tables.items()}
    summary["num_frames"] = float(sum(len(v["frame"]) for v in sequences.values()))
    correlation = _correlation_table(sequences)
    if correlation is not None:
        values = list(sequences.values())
        sigma = np.concatenate([v["sigma"].ravel() for v in values])
        summary["sigma_error_corr"] = _correlation(
            sigma, np.concatenate([v["joint_error"].ravel() for v in values])
        )
    refinement, refinement_summary = _refinement_tables(sequences)
    return EvalResult(
        tables=tables,
        summary={**summary, **refinement_summary},
        refinement=refinement,
        correlation=correlation,
        deployable=deployable if refinement else None,
    )


def select_sequences(
    sequences: Sequence[Mapping[str, Any]], num_frames: int, max_windows: int
) -> list[Mapping[str, Any]]:
    """A deterministic subset of whole sequences with at most `max_windows` windows in total
    (at least one sequence), taken round-robin over actions so every action is represented."""
    if max_windows <= 0:
        return list(sequences)
    by_action: dict[str, list[Mapping[str, Any]]] = {}
    for example in sequences:
        action = example["action"]
        action = metrics.action_name(action.decode() if isinstance(action, bytes) else str(action))
        by_action.setdefault(action, []).append(example)
    queues = [by_action[name] for name in sorted(by_action)]
    ordered = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    chosen, total = [], 0
    for example in ordered:
        windows = len(pipeline.eval_windows([len(example["keypoints_2d"])], num_frames)[0])
        if chosen and total + windows > max_windows:
            continue
        chosen.append(example)
        total += windows
    return chosen


def evaluate_config(
    config: ml_collections.ConfigDict,
    predict: PredictFn,
    params: PyTree,
    *,
    flip: bool | None = None,
) -> EvalResult:
    """Evaluates on `config.eval.split` of `config.data.name` with the configured options.

    `flip` defaults to config.data.test_flip; pass task.evaluation_flip for a task's predict.
    The deployable refinement aggregate is config.refine.aggregation when the config has one.
    """
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, config.eval.split)
    sequences = select_sequences(sequences, config.data.num_frames, config.eval.max_windows)
    batches = pipeline.eval_batches(
        sequences,
        num_frames=config.data.num_frames,
        batch_size=config.eval.batch_size,
        process_index=0,
        process_count=1,
    )
    flip = config.data.test_flip if flip is None else flip
    deployable = config.refine.aggregation if "refine" in config else None
    return evaluate(predict, params, batches, flip=flip, deployable=deployable)


def _csv_text(tables: Mapping[str, metrics.ProtocolTable]) -> str:
    actions = sorted({a for t in tables.values() for a in t.actions}, key=str.lower)
    lines = [["metric", *actions, "Avg"]]
    for name, table in tables.items():
        cells = [f"{table.actions[a]:.4f}" if a in table.actions else "" for a in actions]
        lines.append([name, *cells, f"{table.mean:.4f}"])
    with tempfile.TemporaryFile("w+", newline="") as f:
        csv.writer(f).writerows(lines)
        f.seek(0)
        return f.read()


def _markdown(result: EvalResult) -> str:
    """The protocol table, then the refinement and correlation tables when present."""
    markdown = metrics.format_markdown(result.tables)
    if result.refinement:
        deployed = next((p for p, (_, n) in _AGGREGATES.items() if n == result.deployable), None)
        rows = {
            f"{name} (deployed)" if deployed and name.startswith(f"{deployed} ") else name: table
            for name, table in result.refinement.items()
        }
        markdown += (
            "\nRefinement (mm; Resampled in % of the 16 non-root joints; errors over the "
            "resampled / kept non-root joints; the deployed aggregate is the P1/P2 above):\n\n"
            + metrics.format_markdown(rows)
        )
    if result.correlation is not None:
        markdown += "\n" + metrics.format_markdown({CORRELATION: result.correlation}, digits=3)
    if "sigma_error_corr" in result.summary:
        markdown += f"\nsigma-error correlation: {result.summary['sigma_error_corr']:.3f}\n"
    return markdown


def write_tables(
    result: EvalResult, directory: str, *, name: str = "eval", info: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Writes `<name>.json`, `<name>.csv` and `<name>.md` into `directory` (atomically).

    The JSON holds everything; the CSV the protocol rows and, for a refining predict, the
    refinement and correlation rows; the Markdown all tables.

    Returns:
      {"json": path, "csv": path, "md": path, "markdown": the Markdown text}.
    """
    os.makedirs(directory, exist_ok=True)
    paths = {ext: os.path.join(directory, f"{name}.{ext}") for ext in ("json", "csv", "md")}
    payload = {
        **dict(info or {}),
        "units": "P1/P2/N-MPJPE in mm, MPJVE in mm/frame, 3DPCK@150mm and AUC in percent",
        "summary": result.summary,
        "tables": {metric: table.as_dict() for metric, table in result.tables.items()},
    }
    csv_tables = dict(result.tables)
    if result.correlation is not None:
        payload["correlation"] = result.correlation.as_dict()
    if result.refinement:
        payload["refinement"] = {row: table.as_dict() for row, table in result.refinement.items()}
        payload["deployable"] = result.deployable
        csv_tables.update(result.refinement)
        if result.correlation is not None:
            csv_tables[CORRELATION] = result.correlation
    markdown = _markdown(result)
    files.write_text(paths["json"], json.dumps(payload, indent=2, sort_keys=True) + "\n")
    files.write_text(paths["csv"], _csv_text(csv_tables))
    files.write_text(paths["md"], markdown)
    return {**paths, "markdown": markdown}
