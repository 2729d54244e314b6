"""Cost counters: parameters and XLA FLOPs against hand and analytic counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from gentg_jax import profiling
from gentg_jax.models import layers


def compiled_flops(fn, *args) -> float:
    return profiling.xla_flops(jax.jit(fn).lower(*args).compile())


def test_param_count_matches_hand_count():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(5)])
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    assert profiling.param_count(params) == (3 * 8 + 8) + (8 * 5 + 5)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 3)))
    assert profiling.param_count(shapes) == 77


def test_mlp_flops_match_analytic_count():
    model = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(16)])
    x = jnp.ones((64, 32))
    params = model.init(jax.random.key(0), x)
    flops = compiled_flops(model.apply, params, x)
    expected = profiling.dense_flops(64, 32, 128) + profiling.dense_flops(64, 128, 16)
    assert expected == 64 * (128 * (2 * 32 + 1) + 16 * (2 * 128 + 1))
    assert flops == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("implementation", ["xla", "einsum"])
def test_attention_flops_match_analytic_count(implementation):
    batch, length, dim = 4, 16, 64
    model = layers.Attention(num_heads=4, implementation=implementation)
    x = jnp.ones((batch, length, dim))
    params = model.init(jax.random.key(0), x)
    flops = compiled_flops(model.apply, params, x)
    # qkv (3 D^2) and output (D^2) projections, q k^T and p v (L D each), 2 FLOPs per MAC.
    by_hand = batch * length * (2 * 4 * dim * dim + 2 * 2 * length * dim)
    assert profiling.attention_flops(batch, length, dim) == by_hand
    assert flops == pytest.approx(by_hand, rel=0.1)
