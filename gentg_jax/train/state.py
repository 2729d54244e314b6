"""The training state: parameters, optimiser state, EMA parameters, step and rng in one pytree."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gentg_jax.types import PyTree


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes.

    `tx` is static (not a pytree leaf), so the state passes through `jax.jit` / `jax.pmap`
    and orbax as arrays only. `rng` is a raw uint32 key (2,); per-step keys are derived by
    `jax.random.fold_in(rng, step)` and the key itself never changes.
    """

    step: jax.Array
    params: PyTree
    ema_params: PyTree
    opt_state: optax.OptState
    rng: jax.Array
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(
        cls, *, params: PyTree, tx: optax.GradientTransformation, rng: jax.Array
    ) -> "TrainState":
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=jax.tree.map(jnp.array, params),
            opt_state=tx.init(params),
            rng=rng,
            tx=tx,
        )

    def apply_gradients(self, grads: PyTree, ema_decay: float) -> "TrainState":
        """One optimiser update followed by the EMA update of the new parameters."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        # The EMA decay ramps up from 0.1 so early evaluations are not dominated by the init.
        decay = jnp.minimum(ema_decay, (1.0 + self.step) / (10.0 + self.step))
        ema_params = jax.tree.map(
            lambda e, p: decay * e + (1.0 - decay) * p, self.ema_params, params
        )
        return self.replace(
            step=self.step + 1, params=params, ema_params=ema_params, opt_state=opt_state
        )

    def to_checkpoint(self) -> dict[str, PyTree]:
        """The array fields as a plain dict (what the checkpoint stores)."""
        return {
            "step": self.step,
            "params": self.params,
            "ema_params": self.ema_params,
            "opt_state": self.opt_state,
            "rng": self.rng,
        }

    def from_checkpoint(self, tree: dict[str, PyTree]) -> "TrainState":
        """This state with its array fields replaced by a restored `to_checkpoint` dict."""
        return self.replace(**{name: tree[name] for name in self.to_checkpoint()})


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup from 0 to `learning_rate`, then cosine decay to `final_lr_fraction` of it."""
    warmup = int(train_config.warmup_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train_config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(int(train_config.num_steps), warmup + 1),
        end_value=train_config.learning_rate * train_config.final_lr_fraction,
    )


def _decay_mask(params: PyTree) -> PyTree:
    # Weight decay on matrices only: biases, norms scales and embeddings of rank 1 are left alone.
    return jax.tree.map(lambda x: x.ndim > 1, params)


# The TGT's sigma head (models.tgt.TemporalGraphLimbTransformer._sigma), by parameter name.
SIGMA_HEAD_PARAMS = ("sigma", "sigma_hidden")


def _adamw(train_config: ml_collections.ConfigDict, learning_rate) -> optax.GradientTransformation:
    return optax.adamw(
        learning_rate,
        b1=train_config.adam_b1,
        b2=train_config.adam_b2,
        weight_decay=train_config.weight_decay,
        mask=_decay_mask,
    )


def _sigma_head_labels(params: PyTree) -> PyTree:
    def label(path, _):
        keys = {getattr(entry, "key", None) for entry in path}
        return "sigma_head" if keys & set(SIGMA_HEAD_PARAMS) else "rest"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW with warmup + cosine schedule and global-norm gradient clipping.

    With train.sigma_learning_rate > 0 the sigma head's parameters get that learning rate,
    constant after the same warmup: a head behind a stop-gradient (model.sigma_stop_gradient)
    must keep fitting the trunk's features until they stop moving, at the end of the decay.
    """
    parts = []
    if train_config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip))
    shared = _adamw(train_config, learning_rate_schedule(train_config))
    sigma_rate = float(train_config.get("sigma_learning_rate", 0.0))
    if sigma_rate > 0:
        head_schedule = optax.linear_schedule(0.0, sigma_rate, int(train_config.warmup_steps))
        transforms = {"rest": shared, "sigma_head": _adamw(train_config, head_schedule)}
        parts.append(optax.multi_transform(transforms, _sigma_head_labels))
    else:
        parts.append(shared)
    return optax.chain(*parts)


def create_train_state(
    params: PyTree, tx: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """A fresh state at step 0 for `params` (host or device arrays, unreplicated)."""
    return TrainState.create(params=params, tx=tx, rng=rng)
