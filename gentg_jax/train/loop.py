"""train_and_evaluate(config, workdir): the one training loop every entrypoint uses.

  init     task, data iterator, TrainState (or the latest checkpoint in the workdir)
  step     the jitted/pmapped train_step on the configured device layout
  log      metrics fetched from device at log cadence, NaN/inf check, stdout/JSONL/TensorBoard
  evaluate Human3.6M protocol on the test windows with the EMA parameters (flip TTA by default)
  save     orbax checkpoints every N steps, at every evaluation (best by P1) and at the end

A run stopped after a checkpoint and started again on the same workdir continues with the same
parameters, optimiser and EMA state, rng and data-iterator position, so it ends with exactly the
parameters of an uninterrupted run.
"""

import contextlib
import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gentg_jax import checkpoint, evaluation, logs, workdir_lock
from gentg_jax.data import pipeline
from gentg_jax.train import parallel as parallel_lib
from gentg_jax.train import registry, steps, tasks, writers
from gentg_jax.train import state as state_lib

EVAL_DIR = "eval"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the step reached and the resume point."""

    def __init__(self, step: int, checkpoint_step: int | None):
        resume = (
            f"from the checkpoint of step {checkpoint_step}"
            if checkpoint_step is not None
            else "from the start (no checkpoint yet)"
        )
        super().__init__(f"interrupted at step {step}; rerun the same command to resume ({resume})")
        self.step, self.checkpoint_step = step, checkpoint_step


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns.

    Attributes:
      state: the final TrainState as host numpy arrays.
      train_metrics: the last logged training scalars.
      eval_metrics: the last evaluation summary (P1/P2 ... in mm), empty when none ran.
    """

    state: state_lib.TrainState
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]


class _MetricBuffer:
    """Per-step metrics kept on device until log/eval/save time, then checked and averaged."""

    def __init__(self):
        self._pending: list[tuple[int, Any]] = []

    def add(self, step: int, metrics: Any) -> None:
        self._pending.append((step, metrics))

    def flush(self, parallel: parallel_lib.DataParallel) -> dict[str, float]:
        """Fetches pending metrics, raises NonFiniteError at the first bad step, returns means."""
        if not self._pending:
            return {}
        fetched = parallel.unreplicate([m for _, m in self._pending])
        rows = [writers.to_scalars(m) for m in fetched]
        for (step, _), scalars in zip(self._pending, rows, strict=True):
            writers.check_finite(scalars, step)
        self._pending = []
        return {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}


def _train_data(config: ml_collections.ConfigDict, global_batch_size: int):
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, "train")
    dataset = pipeline.train_dataset(
        sequences,
        num_frames=config.data.num_frames,
        batch_size=global_batch_size,
        seed=config.seed,
        flip_augment=config.data.flip_augment,
    )
    workers = config.data.worker_count
    if workers < 0:
        raise ValueError(f"config.data.worker_count={workers} must be >= 0")
    return dataset, pipeline.train_iterator(
        dataset, num_threads=workers, prefetch=max(2, 2 * workers)
    )


def init_state(
    config: ml_collections.ConfigDict, task: tasks.Task, sample_batch: dict[str, np.ndarray]
) -> state_lib.TrainState:
    """A fresh host-side TrainState (identical on every process: it depends on config.seed)."""
    tx = task.optimizer()

    @jax.jit
    def create(rng, batch):
        init_rng, train_rng = jax.random.split(rng)
        return state_lib.create_train_state(task.init_params(init_rng, batch), tx, train_rng)

    state = create(jax.random.PRNGKey(config.seed), pipeline.device_batch(sample_batch))
    return jax.tree.map(np.asarray, state)


def _changed_model_fields(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
    """'model.KEY: saved -> now' for each model field in which `config` differs from the
    workdir's config.json ('absent' where one side lacks the field); [] without either."""
    saved_path = os.path.join(workdir, checkpoint.CONFIG_FILE)
    if "model" not in config or not os.path.isfile(saved_path):
        return []
    with open(saved_path) as f:
        saved = json.load(f).get("model", {})
    now = checkpoint.config_to_dict(config.model)
    return [
        f"model.{key}: {saved.get(key, 'absent')} -> {now.get(key, 'absent')}"
        for key in sorted(saved.keys() | now.keys())
        if saved.get(key, "absent") != now.get(key, "absent")
    ]


def _restore(
    manager: checkpoint.CheckpointManager,
    state: state_lib.TrainState,
    iterator: Any,
    config: ml_collections.ConfigDict,
    workdir: str,
) -> state_lib.TrainState:
    """The newest intact checkpoint's state (damaged newer steps are skipped and moved aside).

    Raises:
      checkpoint.CheckpointError: no checkpoint restores into `state`; when the model config
        differs from the one the workdir was trained with (e.g. a default changed since), the
        message names the fields instead of calling the checkpoints damaged.
    """
    try:
        found = manager.restore_latest(state.to_checkpoint())
    except checkpoint.CheckpointError as error:
        changed = _changed_model_fields(config, workdir)
        if not changed:
            raise
        raise checkpoint.CheckpointError(
            f"cannot resume {workdir}: no checkpoint restores into the model the config asks "
            f"for, which differs from its config.json ({'; '.join(changed)}); pass the saved "
            "values as --config.model.KEY=VALUE to resume, or train in a new workdir"
        ) from error
    if found is None:
        return state
    step, restored, data_state = found
    logging.info("resuming from %s/%d", manager.directory, step)
    if data_state:
        iterator.set_state(data_state)
    return state.from_checkpoint(restored)


def _writer_lock(workdir: str, purpose: str) -> contextlib.AbstractContextManager:
    """The workdir's writer lock on process 0 (the one process that writes), else nothing."""
    if jax.process_index() != 0:
        return contextlib.nullcontext()
    return workdir_lock.WorkdirLock(checkpoint.workdir_of(workdir), purpose)


def _is_due(step: int, every: int, last: int) -> bool:
    """Every `every` steps and at the last step; never when `every` is 0."""
    return every > 0 and (step % every == 0 or step == last)


def _evaluate_and_save(
    run: "_Run", host_state: state_lib.TrainState, evaluate_now: bool
) -> dict[str, float]:
    """Evaluates the EMA parameters if due, then saves a checkpoint (scored by P1 if evaluated).

    Returns:
      The evaluation summary, or {} when no evaluation ran.
    """
    step = int(host_state.step)
    summary = {}
    if evaluate_now:
        result = evaluation.evaluate_config(run.config, run.task.predict, host_state.ema_params)
        summary = result.summary
        if jax.process_index() == 0:
            written = evaluation.write_tables(
                result,
                os.path.join(run.workdir, EVAL_DIR),
                name=f"step_{step:08d}",
                info={"step": step},
            )
            run.writer.write_text(step, "eval/tables", written["markdown"])
        run.writer.write(step, summary, prefix="eval/")
    run.manager.save(
        step,
        host_state.to_checkpoint(),
        config=run.config,
        data_state=run.iterator.get_state(),
        metrics={checkpoint.BEST_METRIC: summary["p1"]} if summary else None,
    )
    return summary


@dataclasses.dataclass
class _Run:
    """The pieces of one training run that the loop helpers share."""

    config: ml_collections.ConfigDict
    workdir: str
    task: tasks.Task
    parallel: parallel_lib.DataParallel
    iterator: Any
    manager: checkpoint.CheckpointManager
    writer: writers.MetricWriter
    bar: Any = None  # the progress bar of the steps (logs.progress)
    step: int = 0  # the last step taken (what an interruption reports)


def _setup(config: ml_collections.ConfigDict, workdir: str) -> tuple[_Run, state_lib.TrainState]:
    """Builds the run and its host state: fresh, or restored from the workdir's latest step."""
    task = registry.get_task(config, workdir)
    config = task.config  # as completed by the task (e2e embeds the TGT and GPC configs)
    parallel = parallel_lib.DataParallel(config.train.parallel)
    parallel.host_batch_size(config.train.batch_size)
    dataset, iterator = _train_data(config, config.train.batch_size)
    state = init_state(config, task, dataset[0])
    manager = checkpoint.CheckpointManager(
        checkpoint.checkpoint_directory(workdir), keep=config.train.keep_checkpoints
    )
    state = _restore(manager, state, iterator, config, workdir)
    if jax.process_index() == 0:
        checkpoint.save_config(workdir, config)
    logging.info("parallel=%s over %d devices", parallel.mode, parallel.num_replicas)
    writer = writers.MetricWriter(workdir, resume_step=int(state.step))
    bar = logs.progress(
        desc=f"train {config.task}",
        total=config.train.num_steps,
        initial=int(state.step),
        unit="step",
        enabled=jax.process_index() == 0,
    )
    run = _Run(config, workdir, task, parallel, iterator, manager, writer, bar, int(state.step))
    return run, state


def _train_steps(
    run: _Run, state: state_lib.TrainState
) -> tuple[state_lib.TrainState, dict[str, float], dict[str, float]]:
    """Steps from state.step to num_steps with logging, evaluation and checkpoints."""
    tc, parallel = run.config.train, run.parallel
    step_fn = parallel.compile_step(
        functools.partial(steps.train_step, task=run.task, config=run.config)
    )
    device_state = parallel.replicate(state)
    buffer, train_metrics, eval_metrics = _MetricBuffer(), {}, {}
    step = int(state.step)
    progress, bar = writers.Progress(tc.num_steps, step), run.bar
    while step < tc.num_steps:
        batch = parallel.shard_batch(pipeline.device_batch(next(run.iterator)))
        device_state, metrics = step_fn(device_state, batch)
        if step == int(state.step):
            bar.unpause()  # the bar's rate leaves out the first call's compilation
        step += 1
        run.step = step
        bar.update()
        buffer.add(step, metrics)
        if _is_due(step, tc.log_every, tc.num_steps):
            train_metrics = {**buffer.flush(parallel), **progress.update(step)}
            # With a bar on the terminal the scalars go to the bar, metrics.jsonl and TB only.
            run.writer.write(step, train_metrics, prefix="train/", echo=not logs.shown(bar))
            bar.set_postfix(loss=f"{train_metrics['loss']:.4g}", refresh=False)
        evaluate_now = _is_due(step, tc.eval_every, tc.num_steps)
        save_now = step == tc.num_steps or _is_due(step, tc.checkpoint_every, tc.num_steps)
        if evaluate_now or save_now:
            start = time.perf_counter()
            buffer.flush(parallel)  # never evaluate or save a state past a non-finite step
            host_state = state.from_checkpoint(parallel.unreplicate(device_state.to_checkpoint()))
            eval_metrics = _evaluate_and_save(run, host_state, evaluate_now) or eval_metrics
            progress.exclude(time.perf_counter() - start)
            bar.unpause()
    final = state.from_checkpoint(parallel.unreplicate(device_state.to_checkpoint()))
    return final, train_metrics, eval_metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains `config.task` for `config.train.num_steps` steps in `workdir` (resuming there).

    Holds the writer lock (`workdir_lock.WorkdirLock`) throughout: a second run on the same
    workdir is refused at once, naming the first.

    Returns:
      The final host state and the last training and evaluation metrics.

    Raises:
      NonFiniteError: a training metric became NaN or inf (the message names the step).
      Interrupted: Ctrl-C (a KeyboardInterrupt whose message says where a rerun resumes).
      WorkdirLockedError: another process is writing to the workdir.
    """
    with _writer_lock(workdir, f"training {config.get('task', 'tgt')}"):
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    run, state = _setup(config, workdir)
    try:
        state, train_metrics, eval_metrics = _train_steps(run, state)
    except KeyboardInterrupt:
        run.manager.wait()  # a checkpoint being written is finished first
        raise Interrupted(run.step, run.manager.latest_step()) from None
    finally:
        run.bar.close()
        run.manager.wait()
        run.manager.close()
        run.writer.close()
    return TrainResult(state=state, train_metrics=train_metrics, eval_metrics=eval_metrics)


def evaluate_checkpoint(
    workdir: str,
    *,
    step: int | str | None = "best",
    config: ml_collections.ConfigDict | None = None,
    tgt_workdir: str | None = None,
    allow_tgt_mismatch: bool = False,
) -> tuple[evaluation.EvalResult, dict[str, str]]:
    """Evaluates a saved checkpoint and writes its tables to `<workdir>/eval/`.

    Holds the workdir's writer lock while it runs (a training run on it refuses this).

    Args:
      workdir: a training workdir.
      step: an int, 'latest' or 'best' (lowest P1; the latest when none was evaluated); a
        damaged latest (best) step is skipped for the next intact one, with a warning.
      config: overrides the config saved with the checkpoint (e.g. another split or data_dir).
      tgt_workdir: a GPC's TGT, instead of the one `checkpoint.paired_tgt_workdir` finds (a GPC
        trained without a TGT and no tgt_workdir refines simulated coarse poses); it is still
        checked against the TGT the GPC was trained on.
      allow_tgt_mismatch: evaluate a GPC with a TGT other than the one it was trained on.

    Returns:
      The result and the written paths ({"json", "csv", "md", "markdown"}; the tables are
      written by process 0 only, other processes get {}).
    """
    with _writer_lock(workdir, "evaluation"):
        return _evaluate(workdir, step, config, tgt_workdir, allow_tgt_mismatch)


def _evaluate(workdir, step, config, tgt_workdir, allow_tgt_mismatch):
    try:
        restored = checkpoint.load_params(workdir, step, ema=True)
    except FileNotFoundError:
        if step != "best":
            raise
        restored = checkpoint.load_params(workdir, "latest", ema=True)  # none was evaluated
    resolved, saved_config, params = restored
    config = ml_collections.ConfigDict((config if config is not None else saved_config).to_dict())
    if config.task == "gpc":
        if saved_config.get("tgt_provenance") and not config.get("tgt_provenance"):
            config.tgt_provenance = saved_config.tgt_provenance  # a config given without it
        config.allow_tgt_mismatch = bool(allow_tgt_mismatch)
    if config.task == "gpc" and (tgt_workdir or config.tgt_workdir):
        config.tgt_workdir = str(checkpoint.paired_tgt_workdir(workdir, config, tgt_workdir))
    task = registry.get_task(config)
    result = evaluation.evaluate_config(task.config, task.predict, params)
    written = {}
    if jax.process_index() == 0:
        info = {
            "step": resolved,
            "workdir": os.path.abspath(workdir),
            "flip": config.data.test_flip,
        }
        written = evaluation.write_tables(
            result, os.path.join(workdir, EVAL_DIR), name="eval", info=info
        )
    return result, written
