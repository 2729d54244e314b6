"""Tests for gentg_jax.diffusion: schedule, q_sample, DDIM, selective refinement, aggregation."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import gpc_base
from gentg_jax import camera, diffusion
from gentg_jax.data import h36m

SCHEDULE = diffusion.cosine_schedule(1000)
B, T, J = 2, 5, 17


def _refine_config(**overrides) -> ml_collections.ConfigDict:
    config = gpc_base.get_config("tiny").refine
    config.update(overrides)
    return config


def _inputs(seed: int = 0, sigma_scale: float = 1.0):
    """A root-relative coarse pose 2 m in front of a real H36M camera, its 2D and sigmas."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 0.3, (B, T, J, 3)).astype(np.float32)
    coarse[..., 0, :] = 0
    log_sigma = np.log(sigma_scale * rng.uniform(0.01, 0.2, (B, T, J))).astype(np.float32)
    intrinsics = np.stack([h36m.camera("S9", i).intrinsic for i in range(B)])
    root = np.array([0.1, -0.2, 4.0], np.float32)
    kp = camera.project_to_2d(coarse + root, np.broadcast_to(intrinsics[:, None], (B, T, 9)))
    return tuple(jnp.asarray(a) for a in (coarse, log_sigma, kp.astype(np.float32), intrinsics))


def _shrink_denoiser(x_t, t):
    """A non-oracle denoiser whose output depends on x_t and t."""
    return 0.5 * x_t + 1e-4 * t.astype(jnp.float32)[:, None, None, None]


@functools.partial(jax.jit, static_argnames=("config",))
def _jit_refine(schedule, coarse, log_sigma, kp, intrinsics, key, root=None, *, config):
    return diffusion.refine(
        _shrink_denoiser,
        schedule,
        coarse,
        log_sigma,
        kp,
        intrinsics,
        key,
        config=config,
        root_trajectory=root,
    )


# One refinement setting shared by the tests, so that they share one compilation.
_CONFIG = dict(selection="threshold", threshold=0.08, eta=0.5, num_hypotheses=3)


def _refine(key, inputs, root=None):
    """Refinement under jit (the schedule is a pytree argument) with the shared setting."""
    config = ml_collections.FrozenConfigDict(_refine_config(**_CONFIG))
    return _jit_refine(SCHEDULE, *inputs, key, root, config=config)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _oracle_ddim(x0, x_t, t_start, key, *, num_steps, eta):
    """DDIM whose denoiser returns the true clean pose (eta traced: one compile per K)."""
    return diffusion.ddim_sample(
        lambda x, t: x0, SCHEDULE, x_t, t_start, key, num_steps=num_steps, eta=eta
    )


def test_schedule_matches_the_cosine_formula_and_is_bounded():
    ab = np.asarray(SCHEDULE.alpha_bar, np.float64)
    assert ab.shape == (1000,) and SCHEDULE.num_steps == 1000
    assert np.all(np.diff(ab) < 0) and np.all(ab > 0) and np.all(ab <= 1)
    assert np.all(np.asarray(SCHEDULE.betas) <= 0.999 + 1e-7)
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    steps = np.array([1, 10, 250, 500, 900])
    np.testing.assert_allclose(ab[steps - 1], f(steps) / f(0), rtol=1e-5)
    assert float(diffusion.alpha_bar_at(SCHEDULE, jnp.array(-1))) == 1.0


def test_q_sample_statistics_and_exact_recovery_from_a_perfect_x0():
    x0 = jnp.asarray(np.random.default_rng(1).normal(size=(B, T, J, 3)), jnp.float32)
    noise = jax.random.normal(jax.random.key(0), x0.shape)
    t = jnp.array([3, 700])
    q_sample = jax.jit(diffusion.q_sample)
    x_t = q_sample(SCHEDULE, x0, t, noise)
    ab = np.asarray(SCHEDULE.alpha_bar)[np.asarray(t)][:, None, None, None]
    np.testing.assert_allclose(x_t, np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise, atol=1e-6)
    assert np.array_equal(q_sample(SCHEDULE, x0, jnp.array([-1, -1]), noise), x0)
    # One DDIM step from t straight to the clean level with the true x0 returns x0 exactly.
    out = _oracle_ddim(x0, x_t, t, jax.random.key(1), num_steps=1, eta=0.0)
    assert np.array_equal(out, x0)


def test_ddim_timesteps_run_from_start_to_clean():
    levels = np.asarray(diffusion.ddim_timesteps(jnp.array([999, 40, 2, 0]), 4))
    assert levels.shape == (5, 4)
    np.testing.assert_array_equal(levels[0], [999, 40, 2, 0])
    np.testing.assert_array_equal(levels[-1], [-1, -1, -1, -1])
    assert np.all(np.diff(levels, axis=0) <= 0) and np.all(levels[:-1] >= 0)
    np.testing.assert_array_equal(levels[:, 0], [999, 749, 499, 249, -1])


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("num_steps", [1, 3, 10])
def test_ddim_with_an_oracle_returns_x0(eta, num_steps):
    x0 = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, J, 3)), jnp.float32)
    t_start = jnp.array([999, 0])
    x_t = diffusion.q_sample(SCHEDULE, x0, t_start, jax.random.normal(jax.random.key(3), x0.shape))
    out = _oracle_ddim(x0, x_t, t_start, jax.random.key(4), num_steps=num_steps, eta=eta)
    assert np.array_equal(out, x0)


def test_refine_keeps_confident_joints_bit_identical():
    inputs = _inputs()
    coarse, log_sigma = inputs[:2]
    out = _refine(jax.random.key(0), inputs)
    mask = np.asarray(out["resample_mask"])
    np.testing.assert_array_equal(mask, (np.exp(log_sigma) > 0.08) & (np.arange(J) > 0))
    assert mask.any() and (~mask).any() and not mask[..., 0].any()
    keep = ~mask
    for name in ("refined_3d", "refined_mean", "refined_reproj"):
        assert np.array_equal(np.asarray(out[name])[keep], np.asarray(coarse)[keep]), name
        assert not np.allclose(np.asarray(out[name])[mask], np.asarray(coarse)[mask]), name
    for hypothesis in np.asarray(out["hypotheses"]):
        assert np.array_equal(hypothesis[keep], np.asarray(coarse)[keep])
    assert np.array_equal(out["refined_3d"], out["refined_mean"])


def test_threshold_above_every_sigma_returns_the_coarse_pose():
    inputs = _inputs(sigma_scale=0.3)  # every sigma below 0.2 * 0.3 < the 0.08 threshold
    coarse = inputs[0]
    out = _refine(jax.random.key(0), inputs)
    assert not np.asarray(out["resample_mask"]).any()
    for name in ("refined_3d", "refined_mean", "refined_reproj"):
        assert np.array_equal(out[name], coarse), name
    np.testing.assert_array_equal(out["t_start"], [10, 10])


def test_hypotheses_shapes_and_determinism_per_seed():
    run = functools.partial(_refine, inputs=_inputs())
    first, again, other = run(jax.random.key(5)), run(jax.random.key(5)), run(jax.random.key(6))
    assert first["hypotheses"].shape == (3, B, T, J, 3)
    assert first["refined_3d"].shape == (B, T, J, 3) and first["t_start"].shape == (B,)
    assert first["resample_mask"].shape == (B, T, J) and first["resample_mask"].dtype == bool
    for name in first:
        assert np.array_equal(first[name], again[name]), name
    mask = np.asarray(first["resample_mask"])
    hyps, other_hyps = np.asarray(first["hypotheses"]), np.asarray(other["hypotheses"])
    assert np.all(hyps[:, mask] != other_hyps[:, mask])
    assert np.all(hyps[0][mask] != hyps[1][mask])  # hypotheses differ from each other


def test_top_fraction_selects_the_largest_sigmas_per_frame():
    _, log_sigma, _, _ = _inputs()
    mask = np.asarray(diffusion.select_joints(log_sigma, _refine_config(selection="top_fraction")))
    assert np.all(mask.sum(-1) == 4) and not mask[..., 0].any()
    ls = np.asarray(log_sigma)
    for b, t in np.ndindex(B, T):
        chosen = ls[b, t, mask[b, t]]
        others = ls[b, t, 1:][~mask[b, t, 1:]]
        assert chosen.min() > others.max()


def test_window_fraction_selects_the_largest_sigmas_of_each_window():
    _, log_sigma, _, _ = _inputs()
    log_sigma = log_sigma.at[0, 0, 1:].set(5.0)  # frame 0 of window 0: every joint unsure
    config = _refine_config(selection="window_fraction", top_fraction=0.25)
    mask = np.asarray(diffusion.select_joints(log_sigma, config))
    assert np.all(mask.sum((-2, -1)) == round(0.25 * T * (J - 1))) and not mask[..., 0].any()
    assert mask[0, 0, 1:].all()  # a bad frame gets all its joints, not a quarter of them
    ls = np.asarray(log_sigma)
    for b in range(B):
        chosen, others = ls[b][mask[b]], ls[b][:, 1:][~mask[b][:, 1:]]
        assert chosen.min() >= others.max()
    # Scale-free: multiplying every sigma by 10 selects the same joints.
    again = diffusion.select_joints(log_sigma + np.log(10.0), config)
    np.testing.assert_array_equal(np.asarray(again), mask)


def test_start_timestep_grows_with_sigma_and_matches_the_noise_level():
    config = _refine_config(t_min=0, t_max=999, start_factor=1.5)
    scales = np.array([0.005, 0.02, 0.05, 0.1, 0.2, 0.5])
    log_sigma = jnp.log(jnp.broadcast_to(jnp.asarray(scales)[:, None, None], (6, T, J)))
    mask = jnp.ones((6, T, J), bool)
    t = np.asarray(diffusion.start_timestep(SCHEDULE, log_sigma, mask, config))
    assert np.all(np.diff(t) > 0)
    nsr = np.asarray(diffusion.noise_to_signal(SCHEDULE))
    assert np.all(nsr[t] >= 1.5 * scales * (1 - 1e-6)) and np.all(nsr[t - 1] < 1.5 * scales)
    clipped = diffusion.start_timestep(SCHEDULE, log_sigma, mask, _refine_config(t_max=100))
    assert np.asarray(clipped).max() == 100 and np.asarray(clipped).min() == 10


def test_estimate_root_recovers_the_translation_under_a_pinhole_camera():
    rng = np.random.default_rng(7)
    pose = rng.normal(0, 0.3, (B, T, J, 3)).astype(np.float32)
    pose[..., 0, :] = 0
    root = np.stack(
        [rng.uniform(-0.5, 0.5, (B, T)), rng.uniform(-0.5, 0.5, (B, T)), rng.uniform(3, 6, (B, T))],
        -1,
    ).astype(np.float32)
    intrinsics = np.broadcast_to(
        np.array([1.1, 1.1, 0.02, -0.01, 0, 0, 0, 0, 0], np.float32), (B, T, 9)
    )
    kp = camera.project_to_2d_linear(pose + root[..., None, :], intrinsics)
    weights = rng.uniform(0.1, 1.0, (B, T, J)).astype(np.float32)
    est = diffusion.estimate_root(*(jnp.asarray(a) for a in (kp, pose, intrinsics, weights)))
    np.testing.assert_allclose(est, root, atol=2e-4)


def test_reprojection_selection_picks_the_best_hypothesis_per_joint():
    coarse, _, kp, intrinsics = _inputs()
    root = jnp.broadcast_to(jnp.array([0.1, -0.2, 4.0]), (B, T, 3))
    rng = np.random.default_rng(8)
    best = rng.integers(0, 3, (B, T, J))
    offsets = np.zeros((3, B, T, J, 3), np.float32)
    for h in range(3):  # lateral offsets of 5-15 cm everywhere but at the best hypothesis
        offsets[h, ..., 0] = np.where(best == h, 0.0, 0.05 * (h + 1) * rng.choice([-1, 1]))
    hypotheses = coarse[None] + offsets
    intrinsics_t = jnp.broadcast_to(intrinsics[:, None], (B, T, 9))
    selected = diffusion.reprojection_select(hypotheses, kp, intrinsics_t, root)
    expected = np.take_along_axis(np.asarray(hypotheses), best[None, ..., None], axis=0)[0]
    np.testing.assert_array_equal(selected, expected)
    # refine's reprojection aggregate is this selection over its own hypotheses.
    out = _refine(jax.random.key(1), _inputs(), root)
    again = diffusion.reprojection_select(out["hypotheses"], kp, intrinsics_t, root)
    assert np.array_equal(out["refined_reproj"], again)


@pytest.mark.parametrize(
    "match, sigma_frames, overrides",
    [
        ("selection", None, {"selection": "nope"}),
        ("log_sigma", 1, {}),
        ("t_min", None, {"t_max": 1000}),
    ],
)
def test_bad_refine_inputs_raise(match, sigma_frames, overrides):
    coarse, log_sigma, kp, intrinsics = _inputs()
    with pytest.raises(ValueError, match=match):
        diffusion.refine(
            _shrink_denoiser,
            SCHEDULE,
            coarse,
            log_sigma[:, :sigma_frames],
            kp,
            intrinsics,
            jax.random.key(0),
            config=_refine_config(**overrides),
        )


def test_training_start_mixes_coarse_and_clean_per_window():
    x0 = jnp.zeros((400, T, J, 3))
    coarse = jnp.ones((400, T, J, 3))
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(diffusion.training_start(key, x0, coarse, 1.0), coarse)
    np.testing.assert_array_equal(diffusion.training_start(key, x0, coarse, 0.0), x0)
    start = np.asarray(diffusion.training_start(key, x0, coarse, 0.25))
    per_window = start.reshape(400, -1)
    # Each window is wholly one or the other, about a quarter of them coarse.
    assert np.all(per_window.min(1) == per_window.max(1))
    assert 0.18 < per_window[:, 0].mean() < 0.32
    with pytest.raises(ValueError, match="coarse_start_fraction"):
        diffusion.training_start(key, x0, coarse, 1.5)


def test_simulate_coarse_is_calibrated():
    noise_config = gpc_base.get_config("tiny").gt_noise
    noise_config.sigma_jitter = 0.0
    pose = jnp.zeros((64, 27, J, 3))
    simulate = jax.jit(functools.partial(diffusion.simulate_coarse, noise_config=noise_config))
    coarse, log_sigma = simulate(jax.random.key(0), pose)
    assert coarse.shape == pose.shape and log_sigma.shape == pose.shape[:-1]
    assert np.all(np.asarray(coarse)[..., 0, :] == 0)
    sigma = np.exp(np.asarray(log_sigma))
    std = np.sqrt(np.asarray(noise_config.joint_std) ** 2 + noise_config.outlier_std**2)
    outliers = np.isclose(sigma, std, rtol=1e-4) & (np.arange(J) > 0)
    assert 0.05 < outliers[..., 1:].mean() < 0.15  # outlier_rate 0.1
    # The per-coordinate error divided by the synthetic sigma is standard normal.
    z = np.asarray(coarse)[..., 1:, :] / sigma[..., 1:, None]
    assert abs(z.std() - 1) < 0.02 and abs(z.mean()) < 0.02


def test_denoiser_passes_is_hypotheses_times_steps():
    config = _refine_config(num_hypotheses=4, num_steps=3)
    assert diffusion.denoiser_passes(config) == 12
