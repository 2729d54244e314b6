"""Tasks: what a training run optimises, so one loop trains TGT, the GPC corrector and e2e.

A task builds its model(s) from the config and exposes four pure pieces the loop and the
evaluation use: `init_params`, `loss_fn`, `predict` and `optimizer`. "tgt" is here, "gpc" and
"e2e" in gentg_jax.train.gpc_tasks; `gentg_jax.train.registry` maps `config.task` to them. A
task may complete its config (e2e embeds the saved TGT and GPC configs): the loop runs and saves
`task.config`. `predict` is "the model's answer" as `gentg_jax.predict` defines it (test-time
flip averaging included), so evaluation reports what inference returns.
"""

import abc

import jax
import ml_collections
import optax

from gentg_jax import losses
from gentg_jax import predict as predict_lib
from gentg_jax.models import tgt
from gentg_jax.train import state as state_lib
from gentg_jax.types import Batch, PyTree


class Task(abc.ABC):
    """One trainable problem. Subclasses are cheap to build; the only arrays they may hold are
    frozen, non-trainable parts (the GPC task's TGT)."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    @classmethod
    def resumed_config(
        cls, config: ml_collections.ConfigDict, workdir: str
    ) -> ml_collections.ConfigDict:
        """`config` for a training run in `workdir` that may resume there; as given by default."""
        del workdir
        return config

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
        """Deterministic predictions (`gentg_jax.predict`'s output dict): 'joints_3d'
        (B,T,17,3) root-relative metres, 'log_sigma' (B,T,17) and, for a refining task, the
        coarse pose, the refinement aggregates and the resample mask."""

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

    def loss_fn(self, params, batch, rng, train):
        outputs = predict_lib.tgt_outputs(
            self.model, params, batch["keypoints_2d"], batch["scores"], train=train, rng=rng
        )
        return losses.tgt_loss(outputs, batch, self.config.loss)

    def predict(self, params, batch):
        return predict_lib.lift_windows(
            {"tgt": params},
            batch["keypoints_2d"],
            batch["scores"],
            intrinsics=None,  # used by refinement only
            keys=None,
            tgt_model=self.model,
            flip=bool(self.config.data.test_flip),
        )
