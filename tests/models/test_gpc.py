"""Tests for the GPC denoiser (gentg_jax.models.gpc) and configs/gpc_base.py."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import gpc_base, tgt_base
from gentg_jax import diffusion
from gentg_jax.models import gpc

B = 2


@functools.cache
def _tiny():
    """The tiny denoiser, random inputs and params with every weight non-zero.

    Fresh adaLN-Zero blocks are the identity, so the params are perturbed to make the layers, and
    with them the mixing across joints and frames, take part in the output.
    """
    config = gpc_base.get_config("tiny")
    model = gpc.PoseDenoiser.from_config(config.model)
    num_frames = config.data.num_frames
    keys = jax.random.split(jax.random.key(0), 5)
    inputs = {
        "x_t": jax.random.normal(keys[0], (B, num_frames, 17, 3)),
        "t": jnp.array([5, 300]),
        "keypoints_2d": jax.random.uniform(keys[1], (B, num_frames, 17, 2), minval=-1),
        "coarse_3d": 0.3 * jax.random.normal(keys[2], (B, num_frames, 17, 3)),
        "log_sigma": jax.random.uniform(keys[3], (B, num_frames, 17), minval=-5, maxval=-1),
    }
    params = _init(model, inputs, seed=1)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32), params)
    return model, params, inputs


def _init(model, inputs, seed):
    # The "rbg" key compiles much faster on CPU than threefry for a whole parameter tree.
    return jax.jit(model.init)(jax.random.key(seed, impl="rbg"), **inputs)["params"]


@functools.partial(jax.jit, static_argnames=("model",))
def _apply(model, params, inputs):
    return model.apply({"params": params}, **inputs)


def test_tiny_shapes_dtypes_and_root():
    model, params, inputs = _tiny()
    x0_hat, aux = _apply(model, params, inputs)
    assert x0_hat.shape == inputs["x_t"].shape and x0_hat.dtype == jnp.float32
    assert aux["tokens"].shape == (B, 27, 17, model.dim)
    assert np.all(np.asarray(x0_hat)[:, :, 0] == 0)
    again, _ = _apply(model, params, inputs)
    assert np.array_equal(x0_hat, again)


def test_base_shapes_by_eval_shape():
    model = gpc.PoseDenoiser.from_config(gpc_base.get_config("base").model)
    x = jax.ShapeDtypeStruct((1, 243, 17, 3), jnp.float32)
    args = (
        x,
        jax.ShapeDtypeStruct((1,), jnp.int32),
        jax.ShapeDtypeStruct((1, 243, 17, 2), jnp.float32),
        x,
        jax.ShapeDtypeStruct((1, 243, 17), jnp.float32),
    )
    variables = jax.eval_shape(model.init, jax.random.key(0), *args)
    x0_hat, aux = jax.eval_shape(model.apply, variables, *args)
    assert x0_hat.shape == (1, 243, 17, 3) and x0_hat.dtype == jnp.float32
    assert aux["tokens"].shape == (1, 243, 17, 128)
    assert variables["params"]["layers"]["spatial"]["attn"]["qkv"]["kernel"].shape[0] == 4


@pytest.mark.parametrize("name", ["x_t", "t", "keypoints_2d", "coarse_3d", "log_sigma"])
def test_output_depends_on_every_input_across_joints_and_frames(name):
    model, params, inputs = _tiny()
    base, _ = _apply(model, params, inputs)
    changed = dict(inputs)
    if name == "t":
        changed["t"] = inputs["t"] + 50
    else:  # perturb one joint of one frame only; other joints and frames must notice.
        changed[name] = inputs[name].at[:, 3, 5].add(0.5)
    out, _ = _apply(model, params, changed)
    diff = np.abs(np.asarray(out) - np.asarray(base)).max(-1)
    assert diff.max() > 1e-4
    if name != "t":
        assert diff[:, 10, 12].min() > 1e-6  # another frame, another joint


def test_fresh_model_returns_the_root_relative_coarse_pose():
    model, _, inputs = _tiny()
    params = _init(model, inputs, seed=3)
    out, _ = _apply(model, params, inputs)
    coarse = inputs["coarse_3d"]
    np.testing.assert_allclose(out, coarse - coarse[:, :, :1], atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    model, params, inputs = _tiny()
    model16 = model.clone(dtype="bfloat16")
    out16, aux = _apply(model16, params, inputs)
    out32, _ = _apply(model, params, inputs)
    assert out16.dtype == jnp.float32 and aux["tokens"].dtype == jnp.bfloat16
    np.testing.assert_allclose(out16, out32, atol=0.1)


def test_dropout_only_in_train_mode():
    model, params, inputs = _tiny()
    model = model.clone(dropout=0.3)
    apply = jax.jit(model.apply, static_argnames="train")
    eval_a, _ = apply({"params": params}, **inputs, rngs={"dropout": jax.random.key(0, impl="rbg")})
    eval_b, _ = apply({"params": params}, **inputs, rngs={"dropout": jax.random.key(1, impl="rbg")})
    train, _ = apply(
        {"params": params}, **inputs, train=True, rngs={"dropout": jax.random.key(0, impl="rbg")}
    )
    assert np.array_equal(eval_a, eval_b) and not np.allclose(train, eval_a)


def test_bad_inputs_raise():
    model, params, inputs = _tiny()
    with pytest.raises(ValueError, match="log_sigma"):
        model.apply({"params": params}, **dict(inputs, log_sigma=inputs["log_sigma"][..., :3]))
    with pytest.raises(ValueError, match="max_frames"):
        long = {k: jnp.concatenate([v, v], 1) if v.ndim > 1 else v for k, v in inputs.items()}
        model.apply({"params": params}, **long)
    with pytest.raises(ValueError, match="does not know"):
        gpc.PoseDenoiser.from_config(ml_collections.ConfigDict({"dim": 8, "depht": 2}))


def test_refine_with_the_denoiser_keeps_confident_joints():
    model, params, inputs = _tiny()
    config = gpc_base.get_config("tiny")
    refine_config = ml_collections.FrozenConfigDict(config.refine)
    schedule = diffusion.make_schedule(config.diffusion)

    @jax.jit
    def run(params, key):
        denoise_fn = gpc.make_denoise_fn(
            model, params, inputs["keypoints_2d"], inputs["coarse_3d"], inputs["log_sigma"]
        )
        intrinsics = jnp.tile(jnp.array([1.1, 1.1, 0.0, 0.0, 0, 0, 0, 0, 0]), (B, 1))
        return diffusion.refine(
            denoise_fn,
            schedule,
            inputs["coarse_3d"],
            inputs["log_sigma"],
            inputs["keypoints_2d"],
            intrinsics,
            key,
            config=refine_config,
        )

    out = run(params, jax.random.key(0))
    mask = np.asarray(out["resample_mask"])
    coarse = np.asarray(inputs["coarse_3d"])
    assert mask.any() and (~mask).any()
    assert np.array_equal(np.asarray(out["refined_3d"])[~mask], coarse[~mask])
    assert not np.allclose(np.asarray(out["refined_3d"])[mask], coarse[mask])
    assert out["hypotheses"].shape == (config.refine.num_hypotheses, B, 27, 17, 3)


@pytest.mark.parametrize("variant", ["tiny", "base", None])
def test_config_variants_load_and_reuse_tgt_sections(variant):
    config = gpc_base.get_config(variant)
    tgt = tgt_base.get_config(variant)
    assert config.task == "gpc" and config.tgt_workdir == "" and config.train_from_gt_noise
    assert config.data.to_dict() == tgt.data.to_dict()
    # the same schedule; no sigma head here, so no sigma-head rate
    assert config.train.to_dict() == {**tgt.train.to_dict(), "sigma_learning_rate": 0.0}
    assert config.model.max_frames == config.data.num_frames
    assert config.diffusion.num_train_steps == 1000 and config.diffusion.schedule == "cosine"
    assert len(config.gt_noise.joint_std) == 17 and config.gt_noise.joint_std[0] == 0
    assert config.refine.t_max < config.diffusion.num_train_steps
    assert diffusion.denoiser_passes(config.refine) == 1  # one DDIM step, one hypothesis
    gpc.PoseDenoiser.from_config(config.model)


def test_unknown_variant_raises():
    with pytest.raises(ValueError, match="variant"):
        gpc_base.get_config("huge")
