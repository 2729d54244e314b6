"""Diffusion math for the generative pose corrector (GPC): schedule, noising, DDIM, refinement.

Poses are root-relative camera-frame joints in metres, diffused without rescaling. Timesteps are
integers in [0, N) where index i holds alpha_bar after i + 1 noising steps; the level -1 stands for
the clean pose (alpha_bar = 1), which is where every sampler trajectory ends.

`refine` is uncertainty-guided selective resampling (SDEdit-style): only joints the lifter is
unsure about are resampled, starting from the coarse pose noised to a level matched to their
uncertainty (never from pure noise); the confident joints are pinned to the equally noised coarse
pose after every DDIM step and come out bit-identical to the coarse input.

The deployable aggregate of the H hypotheses ('refined_3d') is their mean by default: it estimates
the posterior mean, the MPJPE-optimal point estimate, and needs no 2D evidence. The joint-wise
reprojection choice is kept as 'refined_reproj' (config.refine.aggregation = "reproj" makes it the
default): the joints chosen for resampling are mostly those whose 2D is occluded or noisy, which is
exactly where the 2D is least trustworthy for picking among hypotheses. Neither uses ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import camera, skeleton

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t, t) -> x0_hat
Constraint = Callable[[jax.Array, jax.Array], jax.Array]  # (x at level t, t) -> x


class Schedule(NamedTuple):
    """Noise schedule arrays, each (N,) float32, indexed by timestep."""

    betas: jax.Array
    alpha_bar: jax.Array

    @property
    def num_steps(self) -> int:
        return self.alpha_bar.shape[0]


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021): alpha_bar(t) = f(t) / f(0), betas clipped."""
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0.0, max_beta)
    alpha_bar = np.cumprod(1 - betas)
    return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alpha_bar, jnp.float32))


def make_schedule(diffusion_config: ml_collections.ConfigDict) -> Schedule:
    """The schedule named by `config.diffusion` (schedule, num_train_steps)."""
    if diffusion_config.schedule != "cosine":
        raise ValueError(f"config.diffusion.schedule={diffusion_config.schedule!r}; only 'cosine'")
    return cosine_schedule(diffusion_config.num_train_steps)


def alpha_bar_at(schedule: Schedule, t: jax.Array) -> jax.Array:
    """alpha_bar at integer levels t (any shape); t = -1 (clean) gives exactly 1."""
    t = jnp.asarray(t, jnp.int32)
    return jnp.where(t < 0, 1.0, schedule.alpha_bar[jnp.maximum(t, 0)])


def noise_to_signal(schedule: Schedule) -> jax.Array:
    """(N,) increasing sqrt((1 - ab) / ab): the noise std, in metres, of x_t / sqrt(ab)."""
    return jnp.sqrt((1 - schedule.alpha_bar) / schedule.alpha_bar)


def _expand(a: jax.Array, ndim: int) -> jax.Array:
    """Appends singleton axes so a per-sequence array broadcasts against (..., T, J, C)."""
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise; t's shape is a prefix of x0's (or scalar)."""
    ab = _expand(alpha_bar_at(schedule, t), x0.ndim)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise


def training_start(
    key: jax.Array, x0: jax.Array, coarse: jax.Array, coarse_fraction: float
) -> jax.Array:
    """The pose a training x_t noises: per window, `coarse` with probability coarse_fraction,
    else the clean target x0. Refinement noises the coarse pose, never the (unknown) x0, so
    training from the coarse pose matches its inputs; x0 and coarse are (B, ..., 3)."""
    if not 0.0 <= coarse_fraction <= 1.0:
        raise ValueError(f"coarse_start_fraction must be in [0, 1], got {coarse_fraction}")
    from_coarse = jax.random.uniform(key, x0.shape[:1]) < coarse_fraction
    return jnp.where(_expand(from_coarse, x0.ndim), coarse, x0)


def ddim_timesteps(t_start: jax.Array, num_steps: int) -> jax.Array:
    """(K + 1, ...) int32 levels from t_start down to -1, evenly spaced in t + 1.

    Intermediate levels never go below 0, so only the last transition reaches the clean level;
    when K > t_start + 1 some levels repeat, and a repeated deterministic step is a no-op.
    """
    t_start = jnp.asarray(t_start, jnp.int32)
    k = jnp.arange(num_steps + 1, dtype=jnp.int32).reshape((-1,) + (1,) * t_start.ndim)
    levels = ((t_start + 1) * (num_steps - k) + num_steps // 2) // num_steps - 1
    return jnp.where(k == num_steps, -1, jnp.maximum(levels, 0))


def _ddim_step(schedule, x, x0_hat, t, t_next, eta, z):
    """One x0-parameterised DDIM transition from level t to t_next (Song et al. 2021, eq. 12)."""
    ab = _expand(alpha_bar_at(schedule, t), x.ndim)
    ab_next = _expand(alpha_bar_at(schedule, t_next), x.ndim)
    eps = (x - jnp.sqrt(ab) * x0_hat) / jnp.sqrt(1 - ab)
    sigma = eta * jnp.sqrt((1 - ab_next) / (1 - ab) * jnp.maximum(1 - ab / ab_next, 0.0))
    direction = jnp.sqrt(jnp.maximum(1 - ab_next - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_next) * x0_hat + direction + sigma * z


def ddim_sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    x_t: jax.Array,
    t_start: jax.Array,
    key: jax.Array,
    *,
    num_steps: int,
    eta: float = 0.0,
    constrain: Constraint | None = None,
) -> jax.Array:
    """Runs K DDIM steps from x_t at level t_start (per sequence) to the clean level.

    Args:
      denoise_fn: (x_t, t) -> x0_hat, t int32 with t_start's shape.
      schedule: the training schedule.
      x_t: (..., T, J, 3) sample at level t_start.
      t_start: int level per sequence: scalar or x_t.shape[:-3].
      key: PRNG key for the stochastic part (eta > 0).
      num_steps: K >= 1 denoiser calls.
      eta: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
      constrain: optional (x, t_next) -> x applied after every step (inpainting-style pinning).

    Returns:
      (..., T, J, 3) the sample at the clean level.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    levels = ddim_timesteps(t_start, num_steps)
    keys = jax.random.split(key, num_steps)

    def step(x, inputs):
        t, t_next, step_key = inputs
        x0_hat = denoise_fn(x, t)
        z = jax.random.normal(step_key, x.shape, x.dtype)
        x = _ddim_step(schedule, x, x0_hat, t, t_next, eta, z)
        return (x if constrain is None else constrain(x, t_next)), None

    x, _ = jax.lax.scan(step, x_t, (levels[:-1], levels[1:], keys))
    return x


def _largest(values: jax.Array, count: int, axes: int) -> jax.Array:
    """bool mask of the `count` largest entries over the last `axes` axes of `values`."""
    lead = values.shape[: values.ndim - axes]
    flat = values.reshape(lead + (-1,))
    rank = jnp.argsort(jnp.argsort(-flat, axis=-1), axis=-1)
    return (rank < count).reshape(values.shape)


def select_joints(log_sigma: jax.Array, refine_config: ml_collections.ConfigDict) -> jax.Array:
    """(..., T, J) bool: the joints to resample. The root (always 0) is never selected.

    "threshold": sigma > refine_config.threshold (metres). "top_fraction": per frame the
    round(top_fraction * (J - 1)) non-root joints with the largest sigma. "window_fraction": per
    window (the last two axes) the round(top_fraction * T * (J - 1)) non-root joint-frames with
    the largest sigma, so frames whose 2D is poor get more of them. The fractions adapt to the
    lifter's sigma scale; the threshold assumes calibrated metres.
    """
    is_root = jnp.arange(log_sigma.shape[-1]) == skeleton.ROOT
    candidates = jnp.where(is_root, -jnp.inf, log_sigma)
    selectable = log_sigma.shape[-1] - 1
    if refine_config.selection == "threshold":
        mask = log_sigma > jnp.log(refine_config.threshold)
    elif refine_config.selection == "top_fraction":
        mask = _largest(candidates, int(round(refine_config.top_fraction * selectable)), axes=1)
    elif refine_config.selection == "window_fraction":
        count = int(round(refine_config.top_fraction * log_sigma.shape[-2] * selectable))
        mask = _largest(candidates, count, axes=2)
    else:
        raise ValueError(
            f"config.refine.selection={refine_config.selection!r}; "
            "use 'threshold', 'top_fraction' or 'window_fraction'"
        )
    return mask & ~is_root


def start_timestep(
    schedule: Schedule,
    log_sigma: jax.Array,
    mask: jax.Array,
    refine_config: ml_collections.ConfigDict,
) -> jax.Array:
    """Per-sequence start level: the first t whose noise-to-signal std reaches start_factor times
    the largest selected sigma, clipped to [t_min, t_max]; t_min when nothing is selected."""
    t_min, t_max = refine_config.t_min, refine_config.t_max
    if not 0 <= t_min <= t_max < schedule.num_steps:
        raise ValueError(f"need 0 <= t_min <= t_max < {schedule.num_steps}; got {t_min}, {t_max}")
    sigma_max = jnp.max(jnp.where(mask, jnp.exp(log_sigma), 0.0), axis=(-2, -1))
    t = jnp.searchsorted(noise_to_signal(schedule), refine_config.start_factor * sigma_max)
    return jnp.clip(t, t_min, t_max).astype(jnp.int32)


def estimate_root(
    keypoints_2d: jax.Array,
    pose: jax.Array,
    intrinsics: jax.Array,
    weights: jax.Array,
) -> jax.Array:
    """Per-frame root translation r (..., T, 3) so that pose + r reprojects onto keypoints_2d.

    Under the undistorted pinhole model a_j = (u_j - cx) / fx satisfies a_j (Z_j + rz) = X_j + rx,
    i.e. y_j := X_j - a_j Z_j = rz a_j - rx (likewise for v with Y and ry): a weighted linear
    regression with a slope rz shared by both image axes. Its closed form is
    rz = (cov(a, y_x) + cov(b, y_y)) / (var(a) + var(b)), rx = rz mean(a) - mean(y_x), and the
    same for ry. Inputs: keypoints_2d (..., T, J, 2) normalised, pose (..., T, J, 3) root-relative,
    intrinsics (..., T, 9) normalised, weights (..., T, J) non-negative.
    """
    focal, center = intrinsics[..., None, 0:2], intrinsics[..., None, 2:4]
    ab = (keypoints_2d - center) / focal  # (..., T, J, 2): (a_j, b_j)
    y = pose[..., :2] - ab * pose[..., 2:]  # (..., T, J, 2)
    w = (weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-12))[..., None]
    mean_ab, mean_y = (w * ab).sum(-2), (w * y).sum(-2)  # (..., T, 2)
    cov = (w * (ab - mean_ab[..., None, :]) * (y - mean_y[..., None, :])).sum((-2, -1))
    var = (w * (ab - mean_ab[..., None, :]) ** 2).sum((-2, -1))
    rz = cov / jnp.maximum(var, 1e-12)
    return jnp.concatenate([rz[..., None] * mean_ab - mean_y, rz[..., None]], axis=-1)


def reprojection_select(
    hypotheses: jax.Array,
    keypoints_2d: jax.Array,
    intrinsics: jax.Array,
    root: jax.Array,
) -> jax.Array:
    """Joint-wise choice, per frame, of the hypothesis whose 2D reprojection is closest.

    Args:
      hypotheses: (H, ..., T, J, 3) root-relative poses.
      keypoints_2d: (..., T, J, 2) normalised input 2D.
      intrinsics: (..., T, 9) normalised (camera.project_to_2d, distortion included).
      root: (..., T, 3) root translation in the camera frame.

    Returns:
      (..., T, J, 3) the selected joints.
    """
    projected = camera.project_to_2d(hypotheses + root[..., None, :], intrinsics)
    error = jnp.linalg.norm(projected - keypoints_2d, axis=-1)  # (H, ..., T, J)
    best = jnp.argmin(error, axis=0)
    return jnp.take_along_axis(hypotheses, best[None, ..., None], axis=0)[0]


def _check_refine_shapes(coarse_3d, log_sigma, keypoints_2d, intrinsics):
    lead = coarse_3d.shape[:-1]
    if coarse_3d.ndim < 3 or coarse_3d.shape[-2:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"coarse_3d must be (..., T, 17, 3), got {coarse_3d.shape}")
    if log_sigma.shape != lead or keypoints_2d.shape != lead + (2,):
        raise ValueError(
            f"log_sigma {log_sigma.shape} / keypoints_2d {keypoints_2d.shape} do not match "
            f"coarse_3d {coarse_3d.shape}"
        )
    if intrinsics.shape != coarse_3d.shape[:-3] + (9,):
        raise ValueError(
            f"intrinsics must be {coarse_3d.shape[:-3] + (9,)}, got {intrinsics.shape}"
        )


def refine(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    coarse_3d: jax.Array,
    log_sigma: jax.Array,
    keypoints_2d: jax.Array,
    intrinsics: jax.Array,
    key: jax.Array,
    *,
    config: ml_collections.ConfigDict,
    root_trajectory: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Uncertainty-guided selective resampling of the coarse pose.

    Args:
      denoise_fn: (x_t, t) -> x0_hat for this batch's conditioning (see models.gpc.make_denoise_fn).
      schedule: the schedule the denoiser was trained with.
      coarse_3d: (..., T, 17, 3) root-relative lifter output, metres.
      log_sigma: (..., T, 17) lifter uncertainty.
      keypoints_2d: (..., T, 17, 2) normalised input 2D (only for the reprojection aggregate).
      intrinsics: (..., 9) normalised camera intrinsics.
      key: PRNG key; hypothesis h uses split(key, H)[h].
      config: `config.refine` (selection, threshold, top_fraction, num_steps, eta,
        num_hypotheses, start_factor, t_min, t_max, aggregation).
      root_trajectory: optional (..., T, 3) camera-frame root; otherwise estimated from the 2D
        and the coarse pose by `estimate_root`, weighting joints by 1 / sigma^2.

    Returns:
      'refined_3d' (the deployable output: the aggregate named by config.aggregation, "mean" by
      default), 'refined_mean', 'refined_reproj', 'hypotheses' (H, ..., T, 17, 3),
      'resample_mask' (..., T, 17) bool and 't_start' (...,) int32. Joints outside the mask equal
      coarse_3d bit for bit in every output.
    """
    _check_refine_shapes(coarse_3d, log_sigma, keypoints_2d, intrinsics)
    if config.aggregation not in ("mean", "reproj"):
        raise ValueError(
            f"config.refine.aggregation={config.aggregation!r}; use 'mean' or 'reproj'"
        )
    mask = select_joints(log_sigma, config)
    t_start = start_timestep(schedule, log_sigma, mask, config)
    pin = mask[..., None]

    def hypothesis(hyp_key):
        noise_key, sample_key = jax.random.split(hyp_key)
        noise = jax.random.normal(noise_key, coarse_3d.shape, coarse_3d.dtype)

        def constrain(x, t):
            # The same noise stream keeps the pinned joints on one forward trajectory of coarse.
            return jnp.where(pin, x, q_sample(schedule, coarse_3d, t, noise))

        x = ddim_sample(
            denoise_fn,
            schedule,
            q_sample(schedule, coarse_3d, t_start, noise),
            t_start,
            sample_key,
            num_steps=config.num_steps,
            eta=config.eta,
            constrain=constrain,
        )
        return jnp.where(pin, x, coarse_3d)

    hypotheses = jax.vmap(hypothesis)(jax.random.split(key, config.num_hypotheses))
    intrinsics_t = jnp.broadcast_to(intrinsics[..., None, :], coarse_3d.shape[:-2] + (9,))
    if root_trajectory is None:
        weights = jnp.exp(-2 * jnp.clip(log_sigma, jnp.log(1e-3), None))
        root_trajectory = estimate_root(keypoints_2d, coarse_3d, intrinsics_t, weights)
    selected = reprojection_select(hypotheses, keypoints_2d, intrinsics_t, root_trajectory)
    out = {
        "refined_mean": jnp.where(pin, hypotheses.mean(0), coarse_3d),
        "refined_reproj": jnp.where(pin, selected, coarse_3d),
        "hypotheses": hypotheses,
        "resample_mask": mask,
        "t_start": t_start,
    }
    out["refined_3d"] = out["refined_mean" if config.aggregation == "mean" else "refined_reproj"]
    return out


def denoiser_passes(refine_config: ml_collections.ConfigDict) -> int:
    """Denoiser forward passes per refined window: num_hypotheses x num_steps."""
    return refine_config.num_hypotheses * refine_config.num_steps


def simulate_coarse(
    key: jax.Array, pose_3d: jax.Array, noise_config: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
    """A stand-in lifter output for training GPC from ground truth (config.gt_noise).

    Each joint gets Gaussian noise of its std joint_std[j]; with probability outlier_rate a joint
    also gets an outlier of std outlier_std. The synthetic sigma is the per-coordinate std of the
    perturbation actually applied (so it is calibrated), floored at sigma_floor and jittered by a
    log-normal factor of std sigma_jitter so the corrector does not learn to trust it blindly.

    Args:
      key: PRNG key.
      pose_3d: (..., T, 17, 3) root-relative ground truth.
      noise_config: joint_std (17,), outlier_rate, outlier_std, sigma_floor, sigma_jitter.

    Returns:
      coarse_3d (..., T, 17, 3) with the root still 0, and log_sigma (..., T, 17).
    """
    k_noise, k_which, k_jitter = jax.random.split(key, 3)
    shape = pose_3d.shape[:-1]
    base_std = jnp.asarray(noise_config.joint_std, jnp.float32)
    is_outlier = jax.random.bernoulli(k_which, noise_config.outlier_rate, shape)
    std = jnp.sqrt(base_std**2 + is_outlier * noise_config.outlier_std**2)
    std = jnp.where(jnp.arange(shape[-1]) == skeleton.ROOT, 0.0, std)
    coarse = pose_3d + std[..., None] * jax.random.normal(k_noise, pose_3d.shape)
    jitter = noise_config.sigma_jitter * jax.random.normal(k_jitter, shape)
    log_sigma = jnp.log(jnp.maximum(std, noise_config.sigma_floor)) + jitter
    return coarse, log_sigma
