"""Tasks: what a training run optimises, so one loop trains TGT, the GPC corrector and e2e.

A task builds its model(s) from the config and exposes four pure pieces the loop and the
evaluation use: `init_params`, `loss_fn`, `predict` and `optimizer`. Tasks are chosen by
`config.task` through `get_task`: "tgt" here, "gpc" and "e2e" in gentg_jax.train.gpc_tasks
(imported on first use, since it imports this module); other modules add theirs with
`register_task`. A task may complete its config (e2e embeds the saved TGT and GPC configs):
the loop runs and saves `task.config`.
"""

import abc
import importlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

from gentg_jax import losses
from gentg_jax.models import tgt
from gentg_jax.train import state as state_lib

PyTree = Any
Batch = dict[str, Any]


class Task(abc.ABC):
    """One trainable problem. Subclasses are cheap to build; the only arrays they may hold are
    frozen, non-trainable parts (the GPC task's TGT)."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    @property
    def evaluation_flip(self) -> bool:
        """Whether evaluation averages `predict` with its prediction on the mirrored input
        (config.data.test_flip); False for tasks whose predict applies the flip itself."""
        return bool(self.config.data.test_flip)

    @abc.abstractmethod
    def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
        """Initial trainable parameters for inputs shaped like `batch`."""

    @abc.abstractmethod
    def loss_fn(
        self, params: PyTree, batch: Batch, rng: jax.Array, train: bool
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss and a flat dict of scalar metrics (the loss terms)."""

    @abc.abstractmethod
    def predict(self, params: PyTree, batch: Batch) -> dict[str, jax.Array]:
        """Deterministic predictions: 'joints_3d' (B,T,17,3) root-relative metres, and
        'log_sigma' (B,T,17) when the task models uncertainty."""

    def optimizer(self) -> optax.GradientTransformation:
        """The optimiser; tasks that freeze parts of their parameters override this."""
        return state_lib.make_optimizer(self.config.train)


class TGTTask(Task):
    """The temporal graph-limb transformer lifting 2D keypoints to root-relative 3D joints."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.model = tgt.TemporalGraphLimbTransformer.from_config(config.model)

    def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
        params_rng, dropout_rng = jax.random.split(rng)
        variables = self.model.init(
            {"params": params_rng, "dropout": dropout_rng},
            batch["keypoints_2d"][:1],
            batch["scores"][:1],
            train=False,
        )
        return variables["params"]

    def _apply(self, params: PyTree, batch: Batch, rng: jax.Array | None, train: bool):
        rngs = {"dropout": rng} if rng is not None else {}
        outputs, _ = self.model.apply(
            {"params": params}, batch["keypoints_2d"], batch["scores"], train=train, rngs=rngs
        )
        return outputs

    def loss_fn(self, params, batch, rng, train):
        outputs = self._apply(params, batch, rng, train)
        return losses.tgt_loss(outputs, batch, self.config.loss)

    def predict(self, params, batch):
        outputs = self._apply(params, batch, None, train=False)
        return {"joints_3d": outputs["joints_3d"], "log_sigma": outputs["log_sigma"]}


_TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {"tgt": TGTTask}
# Tasks defined in modules that import this one: (module, class), imported by get_task.
_LAZY_TASKS = {
    "gpc": ("gentg_jax.train.gpc_tasks", "GPCTask"),
    "e2e": ("gentg_jax.train.gpc_tasks", "E2ETask"),
}


def register_task(name: str, factory: Callable[[ml_collections.ConfigDict], Task]) -> None:
    """Makes `config.task == name` build `factory(config)`."""
    _TASKS[name] = factory


def get_task(config: ml_collections.ConfigDict) -> Task:
    """The task named by `config.task`."""
    if config.task not in _TASKS and config.task in _LAZY_TASKS:
        module, name = _LAZY_TASKS[config.task]
        register_task(config.task, getattr(importlib.import_module(module), name))
    if config.task not in _TASKS:
        known = sorted({*_TASKS, *_LAZY_TASKS})
        raise ValueError(f"config.task={config.task!r} is unknown; known tasks: {known}")
    return _TASKS[config.task](config)
