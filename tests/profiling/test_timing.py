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
