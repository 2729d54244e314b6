"""Metric writers (stdout, metrics.jsonl, TensorBoard events) and a progress meter.

Only process 0 writes; other processes get writers that drop everything, so callers never
branch on the process index.
"""

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

Scalars = Mapping[str, float]


class NonFiniteError(FloatingPointError):
    """A training metric became NaN or inf."""


def to_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Fetched (host) metric arrays -> Python floats."""
    return {name: float(np.asarray(value)) for name, value in metrics.items()}


def check_finite(scalars: Scalars, step: int) -> None:
    """Raises NonFiniteError naming the step and the metrics that are NaN or inf."""
    bad = sorted(name for name, value in scalars.items() if not math.isfinite(value))
    if bad:
        kind = "loss" if "loss" in bad else "metric"
        raise NonFiniteError(
            f"non-finite {kind} at step {step}: "
            + ", ".join(f"{name}={scalars[name]}" for name in bad)
        )


class MetricWriter:
    """Writes scalars to stdout, `<workdir>/metrics.jsonl` and TensorBoard (tensorboardX)."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tb = None
        if self.enabled:
            # Imported here: tensorboardX pulls in protobuf, not needed by other processes.
            import tensorboardX

            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
            self._tb = tensorboardX.SummaryWriter(logdir=workdir)

    def write(self, step: int, scalars: Scalars, prefix: str = "") -> None:
        """One JSON line {"step": step, prefix+name: value, ...} and one TB scalar per value."""
        if not self.enabled:
            return
        named = {f"{prefix}{name}": float(value) for name, value in scalars.items()}
        logging.info(
            "step %d: %s", step, ", ".join(f"{k}={v:.6g}" for k, v in sorted(named.items()))
        )
        self._jsonl.write(json.dumps({"step": int(step), **named}) + "\n")
        self._jsonl.flush()
        for name, value in named.items():
            self._tb.add_scalar(name, value, global_step=int(step))

    def write_text(self, step: int, tag: str, text: str) -> None:
        if self.enabled:
            self._tb.add_text(tag, text, global_step=int(step))

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


class Progress:
    """Steps per second and time left, measured between `update` calls."""

    def __init__(self, num_steps: int, first_step: int):
        self.num_steps = num_steps
        self._last_step = first_step
        self._last_time = time.perf_counter()

    def update(self, step: int) -> dict[str, float]:
        """{"steps_per_s", "eta_min"} since the previous call (call at log cadence)."""
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        eta = (self.num_steps - step) / rate / 60 if rate > 0 else 0.0
        return {"steps_per_s": rate, "eta_min": eta}

    def exclude(self, seconds: float) -> None:
        """Leaves time spent outside training steps (evaluation, checkpoints) out of the rate."""
        self._last_time += seconds
