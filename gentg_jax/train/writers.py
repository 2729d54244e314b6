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

from gentg_jax import files

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


def keep_rows_until(path: str, step: int) -> None:
    """Rewrites a metrics.jsonl (atomically) without rows past `step` and without a line cut
    short by a killed run: a resumed run writes those steps again, one row per step."""
    if not os.path.exists(path):
        return
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
                keep = line.endswith("\n") and int(row["step"]) <= step
            except (ValueError, KeyError, TypeError):
                keep = False
            kept += [line] if keep else []
            dropped += not keep
    if dropped:
        files.write_text(path, "".join(kept))
        logging.info(
            "%s: dropped %d rows past step %d (written again on resume)", path, dropped, step
        )


class MetricWriter:
    """Writes scalars to stdout, `<workdir>/metrics.jsonl` and TensorBoard (tensorboardX).

    `resume_step`: the step a run resumes from (0 for a fresh start); rows and TensorBoard
    events logged after it by an earlier, interrupted run are dropped, since the resumed run
    logs those steps again.
    """

    def __init__(
        self, workdir: str, *, enabled: bool | None = None, resume_step: int | None = None
    ):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tb = None
        if self.enabled:
            # Imported here: tensorboardX pulls in protobuf, not needed by other processes.
            import tensorboardX

            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, "metrics.jsonl")
            if resume_step is not None:
                keep_rows_until(path, resume_step)
            self._jsonl = open(path, "a")  # noqa: SIM115
            purge = None if resume_step is None else resume_step + 1
            self._tb = tensorboardX.SummaryWriter(logdir=workdir, purge_step=purge)

    def write(self, step: int, scalars: Scalars, prefix: str = "", *, echo: bool = True) -> None:
        """One JSON line {"step": step, prefix+name: value, ...} and one TB scalar per value;
        `echo` also logs them (a progress bar may show them instead)."""
        if not self.enabled:
            return
        named = {f"{prefix}{name}": float(value) for name, value in scalars.items()}
        if echo:
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


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's metrics.jsonl (a workdir or the file), one dict per step in step
    order: the step's rows merged (training and evaluation scalars are written as separate
    rows; a step written twice keeps its later values). A line cut short is skipped."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.jsonl at {path}")
    by_step: dict[int, dict[str, float]] = {}
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
                step = int(row["step"])
            except (ValueError, KeyError, TypeError):
                continue
            by_step.setdefault(step, {}).update(row)
    return [by_step[step] for step in sorted(by_step)]
