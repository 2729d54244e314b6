"""Datasheet peaks by device_kind (profiling.peaks)."""

import pytest

from gentg_jax.profiling import peaks


@pytest.mark.parametrize(
    "device_kind, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.5),  # the SXM part
        ("NVIDIA H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", 835.5),
        ("NVIDIA H200", 989.5),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.05),
        ("TPU v4", 275.0),
        ("TPU v5 lite", 197.0),  # v5e
        ("TPU v5", 459.0),  # v5p
        ("TPU v6 lite", 918.0),  # v6e
    ],
)
def test_known_chips(device_kind, tflops):
    peak, source = peaks.datasheet_peak(device_kind)
    assert peak == pytest.approx(tflops * 1e12) and source


@pytest.mark.parametrize("device_kind", ["cpu", "NVIDIA L40", "NVIDIA A10G", "TPU v3"])
def test_unknown_chips_have_no_peak(device_kind):
    # Words, not substrings: an L40 is not an L4, an A10G not an A10.
    assert peaks.datasheet_peak(device_kind) is None
