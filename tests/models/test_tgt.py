"""Tests for gentg_jax.models (the TGT and its layers); tiny shapes only."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tgt_base
from gentg_jax import skeleton
from gentg_jax.models import TemporalGraphLimbTransformer, layers, trunk

B, T = 2, 9


def tiny_model(**overrides) -> TemporalGraphLimbTransformer:
    """The tiny joint+limb TGT (limb tokens are off in the default config), so that every switch
    has something to switch; `overrides` set model fields."""
    config = tgt_base.get_config("tiny").model
    config.update({"use_limb_tokens": True, **overrides})
    return TemporalGraphLimbTransformer.from_config(config)


def inputs(batch: int = B, frames: int = T, seed: int = 0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    keypoints = 0.3 * jax.random.normal(k1, (batch, frames, 17, 2))
    scores = jax.random.uniform(k2, (batch, frames, 17), minval=0.2, maxval=1.0)
    return keypoints, scores


def random_params(model, seed: int = 0):
    """Random params of the model's shapes, drawn with numpy: no init compile (slow on CPU)."""
    rng = np.random.default_rng(seed)
    keypoints, scores = inputs()
    shapes = jax.eval_shape(model.init, jax.random.key(0), keypoints, scores)["params"]

    def draw(path, leaf):
        offset = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
        return jnp.asarray(offset + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def forward(model: TemporalGraphLimbTransformer, train: bool):
    """One jitted forward per (model, train): eager linen runs op by op and is far slower."""
    return jax.jit(lambda p, x, s, r: model.apply({"params": p}, x, s, train=train, rngs=r)[0])


def apply(model, params, keypoints, scores, train=False, rngs=None):
    return forward(model, train)(params, keypoints, scores, rngs)


def param_shapes(model):
    """The param tree's shapes, traced without compiling (init compiles slowly on CPU)."""
    keypoints, scores = inputs()
    tree = jax.eval_shape(model.init, jax.random.key(0), keypoints, scores)["params"]
    return jax.tree.map(lambda leaf: leaf.shape, tree)


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model()
    return model, random_params(model)


def test_shapes_dtypes_any_length_and_root(tiny):
    model, params = tiny
    for batch, frames in ((2, 1), (1, 27)):
        keypoints, scores = inputs(batch, frames)
        out = apply(model, params, keypoints, scores)
        assert out["joints_3d"].shape == (batch, frames, 17, 3)
        assert out["bones_3d"].shape == (batch, frames, 16, 3)
        assert out["log_sigma"].shape == (batch, frames, 17)
        for value in out.values():
            assert value.dtype == jnp.float32
            assert np.all(np.isfinite(value))
        np.testing.assert_array_equal(out["joints_3d"][:, :, skeleton.ROOT], 0.0)
        low, high = model.log_sigma_range
        assert np.all((out["log_sigma"] >= low) & (out["log_sigma"] <= high))


@pytest.mark.parametrize("variant", ["tiny", "base", "large"])
def test_variant_shapes_by_eval_shape(variant):
    config = tgt_base.get_config(variant).model
    model = TemporalGraphLimbTransformer.from_config(config)
    frames = config.max_frames
    keypoints = jax.ShapeDtypeStruct((1, frames, 17, 2), jnp.float32)

    def run(keypoints):
        params = model.init(jax.random.key(0), keypoints, None)["params"]
        return model.apply({"params": params}, keypoints, None), params

    (out, aux), params = jax.eval_shape(run, keypoints)
    assert out["joints_3d"].shape == (1, frames, 17, 3)
    assert out["bones_3d"].shape == (1, frames, 16, 3)
    assert out["log_sigma"].shape == (1, frames, 17)
    assert aux["tokens"].shape == (1, frames, model.num_tokens, config.dim)
    assert model.num_tokens == 17  # the default: joint tokens only
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((out, params)))
    qkv = params["layers"]["spatial"]["attn"]["qkv"]["kernel"]
    assert qkv.shape[0] == config.depth  # scanned: one leading axis for the layers


def test_input_errors_and_default_scores(tiny):
    model, params = tiny
    keypoints, _ = inputs()
    np.testing.assert_allclose(
        apply(model, params, keypoints, None)["joints_3d"],
        apply(model, params, keypoints, jnp.ones(keypoints.shape[:-1]))["joints_3d"],
    )
    with pytest.raises(ValueError, match="max_frames"):
        apply(model, params, *inputs(frames=28))
    with pytest.raises(ValueError, match="keypoints_2d"):
        apply(model, params, keypoints[..., :1], None)
    with pytest.raises(ValueError, match="scores"):
        apply(model, params, keypoints, jnp.ones((B, T, 16)))
    config = tgt_base.get_config("tiny").model
    config.unknown_field = 1
    with pytest.raises(ValueError, match="unknown_field"):
        TemporalGraphLimbTransformer.from_config(config)


def test_limb_tokens_switch(tiny):
    model, params = tiny
    keypoints, scores = inputs()
    on = apply(model, params, keypoints, scores)
    no_limbs = tiny_model(use_limb_tokens=False)
    # The same params minus everything limb-specific; the joint-only graph has fewer hop values.
    off_params = {k: v for k, v in params.items() if k not in ("limb_embed", "bone_head")}
    off_params["token_embed"] = {"embedding": params["token_embed"]["embedding"][:17]}
    joint_hops = skeleton.graph_hop_distances()[:17, :17]
    off_params["layers"] = dict(params["layers"])
    table = params["layers"]["graph_bias"]["table"][:, : joint_hops.max() + 1]
    off_params["layers"]["graph_bias"] = {"table": table}
    assert jax.tree.map(jnp.shape, off_params) == param_shapes(no_limbs)
    off = apply(no_limbs, off_params, keypoints, scores)
    # Without limb tokens the bones are the joint head's own bone vectors.
    np.testing.assert_allclose(
        off["bones_3d"], skeleton.limb_vectors(off["joints_3d"]), rtol=1e-6, atol=1e-7
    )
    assert not np.allclose(on["joints_3d"], off["joints_3d"], atol=1e-4)
    # The limb head is its own prediction, not derived from the joints.
    assert not np.allclose(on["bones_3d"], skeleton.limb_vectors(on["joints_3d"]), atol=1e-4)


def test_limbs_on_joints_adds_limb_embeddings_to_the_joint_each_limb_ends_at():
    plain = tiny_model(use_limb_tokens=False)
    fused = tiny_model(use_limb_tokens=False, limbs_on_joints=True)
    params = random_params(fused)
    plain_params = {k: v for k, v in params.items() if k not in ("limb_embed", "bone_head")}
    assert jax.tree.map(jnp.shape, plain_params) == param_shapes(plain)
    keypoints, scores = inputs()
    # A zero limb embedding leaves the 17-token network's answer.
    silent = dict(params, limb_embed=jax.tree.map(jnp.zeros_like, params["limb_embed"]))
    np.testing.assert_allclose(
        apply(fused, silent, keypoints, scores)["joints_3d"],
        apply(plain, plain_params, keypoints, scores)["joints_3d"],
        rtol=1e-6,
        atol=1e-7,
    )
    # A limb embedding that is only a bias adds it to the 16 non-root joints' tokens, as a
    # token embedding of those joints would.
    bias = params["limb_embed"]["bias"]
    only_bias = dict(silent, limb_embed={**silent["limb_embed"], "bias": bias})
    shifted = params["token_embed"]["embedding"].at[skeleton.LIMB_CHILDREN].add(bias)
    as_token_embed = dict(plain_params, token_embed={"embedding": shifted})
    np.testing.assert_allclose(
        apply(fused, only_bias, keypoints, scores)["joints_3d"],
        apply(plain, as_token_embed, keypoints, scores)["joints_3d"],
        atol=1e-5,  # the same sum in another order
    )
    out = apply(fused, params, keypoints, scores)
    assert out["bones_3d"].shape == (B, T, 16, 3)
    assert not np.allclose(out["bones_3d"], skeleton.limb_vectors(out["joints_3d"]), atol=1e-4)
    with pytest.raises(ValueError, match="limbs_on_joints=True needs use_limb_tokens=False"):
        tiny_model(limbs_on_joints=True)


def test_graph_bias_switch_and_hop_indexing(tiny):
    model, params = tiny
    keypoints, scores = inputs()
    no_bias = tiny_model(use_graph_bias=False)
    shared = {k: v for k, v in params.items() if k != "layers"}
    shared["layers"] = {k: v for k, v in params["layers"].items() if k != "graph_bias"}
    assert jax.tree.map(jnp.shape, shared) == param_shapes(no_bias)
    zeroed = jax.tree.map(lambda leaf: leaf, params)
    zeroed["layers"]["graph_bias"]["table"] = jnp.zeros_like(
        params["layers"]["graph_bias"]["table"]
    )
    off = apply(no_bias, shared, keypoints, scores)["joints_3d"]
    np.testing.assert_allclose(apply(model, zeroed, keypoints, scores)["joints_3d"], off, atol=1e-6)
    assert not np.allclose(apply(model, params, keypoints, scores)["joints_3d"], off, atol=1e-5)

    hops = skeleton.graph_hop_distances()
    num_heads = 3
    table = 10.0 * np.arange(hops.max() + 1)[:, None] + np.arange(num_heads)[None, :]
    module = layers.HopBias(layers.as_nested_tuple(hops), num_heads)
    bias = np.asarray(module.apply({"params": {"table": jnp.asarray(table)}}))
    assert bias.shape == (num_heads, 33, 33)
    for head in range(num_heads):
        np.testing.assert_array_equal(bias[head], 10.0 * hops + head)
        np.testing.assert_array_equal(bias[head], bias[head].T)


def test_spatial_first_switch_orders_blocks():
    keypoints, _ = inputs()
    tokens = jax.random.normal(jax.random.key(3), (B, T, 33, 32))
    hops = layers.as_nested_tuple(skeleton.graph_hop_distances())
    kwargs = dict(num_heads=2, mlp_ratio=1.5, hop_distances=hops)
    temporal_first = layers.SpatioTemporalLayer(spatial_first=False, **kwargs)
    spatial_first = layers.SpatioTemporalLayer(spatial_first=True, **kwargs)
    params = jax.jit(temporal_first.init)(jax.random.key(0), tokens)["params"]
    block = layers.TransformerBlock(num_heads=2, mlp_ratio=1.5)

    @jax.jit
    def run(params, tokens):
        got, _ = temporal_first.apply({"params": params}, tokens)
        other, _ = spatial_first.apply({"params": params}, tokens)
        # Reference: the same two blocks composed by hand, temporal then spatial.
        bias = layers.HopBias(hops, 2).apply({"params": params["graph_bias"]})
        x = jnp.swapaxes(tokens, 1, 2)
        x = jnp.swapaxes(block.apply({"params": params["temporal"]}, x), 1, 2)
        return got, other, block.apply({"params": params["spatial"]}, x, bias)

    got, other, want = run(params, tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, other, atol=1e-4)


def test_temporal_tokens_limit_the_temporal_block_to_the_leading_tokens():
    tokens = jax.random.normal(jax.random.key(4), (B, T, 33, 32))
    hops = layers.as_nested_tuple(skeleton.graph_hop_distances())
    kwargs = dict(num_heads=2, mlp_ratio=1.5, hop_distances=hops)
    joints_only = layers.SpatioTemporalLayer(temporal_tokens=17, **kwargs)
    every_token = layers.SpatioTemporalLayer(**kwargs)
    params = jax.jit(joints_only.init)(jax.random.key(0), tokens)["params"]
    shapes = jax.eval_shape(every_token.init, jax.random.key(0), tokens)["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(lambda leaf: leaf.shape, shapes)
    block = layers.TransformerBlock(num_heads=2, mlp_ratio=1.5)

    @jax.jit
    def run(params, tokens):
        got, _ = joints_only.apply({"params": params}, tokens)
        # Reference by hand: the spatial block on all 33 tokens, then the temporal block on the
        # frames of the 17 joint tokens; the 16 limb tokens leave the layer as the spatial
        # block left them.
        bias = layers.HopBias(hops, 2).apply({"params": params["graph_bias"]})
        x = block.apply({"params": params["spatial"]}, tokens, bias)
        joints = jnp.swapaxes(x[:, :, :17], 1, 2)
        joints = jnp.swapaxes(block.apply({"params": params["temporal"]}, joints), 1, 2)
        return got, jnp.concatenate([joints, x[:, :, 17:]], axis=2)

    got, want = run(params, tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_limb_temporal_switch_keeps_params_and_changes_the_answer(tiny):
    model, params = tiny
    assert not model.limb_temporal  # the default: limb tokens are spatial only
    keypoints, scores = inputs()
    temporal_limbs = tiny_model(limb_temporal=True)
    assert jax.tree.map(jnp.shape, params) == param_shapes(temporal_limbs)
    off = apply(model, params, keypoints, scores)["joints_3d"]
    on = apply(temporal_limbs, params, keypoints, scores)["joints_3d"]
    assert np.all(np.isfinite(on)) and not np.allclose(on, off, atol=1e-4)
    # A config saved before the field existed: limb tokens in the temporal attention, as trained.
    saved = tgt_base.get_config("tiny").model
    del saved["limb_temporal"]
    assert TemporalGraphLimbTransformer.from_config(saved).limb_temporal


def test_stop_gradient_sigma_head_trains_only_itself():
    keypoints, scores = inputs()

    def sigma_grads(model, params):
        def total_log_sigma(p):
            return model.apply({"params": p}, keypoints, scores)[0]["log_sigma"].sum()

        grads = jax.jit(jax.grad(total_log_sigma))(params)
        return {name: any(np.any(x != 0) for x in jax.tree.leaves(g)) for name, g in grads.items()}

    detached = tiny_model(sigma_stop_gradient=True, sigma_hidden=8)
    shapes = param_shapes(detached)
    assert shapes["sigma_hidden"]["kernel"] == (detached.dim, 8)
    assert shapes["sigma"]["kernel"] == (8, 1)
    params = random_params(detached)
    moved = sigma_grads(detached, params)
    assert moved == {name: name.startswith("sigma") for name in params}
    # Without the stop-gradient the same head's loss reaches the trunk; the joints are the same.
    attached = tiny_model(sigma_stop_gradient=False, sigma_hidden=8)
    assert sigma_grads(attached, params)["layers"]
    np.testing.assert_array_equal(
        apply(detached, params, keypoints, scores)["joints_3d"],
        apply(attached, params, keypoints, scores)["joints_3d"],
    )
    # A config saved before the fields existed restores the linear, attached head it trained.
    saved = tgt_base.get_config("tiny").model
    del saved["sigma_stop_gradient"], saved["sigma_hidden"]
    restored = TemporalGraphLimbTransformer.from_config(saved)
    assert not restored.sigma_stop_gradient and "sigma_hidden" not in param_shapes(restored)


def test_bfloat16_compute_float32_outputs(tiny):
    model, params = tiny
    keypoints, scores = inputs()
    bf16 = tiny_model(dtype="bfloat16")
    out, aux = jax.jit(bf16.apply)({"params": params}, keypoints, scores)
    assert aux["tokens"].dtype == jnp.bfloat16
    assert all(v.dtype == jnp.float32 for v in out.values())
    reference = apply(model, params, keypoints, scores)["joints_3d"]
    error = np.abs(out["joints_3d"] - reference).max()
    assert error < 0.05 * np.abs(reference).max()
    with pytest.raises(ValueError, match="dtype"):
        apply(tiny_model(dtype="float16"), params, keypoints, scores)


def test_remat_matches_plain_scan(tiny):
    model, params = tiny
    keypoints, scores = inputs()
    target = jax.random.normal(jax.random.key(5), (B, T, 17, 3))

    def loss_and_grad(module):
        def loss(p):
            return jnp.mean((apply(module, p, keypoints, scores)["joints_3d"] - target) ** 2)

        return jax.jit(jax.value_and_grad(loss))(params)

    plain_loss, plain_grad = loss_and_grad(model)
    remat_loss, remat_grad = loss_and_grad(tiny_model(remat=True))
    np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), remat_grad, plain_grad
    )


def test_attention_implementations_agree(tiny):
    model, params = tiny
    keypoints, scores = inputs()
    einsum = apply(model, params, keypoints, scores)["joints_3d"]
    xla = apply(tiny_model(attention_impl="xla"), params, keypoints, scores)["joints_3d"]
    np.testing.assert_allclose(einsum, xla, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("micro_mib", [0.01, 0.15])  # 1 and 2 sequences per micro-batch
def test_cpu_micro_batches_give_the_whole_batch_result(tiny, micro_mib):
    if not layers.cpu_paths():
        pytest.skip("CPU micro-batches exist on the CPU path only")
    model, params = tiny
    keypoints, scores = inputs(batch=5)  # 2 sequences per chunk: the last chunk is padded
    whole = apply(tiny_model(cpu_micro_batch_mib=0.0), params, keypoints, scores)
    looped_model = tiny_model(cpu_micro_batch_mib=micro_mib)
    assert looped_model._micro_batch(keypoints) == (1 if micro_mib < 0.1 else 2)
    looped = apply(looped_model, params, keypoints, scores)
    # Float rounding only: the loop body and the whole-batch program are compiled apart.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), looped, whole)
    # The loop is a while loop in the compiled program; training lifts the batch at once.
    lowered = forward(looped_model, False).lower(params, keypoints, scores, None).as_text()
    assert "while" in lowered
    rngs = {"dropout": jax.random.key(0)}
    trained = forward(looped_model, True).lower(params, keypoints, scores, rngs).as_text()
    assert trained.count("while") < lowered.count("while")


def test_micro_batched_pads_and_trims():
    x = jnp.arange(7.0)[:, None] * jnp.ones((7, 3))
    out = trunk.micro_batched(lambda a: {"double": 2 * a, "sum": a.sum(-1)}, (x,), 3)
    np.testing.assert_array_equal(out["double"], 2 * x)
    np.testing.assert_array_equal(out["sum"], x.sum(-1))


def test_dropout_only_in_train_mode(tiny):
    plain, params = tiny  # dropout rates add no params
    model = tiny_model(dropout=0.1, drop_path=0.1)
    keypoints, scores = inputs()
    k1, k2 = jax.random.key(1), jax.random.key(2)
    eval1 = apply(model, params, keypoints, scores, train=False, rngs={"dropout": k1})
    np.testing.assert_array_equal(
        eval1["joints_3d"], apply(plain, params, keypoints, scores)["joints_3d"]
    )
    train1 = apply(model, params, keypoints, scores, train=True, rngs={"dropout": k1})
    again = apply(model, params, keypoints, scores, train=True, rngs={"dropout": k1})
    train2 = apply(model, params, keypoints, scores, train=True, rngs={"dropout": k2})
    np.testing.assert_array_equal(train1["joints_3d"], again["joints_3d"])
    assert not np.allclose(train1["joints_3d"], train2["joints_3d"])
    assert not np.allclose(train1["joints_3d"], eval1["joints_3d"])


@pytest.mark.parametrize(
    "bias_shape, chunk_mib, unroll", [((2, 5, 5), 0.002, True), ((7, 2, 5, 5), 0.0033, False)]
)
def test_chunked_attention_matches_unchunked(bias_shape, chunk_mib, unroll):
    # 7 sequences of length 5, 2 heads of 4 channels: 840 bytes of working set each. 0.002 MiB
    # holds 2 (7 chunks of 1); 0.0033 MiB holds 4 (7 is prime: padded to 2 chunks of 4).
    x = jax.random.normal(jax.random.key(0), (7, 5, 8))
    bias = jax.random.normal(jax.random.key(1), bias_shape)
    plain = layers.Attention(num_heads=2, implementation="einsum")
    params = jax.jit(plain.init)(jax.random.key(2), x, bias)["params"]

    def loss(module):
        fn = lambda p, x, b: jnp.sum(jnp.sin(module.apply({"params": p}, x, b)))
        return jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2)))(params, x, bias)

    want_value, want_grads = loss(plain)
    value, grads = loss(plain.clone(chunk_mib=chunk_mib, unroll_chunks=unroll))
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, want_grads
    )


def test_drop_path_drops_whole_samples():
    x = jnp.ones((64, 3, 4))
    out = layers.DropPath(deterministic=False).apply(
        {}, x, 0.5, rngs={"dropout": jax.random.key(0)}
    )
    per_sample = np.asarray(out).reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0 < np.sum(per_sample[:, 0] == 0) < 64


def test_attention_matches_numpy_reference():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    bias = jax.random.normal(jax.random.key(1), (2, 5, 5))
    module = layers.Attention(num_heads=2)
    params = jax.jit(module.init)(jax.random.key(2), x, bias)["params"]
    got = jax.jit(module.apply)({"params": params}, x, bias)
    p = jax.tree.map(np.asarray, params)
    qkv = (
        np.einsum("bld,dthc->btlhc", np.asarray(x), p["qkv"]["kernel"])
        + p["qkv"]["bias"][None, :, None]
    )
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    logits = np.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(4) + np.asarray(bias)[None]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhc->bqhc", probs, v)
    want = np.einsum("bqhc,hcd->bqd", heads, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conditioned_block_starts_as_identity_then_depends_on_cond():
    x = jax.random.normal(jax.random.key(0), (2, 4, 17, 16))
    cond = jax.random.normal(jax.random.key(1), (2, 1, 1, 8))
    block = layers.TransformerBlock(num_heads=2)
    params = jax.jit(block.init)(jax.random.key(2), x, None, 1.0, cond)["params"]
    run = jax.jit(lambda p, cond: block.apply({"params": p}, x, None, 1.0, cond))
    np.testing.assert_array_equal(run(params, cond), x)
    params["modulation"]["kernel"] = 0.1 * jnp.ones_like(params["modulation"]["kernel"])
    assert not np.allclose(run(params, cond), run(params, 2.0 * cond))


def test_embeddings():
    positions = np.array([0, 1, 7, 500])
    got = layers.sinusoidal_embedding(positions, 8, max_period=100.0)
    freqs = 100.0 ** (-np.arange(4) / 4)
    angles = positions[:, None] * freqs
    want = np.concatenate([np.cos(angles), np.sin(angles)], -1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="even"):
        layers.sinusoidal_embedding(positions, 7)
    timestep = layers.TimestepEmbedding(32)
    params = timestep.init(jax.random.key(0), jnp.array([1, 2]))
    assert timestep.apply(params, jnp.array([1, 2, 3])).shape == (3, 32)
    table = layers.LearnedEmbedding(10, 4)
    params = table.init(jax.random.key(0))
    assert table.apply(params, 3).shape == (3, 4)
    with pytest.raises(ValueError, match="exceeds"):
        table.apply(params, 11)


def analytic_flops_per_frame(dim, depth, mlp_ratio, tokens, frames, temporal_tokens):
    """Matmul FLOPs (2 per multiply-add) of one frame's forward pass."""
    projections = 2 * (4 + 2 * mlp_ratio) * dim**2  # qkv, out and MLP of one token in a block
    spatial_attention = 2 * 2 * tokens**2 * dim
    temporal_attention = 2 * 2 * temporal_tokens * frames * dim
    blocks = projections * (tokens + temporal_tokens)
    return depth * (blocks + spatial_attention + temporal_attention)


def test_tiny_flops_match_analytic_estimate_and_unroll_matches_loop(tiny):
    model, params = tiny
    config = tgt_base.get_config("tiny").model
    # XLA counts a loop body once: unroll the layer scan and the attention chunk loop (a small
    # chunk size makes the tiny model chunk its attention, so that path is counted too).
    unrolled = tiny_model(scan_unroll=config.depth, attention_chunk_mib=0.5)
    frames = config.max_frames
    keypoints, scores = inputs(batch=1, frames=frames)
    fn = jax.jit(lambda p, x, s: unrolled.apply({"params": p}, x, s)[0])
    compiled = fn.lower(params, keypoints, scores).compile()
    flops = compiled.cost_analysis()["flops"] / frames
    assert unrolled.temporal_tokens == 17  # the default: limb tokens are spatial only
    estimate = analytic_flops_per_frame(
        config.dim, config.depth, config.mlp_ratio, 33, frames, temporal_tokens=17
    )
    assert flops > 0
    assert 0.8 < flops / estimate < 1.5, (flops, estimate)
    # Limb tokens in the temporal blocks too: 33 tokens there, and XLA counts that much more.
    all_temporal = tiny_model(scan_unroll=config.depth, limb_temporal=True)
    fn_all = jax.jit(lambda p, x, s: all_temporal.apply({"params": p}, x, s)[0])
    flops_all = fn_all.lower(params, keypoints, scores).compile().cost_analysis()["flops"] / frames
    estimate_all = analytic_flops_per_frame(
        config.dim, config.depth, config.mlp_ratio, 33, frames, temporal_tokens=33
    )
    assert flops_all - flops == pytest.approx(estimate_all - estimate, rel=0.3)
    looped = apply(model, params, keypoints, scores)["joints_3d"]
    np.testing.assert_allclose(
        compiled(params, keypoints, scores)["joints_3d"], looped, rtol=1e-4, atol=1e-5
    )


def _forward_and_grads(model, params, keypoints, scores):
    """A freshly traced forward and loss gradient (jit caches keep the path they traced)."""
    target = jax.random.normal(jax.random.key(7), keypoints.shape[:3] + (3,))
    rngs = {"dropout": jax.random.key(1)}

    def loss(p):
        out = model.apply({"params": p}, keypoints, scores, train=True, rngs=rngs)[0]
        return jnp.mean((out["joints_3d"] - target) ** 2)

    fwd = jax.jit(lambda p: model.apply({"params": p}, keypoints, scores)[0])
    lowered = fwd.lower(params).as_text()
    return fwd(params), jax.jit(jax.grad(loss))(params), lowered


def test_accelerator_path_gives_the_cpu_path_numbers(monkeypatch):
    if jax.default_backend() != "cpu":
        pytest.skip("compares the two paths on a CPU host")
    # Small layers, fast to compile (depth > scan_unroll, else the loops are unrolled for FLOP
    # counting); small MiB sizes make the CPU path chunk the attention and loop over
    # 1-sequence micro-batches.
    model = tiny_model(
        dim=32, num_heads=2, depth=2, attention_chunk_mib=0.01, cpu_micro_batch_mib=0.01
    )
    params = random_params(model)
    keypoints, scores = inputs(batch=3)
    monkeypatch.delenv(layers.FORCE_ACCELERATOR_PATH_ENV, raising=False)
    assert layers.cpu_paths()
    cpu_out, cpu_grads, cpu_hlo = _forward_and_grads(model, params, keypoints, scores)

    monkeypatch.setenv(layers.FORCE_ACCELERATOR_PATH_ENV, "1")
    assert not layers.cpu_paths()
    out, grads, hlo = _forward_and_grads(model, params, keypoints, scores)
    # The accelerator path has no micro-batch or attention-chunk loops: only the layer scan.
    assert hlo.count("stablehlo.while") == 1 < cpu_hlo.count("stablehlo.while")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), out, cpu_out)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, cpu_grads
    )


def test_attention_auto_resolution(monkeypatch):
    if jax.default_backend() != "cpu":
        pytest.skip("the resolution on a CPU host")
    monkeypatch.setenv(layers.FORCE_ACCELERATOR_PATH_ENV, "1")
    q32 = jnp.zeros((2, 33, 8, 32), jnp.float32)
    # On this CPU host the accelerator path takes XLA's dot_product_attention; cuDNN needs a GPU.
    assert layers.resolve_attention("auto", q32) == "xla"
    assert layers.resolve_attention("einsum", q32) == "einsum"
    monkeypatch.setenv(layers.FORCE_ACCELERATOR_PATH_ENV, "0")
    assert layers.resolve_attention("auto", q32) == "einsum"
    with pytest.raises(ValueError, match="attention implementation"):
        layers._attend(q32, q32, q32, None, "flash")
