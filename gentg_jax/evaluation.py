"""Evaluation over test windows: predictions (optionally with flip test-time augmentation) and
per-frame metrics on device, then the protocol tables of the stitched sequences.

Per-frame metrics are computed on device next to the prediction; `evaluation_tables` stitches
the counted frames back into sequences and builds the per-action tables, and `evaluation_report`
writes them (`write_tables`, re-exported here). Every process evaluates all windows on its local
devices; process 0 writes files.

A predict that refines (GPC, e2e: it returns 'coarse_3d', 'refined_*' and 'resample_mask') also
gets refinement tables (the deployable aggregate, 'joints_3d', is marked). Such a predict applies
flip averaging itself (to the coarse pose) and is evaluated with flip=False.
"""

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gentg_jax import metrics, skeleton
from gentg_jax.data import pipeline
from gentg_jax.evaluation_report import write_tables
from gentg_jax.evaluation_tables import (
    AGGREGATES,
    SUMMARY_KEYS,
    Batch,
    Collector,
    EvalResult,
    correlation_table,
    protocol_tables,
    refinement_tables,
    resampling_sums,
    sigma_error_correlation,
)

__all__ = [
    "DEVICE_KEYS",
    "EvalResult",
    "eval_outputs",
    "evaluate",
    "evaluate_config",
    "select_sequences",
    "write_tables",
]

PyTree = Any
PredictFn = Callable[[PyTree, Mapping[str, jax.Array]], Mapping[str, jax.Array]]

# The batch entries that go to devices (the rest is host-side metadata).
DEVICE_KEYS = ("keypoints_2d", "scores", "pose_3d", "intrinsics", "frame_mask")


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
        poses.update({f"{name}_": outputs[key] for key, name in AGGREGATES.values()})
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
    collector = Collector()
    for batch in batches:
        inputs = _pad_rows({k: np.asarray(batch[k]) for k in DEVICE_KEYS}, num_devices)
        rows = len(batch["frame_mask"])
        result = {k: v[:rows] for k, v in jax.device_get(step(params, inputs)).items()}
        resampling_sums(result, batch["pose_3d"])
        collector.add(batch, result)
    sequences = collector.sequences()
    tables = protocol_tables(sequences)
    summary = {SUMMARY_KEYS[name]: table.mean for name, table in tables.items()}
    summary["num_frames"] = float(sum(len(v["frame"]) for v in sequences.values()))
    correlation = correlation_table(sequences)
    if correlation is not None:
        values = list(sequences.values())
        sigma = np.concatenate([v["sigma"].ravel() for v in values])
        summary["sigma_error_corr"] = sigma_error_correlation(
            sigma, np.concatenate([v["joint_error"].ravel() for v in values])
        )
    refinement, refinement_summary = refinement_tables(sequences)
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
