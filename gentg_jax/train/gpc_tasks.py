"""The generative pose corrector's tasks: GPC on a frozen TGT, and TGT + GPC fine-tuned together.

  gpc  (configs/gpc_base.py) trains the PoseDenoiser. The coarse pose and log sigma it is
       conditioned on come, inside the loss, from the frozen TGT checkpoint at
       `config.tgt_workdir` (EMA parameters, rebuilt from its own saved config), or with
       `config.train_from_gt_noise` from `diffusion.simulate_coarse` of the ground truth.
       The TGT used is recorded in the task's config as `tgt_provenance` (workdir, step,
       parameter fingerprint; saved with every checkpoint): a run that resumes, and evaluation,
       read that step and refuse a TGT with other parameters unless
       `config.allow_tgt_mismatch` (see `checkpoint.restore_paired_tgt`).
       The TGT parameters are constants of the task, never trainable parameters or optimiser
       state: the jitted/pmapped steps capture them (this JAX version embeds captured arrays in
       the compiled program, a few MB for tgt_base; each device program holds one copy).
  e2e  (configs/e2e_finetune.py) fine-tunes {'tgt': ..., 'gpc': ...}, both initialised from
       their checkpoints, on the TGT's own loss plus the MPJPE of a one-step surrogate of the
       refinement (see `E2ETask`).

Both predict with `gentg_jax.predict`, as inference does: the TGT's coarse pose, flip-averaged
when config.data.test_flip, refined with a fixed noise key per window. Without a TGT (a GPC
trained from GT noise and no tgt_workdir) evaluation refines a simulated coarse pose instead: a
diagnostic of the denoiser, not a protocol number.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from gentg_jax import checkpoint, diffusion, losses
from gentg_jax import predict as predict_lib
from gentg_jax.models import gpc, tgt
from gentg_jax.train import tasks
from gentg_jax.types import Batch, PyTree

# Fixed offsets of the evaluation keys from config.seed (refinement noise, simulated coarse).
_REFINE_KEY, _SIMULATE_KEY = 1, 2


def load_tgt(
    workdir: str,
    recorded: dict | None = None,
    *,
    allow_mismatch: bool = False,
    gpc: str = "the GPC",
) -> tuple[ml_collections.ConfigDict, PyTree, dict]:
    """(saved config, EMA params, provenance) of a TGT workdir: the step `recorded` (a GPC's
    tgt_provenance) names, checked against it, else the latest intact step."""
    restored, provenance = checkpoint.restore_paired_tgt(
        workdir, recorded, allow_mismatch=allow_mismatch, gpc=gpc
    )
    config = restored.config
    if config.get("task", "tgt") != "tgt":
        raise ValueError(f"{workdir} holds a {config.task!r} run; expected a TGT workdir")
    return config, restored.params, provenance


def _with(config: ml_collections.ConfigDict, **fields: Any) -> ml_collections.ConfigDict:
    """An unlocked copy of `config` with `fields` set (added if new)."""
    copy = ml_collections.ConfigDict(config.to_dict())
    for name, value in fields.items():
        copy[name] = value
    return copy


def _refine_keys(config: ml_collections.ConfigDict, batch: Batch) -> jax.Array:
    """One fixed refinement key per window row of an evaluation batch."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _REFINE_KEY)
    return predict_lib.window_keys(key, jnp.arange(batch["keypoints_2d"].shape[0]))


def denoise_from(
    model: gpc.PoseDenoiser,
    schedule: diffusion.Schedule,
    params: PyTree,
    batch: Batch,
    start: jax.Array,
    t: jax.Array,
    coarse: jax.Array,
    log_sigma: jax.Array,
    rng: jax.Array,
    train: bool,
) -> jax.Array:
    """One training-time denoiser pass: `start` noised to level t (per window), then the
    denoiser's clean-pose prediction given the 2D input, the coarse pose and its log sigma."""
    noise_rng, dropout_rng = jax.random.split(rng)
    x_t = diffusion.q_sample(schedule, start, t, jax.random.normal(noise_rng, start.shape))
    x0_hat, _ = model.apply(
        {"params": params},
        x_t,
        t,
        batch["keypoints_2d"],
        coarse,
        log_sigma,
        train=train,
        rngs={"dropout": dropout_rng},
    )
    return x0_hat


def x0_objective(
    x0_hat: jax.Array,
    x0: jax.Array,
    coarse: jax.Array,
    frame_mask: jax.Array,
    loss_config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clean-pose loss: weighted MPJPE plus velocity error (masked by frame_mask), with
    `losses`' safe norms, since the root's error is exactly 0 and jnp.linalg.norm's gradient
    there is NaN. Metrics in mm, with the coarse pose's MPJPE for reference."""
    mpjpe = losses.weighted_mpjpe(x0_hat, x0, frame_mask, loss_config.joint_weights)
    velocity = losses.velocity_error(x0_hat, x0, frame_mask)
    loss = loss_config.mpjpe * mpjpe + loss_config.velocity * velocity
    return loss, {
        "loss": loss,
        "x0_mpjpe_mm": 1000.0 * mpjpe,
        "x0_velocity_mm": 1000.0 * velocity,
        "coarse_mpjpe_mm": 1000.0 * losses.weighted_mpjpe(coarse, x0, frame_mask),
    }


def _check_frames(config: ml_collections.ConfigDict, *models: Any) -> None:
    for model in models:
        if config.data.num_frames > model.max_frames:
            raise ValueError(
                f"config.data.num_frames={config.data.num_frames} exceeds the "
                f"{type(model).__name__}'s max_frames={model.max_frames}"
            )


class GPCTask(tasks.Task):
    """Trains the PoseDenoiser to predict the clean pose from its noised version, conditioned
    on the 2D input and the (frozen TGT's or simulated) coarse pose and log sigma."""

    def __init__(self, config: ml_collections.ConfigDict):
        tgt_config = params = None
        if config.tgt_workdir:
            tgt_config, params, provenance = load_tgt(
                config.tgt_workdir,
                config.get("tgt_provenance"),
                allow_mismatch=bool(config.get("allow_tgt_mismatch", False)),
                gpc=f"this GPC (config.tgt_workdir={config.tgt_workdir})",
            )
            config = _with(config, tgt_provenance=provenance)
        super().__init__(config)
        self.model = gpc.PoseDenoiser.from_config(config.model)
        self.schedule = diffusion.make_schedule(config.diffusion)
        if not 0 <= config.diffusion.max_train_timestep < self.schedule.num_steps:
            raise ValueError(
                f"config.diffusion.max_train_timestep={config.diffusion.max_train_timestep} "
                f"is outside [0, {self.schedule.num_steps})"
            )
        self.tgt_model, self.tgt_params = None, None
        if tgt_config is not None:
            self.tgt_model = tgt.TemporalGraphLimbTransformer.from_config(tgt_config.model)
            # Host numpy: captured as constants by every traced step, in any device layout.
            self.tgt_params = params
            _check_frames(config, self.tgt_model)
        elif not config.train_from_gt_noise:
            raise ValueError(
                "config.tgt_workdir is empty and config.train_from_gt_noise is False: name a "
                "TGT workdir, or train from simulated coarse poses (train_from_gt_noise=True)"
            )
        _check_frames(config, self.model)

    @classmethod
    def resumed_config(
        cls, config: ml_collections.ConfigDict, workdir: str
    ) -> ml_collections.ConfigDict:
        """A resumed GPC run keeps its TGT: the provenance in the workdir's config.json goes into
        the config, so the task reads that TGT step and refuses other parameters."""
        if config.get("tgt_provenance") or not os.path.isfile(
            os.path.join(workdir, checkpoint.CONFIG_FILE)
        ):
            return config
        recorded = checkpoint.load_config(workdir).get("tgt_provenance")
        return _with(config, tgt_provenance=recorded) if recorded else config

    def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
        pose = batch["pose_3d"][:1]
        params_rng, dropout_rng = jax.random.split(rng)
        variables = self.model.init(
            {"params": params_rng, "dropout": dropout_rng},
            pose,
            jnp.zeros((1,), jnp.int32),
            batch["keypoints_2d"][:1],
            pose,
            jnp.zeros(pose.shape[:-1]),
        )
        return variables["params"]

    def _coarse(self, batch: Batch, key: jax.Array, simulate: bool) -> tuple[jax.Array, jax.Array]:
        if simulate or self.tgt_model is None:
            return diffusion.simulate_coarse(key, batch["pose_3d"], self.config.gt_noise)
        # The coarse pose seen in training is distributed as the one refined at test time.
        coarse, log_sigma = predict_lib.coarse_pose(
            self.tgt_model,
            self.tgt_params,
            batch["keypoints_2d"],
            batch["scores"],
            flip=bool(self.config.data.test_flip),
        )
        return lax.stop_gradient(coarse), lax.stop_gradient(log_sigma)

    def loss_fn(self, params, batch, rng, train):
        coarse_rng, start_rng, t_rng, noise_rng = jax.random.split(rng, 4)
        x0 = batch["pose_3d"]
        coarse, log_sigma = self._coarse(batch, coarse_rng, self.config.train_from_gt_noise)
        start = diffusion.training_start(
            start_rng, x0, coarse, self.config.diffusion.coarse_start_fraction
        )
        t = jax.random.randint(t_rng, x0.shape[:1], 0, self.config.diffusion.max_train_timestep + 1)
        x0_hat = denoise_from(
            self.model, self.schedule, params, batch, start, t, coarse, log_sigma, noise_rng, train
        )
        return x0_objective(x0_hat, x0, coarse, batch["frame_mask"], self.config.loss)

    def predict(self, params, batch):
        simulate_key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), _SIMULATE_KEY)
        coarse, log_sigma = self._coarse(batch, simulate_key, simulate=False)
        refiner = predict_lib.Refiner(self.model, self.schedule, self.config.refine)
        return predict_lib.refine_windows(
            refiner,
            params,
            coarse,
            log_sigma,
            batch["keypoints_2d"],
            batch["intrinsics"],
            _refine_keys(self.config, batch),
        )


def resolve_e2e_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The e2e config with the saved TGT and GPC configs embedded as config.tgt / config.gpc.

    A config that already embeds them (one saved by an e2e run) is returned unchanged; otherwise
    they are read from `gpc_workdir` and `tgt_workdir` (default: the GPC's paired TGT,
    `checkpoint.paired_tgt_workdir`), the TGT checked against the GPC's record of it (refused
    if its parameters differ, unless config.allow_tgt_mismatch), and the returned copy also
    records the TGT workdir and its provenance (`tgt_provenance`: the step fine-tuning starts
    from).
    """
    if "model" in config.tgt and "model" in config.gpc:
        return config
    if not config.gpc_workdir:
        raise ValueError("config.gpc_workdir is empty: the e2e run starts from a GPC checkpoint")
    gpc_config = checkpoint.load_config(config.gpc_workdir)
    tgt_workdir = str(
        checkpoint.paired_tgt_workdir(config.gpc_workdir, gpc_config, config.tgt_workdir or None)
    )
    tgt_config, _, provenance = load_tgt(
        tgt_workdir,
        gpc_config.get("tgt_provenance"),
        allow_mismatch=bool(config.get("allow_tgt_mismatch", False)),
        gpc=f"the GPC at {config.gpc_workdir}",
    )
    resolved = _with(config, tgt_workdir=tgt_workdir, tgt_provenance=provenance)
    resolved.tgt, resolved.gpc = tgt_config, gpc_config
    return resolved


class E2ETask(tasks.Task):
    """TGT and GPC fine-tuned together; params {'tgt': ..., 'gpc': ...}.

    Loss (config.loss): `tgt` x the TGT's own loss (config.tgt.loss) + `refined` x the weighted
    MPJPE of a one-step refinement, a cheap differentiable surrogate of the K-step, H-hypothesis
    sampler: the joints `diffusion.select_joints` picks are noised from the coarse pose to a level
    t drawn uniformly within +-`t_jitter` (relative) of the uncertainty-tied start level of
    `diffusion.start_timestep`, the denoiser predicts x0 in one pass, and the confident joints
    are put back. Gradients reach the TGT through the noised coarse pose and the conditioning.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(resolve_e2e_config(config))
        config = self.config
        self.tgt_model = tgt.TemporalGraphLimbTransformer.from_config(config.tgt.model)
        self.gpc_model = gpc.PoseDenoiser.from_config(config.gpc.model)
        self.schedule = diffusion.make_schedule(config.gpc.diffusion)
        _check_frames(config, self.tgt_model, self.gpc_model)

    def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
        del rng, batch  # both parts start from their checkpoints
        _, tgt_params, _ = load_tgt(
            self.config.tgt_workdir,
            self.config.get("tgt_provenance"),
            allow_mismatch=bool(self.config.get("allow_tgt_mismatch", False)),
        )
        gpc_config, gpc_params = checkpoint.restore_params(self.config.gpc_workdir, ema=True)
        if gpc_config.get("task") != "gpc":
            raise ValueError(f"{self.config.gpc_workdir} is not a GPC workdir")
        return {"tgt": tgt_params, "gpc": gpc_params}

    def _one_step_refine(self, params, batch, coarse, log_sigma, rng, train):
        refine_config = self.config.refine
        t_rng, noise_rng = jax.random.split(rng)
        sigma = lax.stop_gradient(log_sigma)
        mask = diffusion.select_joints(sigma, refine_config)
        t_start = diffusion.start_timestep(self.schedule, sigma, mask, refine_config)
        jitter = self.config.loss.t_jitter
        factor = jax.random.uniform(t_rng, t_start.shape, minval=1 - jitter, maxval=1 + jitter)
        t = jnp.clip(jnp.round(t_start * factor), refine_config.t_min, refine_config.t_max)
        t = t.astype(jnp.int32)
        x0_hat = denoise_from(
            self.gpc_model,
            self.schedule,
            params,
            batch,
            coarse,
            t,
            coarse,
            log_sigma,
            noise_rng,
            train,
        )
        return jnp.where(mask[..., None], x0_hat, coarse), mask

    def loss_fn(self, params, batch, rng, train):
        tgt_rng, refine_rng = jax.random.split(rng)
        outputs = predict_lib.tgt_outputs(
            self.tgt_model,
            params["tgt"],
            batch["keypoints_2d"],
            batch["scores"],
            train=train,
            rng=tgt_rng,
        )
        tgt_loss, tgt_metrics = losses.tgt_loss(outputs, batch, self.config.tgt.loss)
        refined, mask = self._one_step_refine(
            params["gpc"], batch, outputs["joints_3d"], outputs["log_sigma"], refine_rng, train
        )
        mask_f, target = batch["frame_mask"], batch["pose_3d"]
        refined_error = losses.weighted_mpjpe(
            refined, target, mask_f, self.config.loss.joint_weights
        )
        weights = self.config.loss
        loss = weights.refined * refined_error + weights.tgt * tgt_loss
        metrics = {f"tgt_{name}": value for name, value in tgt_metrics.items()}
        metrics.update(
            loss=loss,
            refined_mpjpe_mm=1000.0 * losses.weighted_mpjpe(refined, target, mask_f),
            resampled_fraction=jnp.mean(mask[..., 1:]),
        )
        return loss, metrics

    def predict(self, params, batch):
        return predict_lib.lift_windows(
            params,
            batch["keypoints_2d"],
            batch["scores"],
            batch["intrinsics"],
            _refine_keys(self.config, batch),
            tgt_model=self.tgt_model,
            flip=bool(self.config.data.test_flip),
            refiner=predict_lib.Refiner(self.gpc_model, self.schedule, self.config.refine),
        )
