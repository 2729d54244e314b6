"""Evaluation over test windows: predictions (optionally with flip test-time augmentation),
stitching back into sequences, and the Human3.6M per-action tables.

Per-frame metrics are computed on device next to the prediction; the host collects the frames
each window counts (frame_mask), puts them back in sequence order and pools them per action with
`metrics.protocol_table`. The velocity error needs whole sequences and is computed after
stitching. Every process evaluates all windows on its local devices; process 0 writes files.
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

from gentg_jax import metrics, skeleton
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
# The batch entries that go to devices (the rest is host-side metadata).
DEVICE_KEYS = ("keypoints_2d", "scores", "pose_3d", "intrinsics", "frame_mask")


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Protocol tables (mm; PCK/AUC in percent) and the headline numbers.

    Attributes:
      tables: metric name ("P1", "P2", "N-MPJPE", "MPJVE", "3DPCK", "AUC") -> ProtocolTable.
      summary: lower-case name -> the mean over actions, plus `num_frames` and, when the model
        predicts uncertainty, `sigma_error_corr` (Pearson correlation of per-joint sigma and
        per-joint error over all evaluated joints).
    """

    tables: dict[str, metrics.ProtocolTable]
    summary: dict[str, float]


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
    if flip:
        outputs = _average_flip(outputs, dict(predict(params, pipeline.flip_batch(batch))))
    pred, target = outputs["joints_3d"], batch["pose_3d"]
    result = {
        "joints_3d": pred,
        "p1": metrics.mpjpe(pred, target),
        "p2": metrics.p_mpjpe(pred, target),
        "n_mpjpe": metrics.n_mpjpe(pred, target),
        "pck3d": metrics.pck3d(pred, target),
        "auc": metrics.auc(pred, target),
    }
    if "log_sigma" in outputs:
        result["joint_error"] = metrics.joint_errors(pred, target)
        result["sigma"] = jnp.exp(outputs["log_sigma"])
    return result


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


def _sigma_error_corr(sequences: dict[SequenceKey, dict[str, np.ndarray]]) -> float | None:
    values = list(sequences.values())
    if "sigma" not in values[0]:
        return None
    sigma = np.concatenate([v["sigma"].ravel() for v in values]).astype(np.float64)
    error = np.concatenate([v["joint_error"].ravel() for v in values]).astype(np.float64)
    if sigma.std() == 0 or error.std() == 0:
        return 0.0
    return float(np.corrcoef(sigma, error)[0, 1])


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
    predict: PredictFn, params: PyTree, batches: Iterable[Batch], *, flip: bool = True
) -> EvalResult:
    """Evaluates `predict` (e.g. `task.predict`) over evaluation batches.

    Args:
      predict: pure `(params, device_batch) -> {'joints_3d', optional 'log_sigma'}`.
      params: host or device parameters (replicated onto this process's devices).
      batches: `pipeline.eval_batches` output (with metadata and frame_mask).
      flip: average with the prediction on the mirrored input (test-time augmentation).

    Returns:
      The protocol tables and summary.
    """
    step, replicated, num_devices = _compiled_eval(predict, flip)
    params = jax.device_put(params, replicated)
    collector = _Collector()
    for batch in batches:
        inputs = _pad_rows({k: np.asarray(batch[k]) for k in DEVICE_KEYS}, num_devices)
        rows = len(batch["frame_mask"])
        result = jax.device_get(step(params, inputs))
        collector.add(batch, {k: v[:rows] for k, v in result.items()})
    sequences = collector.sequences()
    tables = _tables(sequences)
    summary = {SUMMARY_KEYS[name]: table.mean for name, table in tables.items()}
    summary["num_frames"] = float(sum(len(v["frame"]) for v in sequences.values()))
    corr = _sigma_error_corr(sequences)
    if corr is not None:
        summary["sigma_error_corr"] = corr
    return EvalResult(tables=tables, summary=summary)


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
    config: ml_collections.ConfigDict, predict: PredictFn, params: PyTree
) -> EvalResult:
    """Evaluates on `config.eval.split` of `config.data.name` with the configured options."""
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, config.eval.split)
    sequences = select_sequences(sequences, config.data.num_frames, config.eval.max_windows)
    batches = pipeline.eval_batches(
        sequences,
        num_frames=config.data.num_frames,
        batch_size=config.eval.batch_size,
        process_index=0,
        process_count=1,
    )
    return evaluate(predict, params, batches, flip=config.data.test_flip)


def _atomic_write(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


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


def write_tables(
    result: EvalResult, directory: str, *, name: str = "eval", info: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Writes `<name>.json`, `<name>.csv` and `<name>.md` into `directory` (atomically).

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
    markdown = metrics.format_markdown(result.tables)
    if "sigma_error_corr" in result.summary:
        markdown += f"\nsigma-error correlation: {result.summary['sigma_error_corr']:.3f}\n"
    _atomic_write(paths["json"], json.dumps(payload, indent=2, sort_keys=True) + "\n")
    _atomic_write(paths["csv"], _csv_text(result.tables))
    _atomic_write(paths["md"], markdown)
    return {**paths, "markdown": markdown}
