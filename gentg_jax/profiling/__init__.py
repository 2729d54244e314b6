"""Cost and speed profiles of the models.

programs.py  what is measured: synthetic batches, the TGT forward, the GPC programs
costs.py     parameters, XLA and analytic FLOPs, static memory
timing.py    median and alternating call times, predict and train-step throughput
profile.py   `profile(config)` and its tables
"""

from gentg_jax.profiling.costs import (
    attention_flops,
    dense_flops,
    device_peak_memory,
    gpc_flops,
    jit_compile,
    memory_analysis,
    param_count,
    spatiotemporal_flops_per_frame,
    tgt_flops_per_frame,
    xla_flops,
)
from gentg_jax.profiling.profile import format_rows, format_table, format_value, profile
from gentg_jax.profiling.programs import init_params, synthetic_batch
from gentg_jax.profiling.timing import (
    alternating_times,
    device_info,
    median_times,
    predict_call,
    predict_throughput,
    summarize_times,
    timed,
    train_call,
    train_throughput,
)

__all__ = [
    "alternating_times",
    "attention_flops",
    "dense_flops",
    "device_info",
    "device_peak_memory",
    "format_rows",
    "format_table",
    "format_value",
    "gpc_flops",
    "init_params",
    "jit_compile",
    "median_times",
    "memory_analysis",
    "param_count",
    "predict_call",
    "predict_throughput",
    "profile",
    "spatiotemporal_flops_per_frame",
    "summarize_times",
    "synthetic_batch",
    "tgt_flops_per_frame",
    "timed",
    "train_call",
    "train_throughput",
    "xla_flops",
]
