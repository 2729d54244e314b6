"""Datasheet peak FLOP/s of accelerators, by JAX `device_kind`, for model FLOPs utilisation.

Dense (no structured sparsity) bfloat16 matmul peaks per chip, in TFLOP/s. NVIDIA datasheets
print the BF16 Tensor Core figure with 2:4 sparsity and mark it "*"; the dense peak is half of it.
An unknown chip has no entry: measure a large matmul instead and say so (`datasheet_peak`
returns None).
"""

from __future__ import annotations

import re

# (words that must all occur in device_kind, TFLOP/s, source); device_kind is split into words
# at spaces and dashes ("NVIDIA A100-SXM4-80GB" -> NVIDIA, A100, SXM4, 80GB), compared without
# case. The first match wins, so a specific entry (H100 PCIe) precedes a general one (H100 =
# the SXM part).
PEAK_BF16_TFLOPS: tuple[tuple[tuple[str, ...], float, str], ...] = (
    # https://www.nvidia.com/en-us/data-center/h100/ (datasheet table: BF16 Tensor Core
    # 1,979 / 1,671 / 1,513 TFLOPS* for SXM / NVL / PCIe, * with sparsity)
    (("H100", "PCIe"), 756.5, "NVIDIA H100 PCIe datasheet, BF16 dense (1,513 sparse / 2)"),
    (("H100", "NVL"), 835.5, "NVIDIA H100 NVL datasheet, BF16 dense (1,671 sparse / 2)"),
    (("H100",), 989.5, "NVIDIA H100 SXM datasheet, BF16 dense (1,979 sparse / 2)"),
    # https://www.nvidia.com/en-us/data-center/h200/ (BF16 Tensor Core 1,979 / 1,671 TFLOPS*
    # for H200 SXM / NVL)
    (("H200", "NVL"), 835.5, "NVIDIA H200 NVL datasheet, BF16 dense (1,671 sparse / 2)"),
    (("H200",), 989.5, "NVIDIA H200 SXM datasheet, BF16 dense (1,979 sparse / 2)"),
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/
    # nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf (BF16 Tensor Core 312 | 624* TFLOPS)
    (("A100",), 312.0, "NVIDIA A100 datasheet, BF16 dense"),
    # https://www.nvidia.com/en-us/data-center/l40s/ (BF16 Tensor Core 362.05 | 733* TFLOPS)
    (("L40S",), 362.05, "NVIDIA L40S datasheet, BF16 dense"),
    # https://www.nvidia.com/en-us/data-center/l4/ (BF16 Tensor Core 242 TFLOPS*)
    (("L4",), 121.0, "NVIDIA L4 datasheet, BF16 dense (242 sparse / 2)"),
    # https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (BF16 Tensor Core 125 | 250*)
    (("A10",), 125.0, "NVIDIA A10 datasheet, BF16 dense"),
    # https://cloud.google.com/tpu/docs/v6e (Trillium: 918 TFLOPS bf16 per chip)
    (("TPU", "v6", "lite"), 918.0, "Google Cloud TPU v6e docs, bf16 per chip"),
    (("TPU", "v6e"), 918.0, "Google Cloud TPU v6e docs, bf16 per chip"),
    # https://cloud.google.com/tpu/docs/v5e (197 TFLOPS bf16 per chip); device_kind "TPU v5 lite"
    (("TPU", "v5", "lite"), 197.0, "Google Cloud TPU v5e docs, bf16 per chip"),
    (("TPU", "v5e"), 197.0, "Google Cloud TPU v5e docs, bf16 per chip"),
    # https://cloud.google.com/tpu/docs/v5p (459 TFLOPS bf16 per chip); device_kind "TPU v5"
    (("TPU", "v5p"), 459.0, "Google Cloud TPU v5p docs, bf16 per chip"),
    (("TPU", "v5"), 459.0, "Google Cloud TPU v5p docs, bf16 per chip"),
    # https://cloud.google.com/tpu/docs/v4 (275 TFLOPS bf16 per chip)
    (("TPU", "v4"), 275.0, "Google Cloud TPU v4 docs, bf16 per chip"),
)


def datasheet_peak(device_kind: str) -> tuple[float, str] | None:
    """(dense bf16 peak FLOP/s per chip, its source) for a JAX device_kind, or None.

    >>> datasheet_peak("NVIDIA H100 80GB HBM3")[0]
    989500000000000.0
    """
    words = {word.lower() for word in re.split(r"[\s\-]+", device_kind) if word}
    for parts, tflops, source in PEAK_BF16_TFLOPS:
        if all(part.lower() in words for part in parts):
            return tflops * 1e12, source
    return None
