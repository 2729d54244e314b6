"""What a measurement ran on: the date, the devices, the CPU and its load, the JAX version.

Speed figures drift with the machine and its load, so every benchmark stores these beside its
numbers.
"""

from __future__ import annotations

import datetime
import os
import platform

import jax


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else platform's word for it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def force_host_devices(count: int) -> None:
    """Asks XLA for `count` CPU devices (XLA_FLAGS; read once, when the backend starts, so this
    works before the first device query of the process and is a no-op after it, or when the
    flags already name a count)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        flag = f"--xla_force_host_platform_device_count={count}"
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def machine_info() -> dict:
    """The date (UTC), the default devices, the CPU and the 1-minute load average now."""
    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_before": os.getloadavg()[0],
    }
