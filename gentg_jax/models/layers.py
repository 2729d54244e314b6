"""Reusable Flax linen layers: attention with additive bias, MLP, pre-norm transformer blocks, a
spatio-temporal layer over (frames, tokens) and embeddings (models/trunk.py stacks the layers).

Conventions: every module takes a compute `dtype` (params stay float32) and a static
`deterministic` field rather than a call argument, so that blocks can be scanned and rematerialised
without static-argument plumbing. Randomness (dropout, stochastic depth) uses the 'dropout' stream.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "einsum", "cudnn")
# Set to 1 to make a CPU run take the accelerator code path (tests prove both paths agree).
FORCE_ACCELERATOR_PATH_ENV = "GENTG_FORCE_ACCELERATOR_PATH"
_EMBED_INIT = nn.initializers.normal(stddev=0.02)


def cpu_paths() -> bool:
    """Whether the CPU-only code paths apply: attention chunking (Attention.chunk_mib), the TGT's
    inference micro-batches (cpu_micro_batch_mib) and einsum attention under "auto".

    True on the CPU backend unless $GENTG_FORCE_ACCELERATOR_PATH is 1 / true / yes: then a CPU
    run takes the GPU/TPU path instead, which is how the CPU tests prove that both paths give
    the same numbers. Read when a function is traced (jit caches keep what they traced).
    """
    if os.environ.get(FORCE_ACCELERATOR_PATH_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    return jax.default_backend() == "cpu"


def resolve_attention(implementation: str, q: jax.Array, bias: jax.Array | None = None) -> str:
    """The concrete attention implementation for "auto": "einsum" on the CPU path; on a GPU,
    "cudnn" (jax.nn.dot_product_attention's cuDNN flash attention) where cuDNN takes the call
    (16-bit inputs, head dim a multiple of 8 up to 128, even lengths when there is a bias),
    else "xla" (jax.nn.dot_product_attention's XLA form, also on TPU). Others pass through.
    """
    if implementation != "auto":
        return implementation
    if cpu_paths():
        return "einsum"
    length, head_dim = q.shape[1], q.shape[-1]
    cudnn = (
        jax.default_backend() == "gpu"
        and q.dtype in (jnp.bfloat16, jnp.float16)
        and head_dim % 8 == 0
        and head_dim <= 128
        and (bias is None or length % 2 == 0)
    )
    return "cudnn" if cudnn else "xla"


def field_names(cls: type[nn.Module]) -> list[str]:
    """A module's dataclass fields, without flax's own `parent` and `name`."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name")]


def _attend_einsum(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None) -> jax.Array:
    """softmax(q k^T / sqrt(d) + bias) v for (B, L, H, Dh) inputs; logits and softmax in float32.

    Works heads-major, (B, H, L, Dh), so that both contractions are batched matmuls with leading
    batch dims, which XLA:CPU runs markedly faster than the (B, L, H, Dh) layout.
    """
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    q = q * jnp.asarray(1.0 / math.sqrt(q.shape[-1]), q.dtype)
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    if bias is not None:
        logits = logits + bias
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", probs, v), 1, 2)


def _attend(
    q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None, implementation: str
) -> jax.Array:
    implementation = resolve_attention(implementation, q, bias)
    if implementation in ("xla", "cudnn"):
        if implementation == "cudnn" and bias is not None:
            bias = bias.astype(q.dtype)  # cuDNN takes the bias in the inputs' dtype
        return jax.nn.dot_product_attention(q, k, v, bias=bias, implementation=implementation)
    if implementation == "einsum":
        return _attend_einsum(q, k, v, bias)
    raise ValueError(
        f"attention implementation {implementation!r}; choose one of {ATTENTION_IMPLEMENTATIONS}"
    )


def _largest_divisor(num: int, limit: int) -> int:
    return max(d for d in range(1, min(num, limit) + 1) if num % d == 0)


def _attend_chunked(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array | None,
    implementation: str,
    chunk_mib: float,
    unroll: bool,
) -> jax.Array:
    """_attend over groups of sequences sized to ~chunk_mib of float32 working set each.

    XLA:CPU runs batched attention on one core and out of cache: looping over cache-sized chunks
    (logits + q, k, v, out of a few sequences) is ~2x faster there, and with each chunk
    rematerialised the backward pass keeps no (sequences, H, L, L) logits (1.5 GiB -> 0.1 GiB for
    TGT-base temporal attention at batch 8). `unroll` unrolls the loop, which XLA's cost analysis
    needs to count every chunk (it counts a loop body once).
    """
    num, length, heads, head_dim = q.shape
    per_sequence = 4 * (heads * length * length + 4 * length * heads * head_dim)
    target = max(1, int(chunk_mib * 2**20) // per_sequence)
    if target >= num:
        return _attend(q, k, v, bias, implementation)
    size = _largest_divisor(num, target)
    if size < target // 2:  # an awkward count: pad it to whole chunks instead
        size = target
    chunks = -(-num // size)
    per_example = bias is not None and bias.shape[0] == num and num > 1
    inputs = [q, k, v] + ([bias] if per_example else [])
    pad = chunks * size - num
    inputs = [jnp.pad(t, [(0, pad)] + [(0, 0)] * (t.ndim - 1)) for t in inputs]
    inputs = [t.reshape(chunks, size, *t.shape[1:]) for t in inputs]

    @jax.checkpoint
    def attend_chunk(chunk):
        return _attend(*chunk[:3], chunk[3] if per_example else bias, implementation)

    _, out = jax.lax.scan(
        lambda carry, chunk: (carry, attend_chunk(chunk)),
        None,
        inputs,
        unroll=chunks if unroll else 1,
    )
    return out.reshape(chunks * size, *out.shape[2:])[:num]


class Attention(nn.Module):
    """Multi-head self-attention over axis -2 of (..., L, D) with an optional additive bias.

    Attributes:
      num_heads: heads; D must be divisible by it.
      dropout: dropout rate on the output projection.
      deterministic: disables dropout.
      implementation: "einsum" (heads-major; faster on XLA:CPU), "xla" or "cudnn"
        (jax.nn.dot_product_attention), or "auto" (resolve_attention: einsum on the CPU path,
        cuDNN on a GPU where it applies, else xla); the same numbers.
      chunk_mib: on the CPU path (cpu_paths), attend in chunks of sequences of about this many
        MiB of working set (_attend_chunked); 0 disables. Ignored on GPU/TPU, where one large
        batched matmul is the fast form.
      unroll_chunks: unroll the chunk loop (for XLA cost analysis FLOP counts).
      dtype: compute dtype (logits and softmax are float32 either way).
    """

    num_heads: int
    dropout: float = 0.0
    deterministic: bool = True
    implementation: str = "xla"
    chunk_mib: float = 0.0
    unroll_chunks: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
        """x: (..., L, D); bias: broadcastable to (..., H, L, L), e.g. (H, L, L). -> (..., L, D)."""
        *lead, length, dim = x.shape
        if dim % self.num_heads:
            raise ValueError(f"feature dim {dim} is not divisible by num_heads={self.num_heads}")
        head_dim = dim // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), dtype=self.dtype, name="qkv")(x)
        qkv = qkv.reshape(-1, length, 3, self.num_heads, head_dim)
        if bias is not None:
            bias = jnp.asarray(bias, jnp.float32)
            if bias.ndim > 3:  # per-example bias: flatten the leading dims like the tokens
                bias = jnp.broadcast_to(bias, (*lead, self.num_heads, length, length))
                bias = bias.reshape(-1, self.num_heads, length, length)
            else:
                bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.chunk_mib > 0 and cpu_paths():
            out = _attend_chunked(
                q, k, v, bias, self.implementation, self.chunk_mib, self.unroll_chunks
            )
        else:
            out = _attend(q, k, v, bias, self.implementation)
        out = out.reshape(*lead, length, self.num_heads, head_dim)
        out = nn.DenseGeneral(dim, axis=(-2, -1), dtype=self.dtype, name="out")(out)
        return nn.Dropout(self.dropout)(out, deterministic=self.deterministic)


class Mlp(nn.Module):
    """Dense -> GELU -> dropout -> Dense -> dropout; out_dim defaults to the input's."""

    hidden_dim: int
    out_dim: int | None = None
    dropout: float = 0.0
    deterministic: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_dim = self.out_dim or x.shape[-1]
        x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x))
        x = nn.Dropout(self.dropout)(x, deterministic=self.deterministic)
        x = nn.Dense(out_dim, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.dropout)(x, deterministic=self.deterministic)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample (axis 0) with prob `rate`."""

    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, rate: float | jax.Array) -> jax.Array:
        if self.deterministic:
            return x
        keep = 1.0 - rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / jnp.maximum(keep, 1e-6).astype(x.dtype), 0).astype(x.dtype)


class _BlockFields(nn.Module):
    """The fields of a TransformerBlock, which a SpatioTemporalLayer passes on to its two blocks.

    Attributes:
      drop_path: stochastic-depth rate, multiplied by the call's `drop_scale` (per-layer schedule).
      attention_impl / attention_chunk_mib / unroll_chunks: Attention's implementation /
        chunk_mib / unroll_chunks.
    """

    num_heads: int
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path: float = 0.0
    deterministic: bool = True
    attention_impl: str = "xla"
    attention_chunk_mib: float = 0.0
    unroll_chunks: bool = False
    dtype: Dtype = jnp.float32


class TransformerBlock(_BlockFields):
    """Pre-norm block: x + DropPath(Attn(LN(x), bias)); x + DropPath(MLP(LN(x))).

    With `cond` (e.g. a timestep embedding broadcastable to x's leading dims, (..., C)), the norms
    are modulated adaLN-Zero style: shift/scale/gate come from a zero-initialised Dense, so a fresh
    conditioned block is the identity map. Fields: _BlockFields.
    """

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        bias: jax.Array | None = None,
        drop_scale: float | jax.Array = 1.0,
        cond: jax.Array | None = None,
    ) -> jax.Array:
        dim = x.shape[-1]
        if cond is None:
            shift1 = scale1 = shift2 = scale2 = 0.0
            gate1 = gate2 = 1.0
        else:
            modulation = nn.Dense(
                6 * dim, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="modulation"
            )(nn.silu(cond))
            shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(modulation, 6, axis=-1)
        drop = DropPath(self.deterministic or self.drop_path == 0.0, name="drop_path")
        rate = self.drop_path * drop_scale
        h = nn.LayerNorm(dtype=self.dtype, name="norm1")(x) * (1 + scale1) + shift1
        h = Attention(
            self.num_heads,
            dropout=self.dropout,
            deterministic=self.deterministic,
            implementation=self.attention_impl,
            chunk_mib=self.attention_chunk_mib,
            unroll_chunks=self.unroll_chunks,
            dtype=self.dtype,
            name="attn",
        )(h, bias)
        x = x + drop(h * gate1, rate)
        h = nn.LayerNorm(dtype=self.dtype, name="norm2")(x) * (1 + scale2) + shift2
        h = Mlp(
            int(dim * self.mlp_ratio),
            dropout=self.dropout,
            deterministic=self.deterministic,
            dtype=self.dtype,
            name="mlp",
        )(h)
        return x + drop(h * gate2, rate)


class HopBias(nn.Module):
    """Learned per-head attention bias indexed by graph hop distance: (N, N) ints -> (H, N, N)."""

    hop_distances: tuple[tuple[int, ...], ...]
    num_heads: int

    @nn.compact
    def __call__(self) -> jax.Array:
        hops = np.asarray(self.hop_distances, dtype=np.int32)
        if hops.ndim != 2 or hops.shape[0] != hops.shape[1] or hops.min() < 0:
            raise ValueError(f"hop_distances must be a square non-negative matrix, got {hops}")
        table = self.param("table", _EMBED_INIT, (int(hops.max()) + 1, self.num_heads))
        return jnp.transpose(table[hops], (2, 0, 1))


class SpatioTemporalLayer(_BlockFields):
    """A spatial block (attention over the N tokens of a frame) and a temporal block (attention
    over the T frames of each token) on (B, T, N, D) tokens; a scan-friendly layer.

    Attributes:
      spatial_first: order of the two blocks.
      hop_distances: (N, N) graph hop distances as nested tuples; when given, the spatial block gets
        a learned per-head bias indexed by them (HopBias).
      temporal_tokens: the temporal block attends over the frames of the first this-many tokens
        only; the others pass it unchanged (they see time through the spatial block). None: all.
      The rest (_BlockFields) configure both blocks.
    """

    spatial_first: bool = True
    hop_distances: tuple[tuple[int, ...], ...] | None = None
    temporal_tokens: int | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, drop_scale: float | jax.Array = 1.0, cond: jax.Array | None = None
    ) -> tuple[jax.Array, None]:
        """x: (B, T, N, D); drop_scale: this layer's stochastic-depth factor in [0, 1]; cond:
        broadcastable to (B, 1, 1, C). Returns (x, None), the carry/output pair nn.scan expects."""
        block_fields = {name: getattr(self, name) for name in field_names(_BlockFields)}
        block = lambda name: TransformerBlock(**block_fields, name=name)
        bias = None
        if self.hop_distances is not None:
            bias = HopBias(self.hop_distances, self.num_heads, name="graph_bias")()

        def spatial(x):
            return block("spatial")(x, bias, drop_scale, cond)

        def temporal(x):
            span = x.shape[2] if self.temporal_tokens is None else self.temporal_tokens
            moving = jnp.swapaxes(x[:, :, :span], 1, 2)
            moving = jnp.swapaxes(block("temporal")(moving, None, drop_scale, cond), 1, 2)
            return moving if span == x.shape[2] else jnp.concatenate([moving, x[:, :, span:]], 2)

        for fn in (spatial, temporal) if self.spatial_first else (temporal, spatial):
            x = fn(x)
        return x, None


class LearnedEmbedding(nn.Module):
    """A learned (num_embeddings, features) table; call(n) returns its first n rows."""

    num_embeddings: int
    features: int

    @nn.compact
    def __call__(self, length: int | None = None) -> jax.Array:
        table = self.param("embedding", _EMBED_INIT, (self.num_embeddings, self.features))
        if length is None:
            return table
        if length > self.num_embeddings:
            raise ValueError(f"length {length} exceeds the table size {self.num_embeddings}")
        return table[:length]


def sinusoidal_embedding(positions: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Transformer sinusoidal features of (...,) positions (ints or floats) -> (..., dim) float32.

    Half the channels are cosines, half sines, at geometric frequencies 1 .. 1/max_period.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = jnp.asarray(positions, jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class TimestepEmbedding(nn.Module):
    """Diffusion timestep embedding: sinusoidal features -> Dense -> SiLU -> Dense."""

    features: int
    frequency_dim: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, timesteps: jax.Array) -> jax.Array:
        x = sinusoidal_embedding(timesteps, self.frequency_dim)
        x = nn.silu(nn.Dense(self.features, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(self.features, dtype=self.dtype, name="fc2")(x)


def as_nested_tuple(matrix: np.ndarray | Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """A hashable copy of an int matrix, for module attributes such as hop_distances."""
    return tuple(tuple(int(v) for v in row) for row in np.asarray(matrix))
