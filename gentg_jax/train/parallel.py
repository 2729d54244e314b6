"""Device and host helpers: one object knows the layout and moves state and batches to it.

Layouts (`config.train.parallel`):
  single   jax.jit on the default device (one process only).
  pmap     jax.pmap over the local devices; the state is replicated along a leading axis and
           gradients are averaged with lax.pmean.
  sharded  jax.jit over a 1-D mesh of all devices (axis "data"); the batch is sharded along
           its first axis, the state is replicated, XLA inserts the gradient all-reduce.
  auto     sharded when there is more than one device, else single.
Across hosts each process feeds its own slice of the global batch (batch_size / process_count).
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gentg_jax.types import PyTree

MODES = ("single", "pmap", "sharded")
AXIS = "data"


def initialize_distributed(**kwargs: Any) -> None:
    """jax.distributed.initialize (arguments from the cluster environment unless given)."""
    jax.distributed.initialize(**kwargs)
    logging.info(
        "process %d/%d, %d local of %d devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def resolve_mode(mode: str) -> str:
    """The concrete layout for `mode` ("auto" picks by device count)."""
    if mode == "auto":
        return "sharded" if jax.device_count() > 1 else "single"
    if mode not in MODES:
        raise ValueError(f"config.train.parallel={mode!r}; choose auto, {', '.join(MODES)}")
    if mode == "single" and jax.process_count() > 1:
        raise ValueError("config.train.parallel='single' cannot run with several processes")
    return mode


def _host_copy(x: Any) -> np.ndarray:
    # The first local copy of a replicated array: works for pmap-stacked, mesh-replicated and
    # single-device arrays alike, also when the array spans several processes.
    if isinstance(x, jax.Array):
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


class DataParallel:
    """Moves state and batches to the chosen layout and compiles steps for it."""

    def __init__(self, mode: str = "auto"):
        self.mode = resolve_mode(mode)
        devices = jax.devices() if self.mode == "sharded" else jax.local_devices()
        self.mesh = Mesh(np.asarray(devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def num_replicas(self) -> int:
        """How many devices share one global batch."""
        return 1 if self.mode == "single" else jax.device_count()

    def host_batch_size(self, global_batch_size: int) -> int:
        """This process's share of the global batch, checking that it divides evenly."""
        if global_batch_size % self.num_replicas:
            raise ValueError(
                f"batch size {global_batch_size} is not divisible by the {self.num_replicas} "
                f"devices of parallel mode {self.mode!r}"
            )
        return global_batch_size // jax.process_count()

    def replicate(self, tree: PyTree) -> PyTree:
        """Host (or single-device) arrays -> the layout's replicated state."""
        if self.mode == "single":
            return jax.device_put(tree)
        if self.mode == "pmap":
            # pmap expects a leading axis of local-device size.
            n = jax.local_device_count()
            return jax.tree.map(
                lambda x: jax.device_put(
                    np.broadcast_to(np.asarray(x), (n, *np.shape(x))), self.batch_sharding
                ),
                tree,
            )
        return jax.tree.map(self._replicate_global, tree)

    def _replicate_global(self, x: Any) -> jax.Array:
        # Every process holds the same value; each fills the replicas on its own devices.
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, self.replicated, lambda i: value[i])

    def unreplicate(self, tree: PyTree) -> PyTree:
        """One host numpy copy of a replicated pytree (state, metrics)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: _host_copy(x)[0], tree)
        return jax.tree.map(_host_copy, tree)

    def shard_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This host's numpy batch -> device arrays for the layout."""
        if self.mode == "single":
            return jax.device_put(batch)
        if self.mode == "pmap":
            n = jax.local_device_count()
            return jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), batch)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch
        )

    def compile_step(self, step_fn: Callable[..., Any]) -> Callable[..., Any]:
        """`step_fn(state, batch, *, axis_name, data_shards)` compiled for the layout, donating
        the state. `data_shards`: how many devices' contiguous parts the batch the step sees
        is made of (the sharded layout's global batch; 1 otherwise)."""
        if self.mode == "single":
            return jax.jit(
                lambda s, b: step_fn(s, b, axis_name=None, data_shards=1), donate_argnums=0
            )
        if self.mode == "pmap":
            return jax.pmap(
                lambda s, b: step_fn(s, b, axis_name=AXIS, data_shards=1),
                axis_name=AXIS,
                donate_argnums=0,
            )
        shards = self.mesh.devices.size
        return jax.jit(
            lambda s, b: step_fn(s, b, axis_name=None, data_shards=shards),
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=self.replicated,
            donate_argnums=0,
        )
