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

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


def train_step(
    state: state_lib.TrainState,
    batch: Batch,
    *,
    task: tasks_lib.Task,
    config: ml_collections.ConfigDict,
    axis_name: str | None = None,
) -> tuple[state_lib.TrainState, Metrics]:
    """One optimiser step on `batch`; under pmap, gradients are averaged over `axis_name`.

    The loss is a mean over the (per-device) batch, so averaging per-device gradients equals
    the gradient of the global-batch loss whenever every device holds the same number of
    counted frames (training windows have no padding).
    """
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name:
        # Different dropout masks per device; the global-batch result is unaffected when the
        # model has no dropout.
        rng = jax.random.fold_in(rng, lax.axis_index(axis_name))

    def loss_fn(params):
        return task.loss_fn(params, batch, rng, True)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {**metrics, "loss": loss}
    if axis_name:
        grads = lax.pmean(grads, axis_name)
        metrics = lax.pmean(metrics, axis_name)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["learning_rate"] = state_lib.learning_rate_schedule(config.train)(state.step)
    new_state = state.apply_gradients(grads, config.train.ema_decay)
    return new_state, {name: jnp.asarray(value, jnp.float32) for name, value in metrics.items()}


def predict_step(params: Any, batch: Batch, *, task: tasks_lib.Task) -> dict[str, jax.Array]:
    """The task's deterministic predictions (params are an argument, never baked in)."""
    return task.predict(params, batch)
