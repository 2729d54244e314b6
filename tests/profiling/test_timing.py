"""Timers: wall time and CPU-bound time kept apart."""

import os
import time

import pytest

from gentg_jax import profiling


def test_median_times_separates_wall_from_cpu_time():
    wall, cpu_bound = profiling.median_times(lambda: time.sleep(0.02), repeats=3)
    assert wall >= 0.02 and cpu_bound < 0.005  # sleeping takes time but no CPU

    def spin():  # one thread busy for 20 ms of CPU time
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass

    wall, cpu_bound = profiling.median_times(spin, repeats=3)
    assert wall >= 0.02
    assert cpu_bound == pytest.approx(0.02 / os.cpu_count(), rel=0.25)


def test_alternating_times_runs_the_calls_in_rounds():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    times = profiling.alternating_times(calls, repeats=3)
    assert order == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then A B rounds
    for runs in times.values():
        assert len(runs["wall"]) == len(runs["cpu"]) == 3
        assert all(w >= 0 for w in runs["wall"]) and all(c >= 0 for c in runs["cpu"])
    times = profiling.alternating_times({"sleep": lambda: time.sleep(0.01)}, 2, warmup=False)
    assert min(times["sleep"]["wall"]) >= 0.01 and max(times["sleep"]["cpu"]) < 0.005
