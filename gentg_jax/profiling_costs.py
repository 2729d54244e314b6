"""Model cost counters: parameters, XLA FLOPs and static memory, and analytic matmul FLOPs.

FLOPs come from XLA's cost analysis of the compiled program (`compiled.cost_analysis()`), which
counts a loop body once. The analytic counters (`dense_flops`, `attention_flops`,
`spatiotemporal_flops_per_frame`) count matmuls only and serve as an independent check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

PyTree = Any
_BUFFERS = ("argument", "output", "temp", "alias")


def param_count(params: PyTree) -> int:
    """Number of scalars in a parameter pytree (arrays or ShapeDtypeStructs)."""
    return int(sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params)))


def xla_flops(compiled: jax.stages.Compiled) -> float:
    """FLOPs of a compiled program from XLA's cost analysis (a dict, or a list of per-program
    dicts on older jax). Loop bodies count once."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        raise ValueError("this backend's cost analysis reports no 'flops'")
    return float(analysis["flops"])


def memory_analysis(compiled: jax.stages.Compiled) -> dict[str, int] | None:
    """XLA's static buffer sizes of a compiled program (bytes), None when not reported; their
    sum, total_bytes, bounds what the program holds on the device at once."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    out = {f"{n}_bytes": int(getattr(stats, f"{n}_size_in_bytes")) for n in _BUFFERS}
    # Donated inputs that alias outputs occupy one buffer, not two.
    out["total_bytes"] = sum(out[f"{n}_bytes"] for n in _BUFFERS[:3]) - out["alias_bytes"]
    return out


def device_peak_memory(device: jax.Device | None = None) -> int | None:
    """The allocator's peak bytes in use (GPU/TPU); None where the backend keeps no stats (CPU)."""
    stats = (device or jax.local_devices()[0]).memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def dense_flops(rows: int, in_features: int, out_features: int, bias: bool = True) -> int:
    """A Dense layer on `rows` vectors: 2 * in * out multiply-adds per row, plus the bias add."""
    return rows * out_features * (2 * in_features + int(bias))


def attention_flops(batch: int, length: int, dim: int) -> int:
    """Matmul FLOPs of multi-head self-attention on (batch, length, dim): qkv and output
    projections (8 L D^2) and the two L x L contractions (4 L^2 D), independent of the heads."""
    return batch * (8 * length * dim**2 + 4 * length**2 * dim)


def spatiotemporal_flops_per_frame(
    model_config: ml_collections.ConfigDict, tokens: int, frames: int
) -> float:
    """Matmul FLOPs per frame of the model's `depth` SpatioTemporalLayers (embeddings, heads and
    per-sequence terms omitted): attention over `tokens` and over `frames`, and two MLPs."""
    dim, hidden = model_config.dim, int(model_config.dim * model_config.mlp_ratio)
    spatial = attention_flops(1, tokens, dim)
    temporal = tokens * attention_flops(1, frames, dim) / frames
    mlps = 2 * tokens * 4 * hidden * dim
    return float(model_config.depth * (spatial + temporal + mlps))


def jit_compile(fn: Callable, *args: Any) -> jax.stages.Compiled:
    """`fn` jit-compiled ahead of time for `args` (arrays or ShapeDtypeStructs)."""
    return jax.jit(fn).lower(*args).compile()
