"""Evaluation over test windows: predictions and per-frame metrics on device, then the protocol
tables of the stitched sequences.

The prediction is a task's `predict`, i.e. `gentg_jax.predict`'s recipe (test-time flip
averaging included), so the evaluated numbers are those inference returns. Per-frame metrics
are computed on device next to it; `tables` stitches the counted frames back into sequences and
builds the per-action tables, and `report` writes them. Every process evaluates all windows on
its local devices; process 0 writes files.

A predict that refines (GPC, e2e: it returns 'coarse_3d', 'refined_*' and 'resample_mask') also
gets refinement tables (the deployable aggregate, 'joints_3d', is marked).
"""

import functools
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gentg_jax import logs, metrics
from gentg_jax.data import pipeline
from gentg_jax.evaluation.curves import evaluation_curves
from gentg_jax.evaluation.tables import (
    AGGREGATES,
    SUMMARY_KEYS,
    Collector,
    EvalResult,
    correlation_table,
    protocol_tables,
    refinement_tables,
    resampling_sums,
    sigma_calibration_slope,
    sigma_correlation_ceiling,
    sigma_error_correlation,
)
from gentg_jax.types import Batch, PyTree

PredictFn = Callable[[PyTree, Mapping[str, jax.Array]], Mapping[str, jax.Array]]


def eval_outputs(params: PyTree, batch: Mapping[str, jax.Array], *, predict: PredictFn):
    """Predictions and per-frame metrics of one device batch (pure; jit it)."""
    outputs = dict(predict(params, batch))
    refines = "resample_mask" in outputs
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
def _compiled_eval(predict: PredictFn):
    """(jitted eval_outputs over this process's devices, params sharding, device count).

    Cached so that periodic evaluations in a training run reuse one compiled program.
    """
    mesh = Mesh(np.asarray(jax.local_devices()), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    step = jax.jit(
        functools.partial(eval_outputs, predict=predict),
        in_shardings=(replicated, sharded),
        out_shardings=sharded,
    )
    return step, replicated, mesh.size


def evaluate(
    predict: PredictFn,
    params: PyTree,
    batches: Iterable[Batch],
    *,
    deployable: str | None = None,
    num_windows: int | None = None,
    split_actions: int | None = None,
) -> EvalResult:
    """Evaluates `predict` (e.g. `task.predict`) over evaluation batches.

    Args:
      predict: pure `(params, device_batch) -> {'joints_3d', optional 'log_sigma'}`; a refining
        predict also returns 'coarse_3d', 'refined_h1', 'refined_mean', 'refined_reproj' and
        'resample_mask' (`gentg_jax.predict`'s output dict).
      params: host or device parameters (replicated onto this process's devices).
      batches: `pipeline.eval_batches` output (with metadata and frame_mask).
      deployable: the refinement aggregate that 'joints_3d' is, for marking it in the tables.
      num_windows: how many windows the batches hold (the progress bar's total), if known.
      split_actions: how many actions the whole split has, when `batches` covers a subset.

    Returns:
      The protocol tables and summary (and refinement tables for a refining predict).
    """
    step, replicated, num_devices = _compiled_eval(predict)
    params = jax.device_put(params, replicated)
    collector = Collector()
    bar = logs.progress(
        desc="evaluate",
        total=num_windows,
        unit="window",
        leave=False,
        enabled=jax.process_index() == 0,
    )
    for batch in batches:
        bar.update(int(np.any(np.asarray(batch["frame_mask"]) > 0, axis=1).sum()))
        inputs = _pad_rows({k: np.asarray(batch[k]) for k in pipeline.DEVICE_KEYS}, num_devices)
        rows = len(batch["frame_mask"])
        result = {k: v[:rows] for k, v in jax.device_get(step(params, inputs)).items()}
        resampling_sums(result, batch["pose_3d"])
        collector.add(batch, result)
    bar.close()
    sequences = collector.sequences()
    tables = protocol_tables(sequences)
    summary = {SUMMARY_KEYS[name]: table.mean for name, table in tables.items()}
    summary["num_frames"] = float(sum(len(v["frame"]) for v in sequences.values()))
    summary["num_actions"] = float(len(tables["P1"].actions))
    correlation = correlation_table(sequences)
    if correlation is not None:
        values = list(sequences.values())
        sigma = np.concatenate([v["sigma"] for v in values])
        error = np.concatenate([v["joint_error"] for v in values])
        summary["sigma_error_corr"] = sigma_error_correlation(sigma, error)
        summary["sigma_error_slope"] = sigma_calibration_slope(sigma, error)
        summary["sigma_corr_ceiling"] = sigma_correlation_ceiling(sigma)
    refinement, refinement_summary = refinement_tables(sequences)
    return EvalResult(
        tables=tables,
        summary={**summary, **refinement_summary},
        refinement=refinement,
        correlation=correlation,
        deployable=deployable if refinement else None,
        curves=evaluation_curves(sequences),
        split_actions=split_actions,
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def evaluate_config(
    config: ml_collections.ConfigDict, predict: PredictFn, params: PyTree
) -> EvalResult:
    """Evaluates `predict` on `config.eval.split` of `config.data.name` (at most
    `config.eval.max_windows` windows of whole sequences when > 0). The deployable refinement
    aggregate is config.refine.aggregation when the config has one."""
    split = pipeline.load_sequences(config.data.name, config.data.data_dir, config.eval.split)
    sequences = pipeline.select_sequences(split, config.data.num_frames, config.eval.max_windows)
    lengths = [len(example["keypoints_2d"]) for example in sequences]
    batches = pipeline.eval_batches(
        sequences,
        num_frames=config.data.num_frames,
        batch_size=config.eval.batch_size,
        process_index=0,
        process_count=1,
    )
    deployable = config.refine.aggregation if "refine" in config else None
    return evaluate(
        predict,
        params,
        batches,
        deployable=deployable,
        num_windows=len(pipeline.eval_windows(lengths, config.data.num_frames)[0]),
        split_actions=len({metrics.action_name(_text(e["action"])) for e in split}),
    )
