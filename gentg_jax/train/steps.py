"""Pure, module-level steps. Bind `task`/`config` with functools.partial; apply jax.jit or
jax.pmap at the call site (gentg_jax.train.parallel does this for every layout)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import lax

from gentg_jax.train import state as state_lib
from gentg_jax.train import tasks as tasks_lib
from gentg_jax.types import Batch

Metrics = dict[str, jax.Array]


def train_step(
    state: state_lib.TrainState,
    batch: Batch,
    *,
    task: tasks_lib.Task,
    config: ml_collections.ConfigDict,
    axis_name: str | None = None,
    data_shards: int = 1,
) -> tuple[state_lib.TrainState, Metrics]:
    """One optimiser step on `batch`; under pmap, gradients are averaged over `axis_name`.

    The loss is a mean over the counted frames of the (per-device) batch, so each device's
    gradient and metrics are weighted by its share of the counted frames before the average
    (`device_weight`): the global-batch gradient, as the single-device and sharded-jit steps
    compute it. `config.train.micro_batch_size` accumulates it over micro-batches
    (`loss_and_grads`); `data_shards` > 1: `batch` is the global batch of the sharded layout,
    made of that many devices' contiguous parts.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name:
        # Different dropout masks per device; the global-batch result is unaffected when the
        # model has no dropout.
        rng = jax.random.fold_in(rng, lax.axis_index(axis_name))

    micro_batch = config.train.get("micro_batch_size", 0)
    (loss, metrics), grads = loss_and_grads(
        task, state.params, batch, rng, micro_batch, data_shards
    )
    metrics = {**metrics, "loss": loss}
    if axis_name:
        weight = device_weight(batch, axis_name)
        grads = lax.pmean(jax.tree.map(lambda g: weight * g, grads), axis_name)
        metrics = lax.pmean(jax.tree.map(lambda m: weight * m, metrics), axis_name)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["learning_rate"] = state_lib.learning_rate_schedule(config.train)(state.step)
    new_state = state.apply_gradients(grads, config.train.ema_decay)
    return new_state, {name: jnp.asarray(value, jnp.float32) for name, value in metrics.items()}


def loss_and_grads(
    task: tasks_lib.Task,
    params: Any,
    batch: Batch,
    rng: jax.Array,
    micro_batch: int = 0,
    data_shards: int = 1,
) -> tuple[tuple[jax.Array, Metrics], Any]:
    """((loss, metrics), gradients) of the task's training loss on `batch`.

    With 0 < micro_batch < the batch size, the batch is cut into micro-batches of that many
    windows, processed one after another (lax.scan), and their losses, metrics and gradients
    averaged with weights proportional to their counted frames (`micro_batch_weights`): the
    whole-batch result for the activation memory of one micro-batch. Micro-batch i draws its
    dropout with fold_in(rng, i). When `batch` is made of `data_shards` devices' contiguous
    parts (a sharded global batch), micro_batch counts windows per part and micro-batch i takes
    the i-th micro_batch windows of every part, so that each device keeps working on its own.
    """

    def loss_fn(params, batch, rng):
        return task.loss_fn(params, batch, rng, True)

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
    size = jax.tree.leaves(batch)[0].shape[0] // data_shards
    if not 0 < micro_batch < size:
        return value_and_grad(params, batch, rng)
    if size % micro_batch:
        raise ValueError(
            f"config.train.micro_batch_size={micro_batch} does not divide the per-device batch "
            f"of {size} windows"
        )
    count = size // micro_batch

    def to_chunks(x):
        x = x.reshape(data_shards, count, micro_batch, *x.shape[1:]).swapaxes(0, 1)
        return x.reshape(count, data_shards * micro_batch, *x.shape[3:])

    chunks = jax.tree.map(to_chunks, batch)
    weights = micro_batch_weights(chunks)

    def accumulate(total, inputs):
        index, weight, chunk = inputs
        result = value_and_grad(params, chunk, jax.random.fold_in(rng, index))
        return jax.tree.map(lambda t, r: t + weight * r, total, result), None

    first = jax.tree.map(lambda x: x[0], chunks)
    zeros = jax.tree.map(
        lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(value_and_grad, params, first, rng)
    )
    total, _ = lax.scan(accumulate, zeros, (jnp.arange(count), weights, chunks))
    return total


def _counted_frames(batch: Batch, leading_axes: int) -> jax.Array | None:
    """Counted frames per index of the `leading_axes` leading axes; None without frame_mask."""
    if "frame_mask" not in batch:
        return None
    mask = batch["frame_mask"]
    return jnp.sum(mask.reshape(*mask.shape[:leading_axes], -1), axis=-1)


def micro_batch_weights(chunks: Batch) -> jax.Array:
    """(n,) each micro-batch's share of the counted frames of chunks (n, B, T, ...).

    Every loss term is a mean over counted frames (frame pairs for the velocity term), so
    weighting the micro-batches' losses and gradients by their frame counts reproduces the
    whole batch's exactly, but for the velocity term's ~1/T difference between frames and
    frame pairs. Without a frame_mask every micro-batch weighs the same.
    """
    frames = _counted_frames(chunks, 1)
    if frames is None:
        count = jax.tree.leaves(chunks)[0].shape[0]
        return jnp.full((count,), 1.0 / count)
    return frames / jnp.maximum(jnp.sum(frames), 1.0)


def device_weight(batch: Batch, axis_name: str) -> jax.Array:
    """This device's counted frames over their mean on `axis_name`: weighting each device's
    gradient by it makes lax.pmean the global-batch gradient (see micro_batch_weights)."""
    frames = _counted_frames(batch, 0)
    if frames is None:
        return jnp.ones(())
    return frames / jnp.maximum(lax.pmean(frames, axis_name), 1.0)
