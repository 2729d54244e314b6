"""Model cost counters: parameters, XLA FLOPs and static memory, analytic matmul FLOPs, and
the FLOPs of the TGT and the GPC refinement.

FLOPs come from XLA's cost analysis of the compiled program (`compiled.cost_analysis()`), which
counts a loop body once: the model programs are compiled unrolled (`programs.unrolled`), and the
K-step DDIM loop of refinement is corrected by adding K - 1 separately counted steps. The
analytic counters (`dense_flops`, `attention_flops`, `spatiotemporal_flops_per_frame`) count
matmuls only and serve as an independent check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from gentg_jax import diffusion
from gentg_jax.models import gpc, tgt
from gentg_jax.profiling import programs
from gentg_jax.types import Batch, PyTree

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
    model_config: ml_collections.ConfigDict,
    tokens: int,
    frames: int,
    temporal_tokens: int | None = None,
) -> float:
    """Matmul FLOPs per frame of the model's `depth` SpatioTemporalLayers (embeddings, heads and
    per-sequence terms omitted): a spatial block (attention over `tokens`, MLP) and a temporal
    block (attention over `frames`, MLP) for the `temporal_tokens` that take part in it (None:
    all; the TGT's `temporal_tokens` property)."""
    dim, hidden = model_config.dim, int(model_config.dim * model_config.mlp_ratio)
    moving = tokens if temporal_tokens is None else temporal_tokens
    mlp = 4 * hidden * dim
    spatial = attention_flops(1, tokens, dim) + tokens * mlp
    temporal = moving * (attention_flops(1, frames, dim) / frames + mlp)
    return float(model_config.depth * (spatial + temporal))


def jit_compile(fn: Callable, *args: Any) -> jax.stages.Compiled:
    """`fn` jit-compiled ahead of time for `args` (arrays or ShapeDtypeStructs)."""
    return jax.jit(fn).lower(*args).compile()


def tgt_flops_per_frame(config: ml_collections.ConfigDict, batch: Batch) -> float:
    """XLA FLOPs per frame of one TGT forward (layers unrolled) on `batch`."""
    model = tgt.TemporalGraphLimbTransformer.from_config(programs.unrolled(config.model))
    inputs = {k: batch[k] for k in ("keypoints_2d", "scores")}
    params = jax.eval_shape(
        lambda key: model.init(key, inputs["keypoints_2d"][:1], inputs["scores"][:1])["params"],
        jax.random.PRNGKey(0),
    )
    compiled = jit_compile(programs.tgt_forward(model), params, inputs)
    return xla_flops(compiled) / math.prod(batch["scores"].shape[:2])


def gpc_flops(
    config: ml_collections.ConfigDict, tgt_config: ml_collections.ConfigDict, batch: Batch
) -> dict[str, float]:
    """Denoiser and refinement FLOPs per frame, and the refinement's cost in TGT forwards.

    refine_tgt_passes = FLOPs(the refinement with config.refine) / FLOPs(one TGT forward), both
    on `batch`. XLA counts refine's K-step sampling loop once, so K - 1 separately compiled
    steps (all hypotheses) are added.
    """
    model = gpc.PoseDenoiser.from_config(programs.unrolled(config.model))
    inputs = programs.gpc_inputs(config, batch)
    params = programs.denoiser_params(model, inputs, abstract=True)
    args = (params, inputs, jax.random.PRNGKey(0))
    count = lambda program: xla_flops(
        jit_compile(programs.gpc_program(model, config, program), *args)
    )
    frames = math.prod(batch["scores"].shape[:2])
    refine = count("refine")
    if config.refine.num_steps > 1:
        refine += (config.refine.num_steps - 1) * count("step")
    tgt_flops = tgt_flops_per_frame(tgt_config, batch)
    return {
        "flops_per_frame": count("denoise") / frames,
        "tgt_flops_per_frame": tgt_flops,
        "refine_flops_per_frame": refine / frames,
        "refine_tgt_passes": refine / frames / tgt_flops,
        "denoiser_passes": diffusion.denoiser_passes(config.refine),
    }
