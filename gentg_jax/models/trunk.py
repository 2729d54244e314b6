"""What the TGT and the GPC denoiser share around layers.py's blocks: the compute dtypes, config
fields as module arguments, and the trunk of `depth` scanned, rematerialised spatio-temporal layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gentg_jax.models import layers

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def config_kwargs(cls: type[nn.Module], config: Mapping[str, Any]) -> dict[str, Any]:
    """config.model as keyword arguments for the model `cls`; a field it lacks is an error."""
    given = dict(config.items()) if hasattr(config, "items") else dict(config)
    unknown = sorted(set(given) - set(layers.field_names(cls)))
    if unknown:
        raise ValueError(f"config.model has fields {cls.__name__} does not know: {unknown}")
    return given


def scan_layers(
    layer_cls: type[nn.Module],
    depth: int,
    remat: bool = True,
    num_broadcast: int = 0,
    remat_policy: Any = None,
    unroll: int = 1,
) -> type[nn.Module]:
    """Stacks `depth` copies of a layer with nn.scan (params gain a leading `depth` axis).

    The layer's call must be `(carry, scanned, *broadcast) -> (carry, None)`: `scanned` has a
    leading axis of length `depth` (e.g. per-layer drop-path scales), the `num_broadcast` trailing
    arguments are shared by all layers (e.g. a timestep embedding). With `remat`, each layer is
    rematerialised in the backward pass: with scan, XLA then keeps only the per-layer carries, which
    is what actually cuts training memory (STYLE item 16). `unroll` = depth unrolls the loop
    fully; XLA's cost analysis counts a loop body once, so FLOP counts need the unrolled form.
    """
    if remat:
        layer_cls = nn.remat(layer_cls, prevent_cse=False, policy=remat_policy)
    return nn.scan(
        layer_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(0,) + (nn.broadcast,) * num_broadcast,
        length=depth,
        unroll=unroll,
    )


def spatio_temporal_trunk(
    model: nn.Module,
    tokens: jax.Array,
    cond: jax.Array | None = None,
    *,
    train: bool,
    hop_distances: tuple[tuple[int, ...], ...] | None,
    attention_chunk_mib: float = 0.0,
    temporal_tokens: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The trunk the TGT and the GPC denoiser share: dropout on the embedded tokens, the model's
    `depth` scanned SpatioTemporalLayers (params under 'layers') in its compute dtype, and a final
    LayerNorm ('final_norm') in float32.

    Call it inside the model's compact __call__. The layers take their size, dropout, stochastic
    depth (linear from 0 at the first layer to `drop_path` at the last), block order, attention
    implementation, remat, scan_unroll and compute dtype from the model's fields of those names;
    scan_unroll >= depth also unrolls the attention chunk loops.

    Args:
      model: the calling model.
      tokens: (B, T, N, D) float32 embedded tokens.
      cond: broadcastable to (B, 1, 1, C): modulates every block (TransformerBlock); None: none.
      train: enables dropout and stochastic depth (rng stream 'dropout').
      hop_distances / temporal_tokens / attention_chunk_mib: as in SpatioTemporalLayer /
        TransformerBlock.

    Returns:
      The normalised float32 tokens for the heads, and the layers' output in the compute dtype.
    """
    if model.dtype not in DTYPES:
        raise ValueError(f"model dtype {model.dtype!r}; choose one of {sorted(DTYPES)}")
    dtype = DTYPES[model.dtype]
    tokens = nn.Dropout(model.dropout)(tokens, deterministic=not train).astype(dtype)
    broadcast = () if cond is None else (cond.astype(dtype),)
    stack = scan_layers(
        layers.SpatioTemporalLayer,
        model.depth,
        remat=model.remat,
        num_broadcast=len(broadcast),
        unroll=model.scan_unroll,
    )
    tokens, _ = stack(
        num_heads=model.num_heads,
        mlp_ratio=model.mlp_ratio,
        dropout=model.dropout,
        drop_path=model.drop_path,
        deterministic=not train,
        spatial_first=model.spatial_first,
        hop_distances=hop_distances,
        temporal_tokens=temporal_tokens,
        attention_impl=model.attention_impl,
        attention_chunk_mib=attention_chunk_mib,
        unroll_chunks=model.scan_unroll >= model.depth,
        dtype=dtype,
        name="layers",
    )(tokens, jnp.linspace(0.0, 1.0, model.depth), *broadcast)
    return nn.LayerNorm(name="final_norm")(tokens.astype(jnp.float32)), tokens


def micro_batched(fn: Callable[..., Any], inputs: tuple[jax.Array, ...], micro_batch: int) -> Any:
    """fn(*inputs) computed as a loop (lax.map) over leading-axis chunks of `micro_batch`.

    XLA:CPU runs a batched forward out of cache once the activations outgrow it; a loop over
    cache-sized micro-batches is faster there (base TGT: ~1.3x at batch 8). The batch is padded
    to whole chunks by repeating its last element and the padding is dropped from the outputs;
    every output leaf must have the batch as its leading axis.
    """
    batch = inputs[0].shape[0]
    chunks = -(-batch // micro_batch)
    pad = chunks * micro_batch - batch

    def to_chunks(x):
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
        return x.reshape(chunks, micro_batch, *x.shape[1:])

    out = jax.lax.map(lambda chunk: fn(*chunk), tuple(to_chunks(x) for x in inputs))
    return jax.tree.map(lambda y: y.reshape(chunks * micro_batch, *y.shape[2:])[:batch], out)
