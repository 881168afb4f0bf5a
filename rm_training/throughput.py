"""What a run's speed means on its hardware: tokens per second, model FLOPs utilisation (MFU) and peak
accelerator memory.

MFU = 6 x N x tokens/s / (processes x the device's peak dense bf16 FLOP/s), with N the model's parameters
(all of them, frozen ones included) and tokens the real tokens trained on (padding not counted). 6N is the
usual count of a forward (2N) and backward (4N) pass per token (Kaplan et al. 2020; PaLM's appendix B),
without the attention term; it overstates the work of a LoRA run, whose frozen weights get no weight
gradient (about 4N), and understates one with gradient checkpointing (8N), as other trainers' reports do.
It is None where the peak is unknown: on CPUs, and on GPUs not in PEAK_BF16_FLOPS.
"""

from __future__ import annotations

import torch

# Dense (not 2:4 sparse) bf16 tensor-core peaks from the vendors' data sheets, by a word of the device's
# name as torch reports it. The first match wins, so the more specific names come first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362.05e12),
    ("A10G", 70e12),
    ("L4", 121e12),
)


def peak_flops(device: torch.device) -> float | None:
    """The device's peak dense bf16 FLOP/s, or None when unknown (every CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for word, peak in PEAK_BF16_FLOPS if word in name), None)


def model_flops_utilisation(
    parameters: int, tokens_per_second: float, *, device: torch.device, processes: int
) -> float | None:
    """6 x parameters x tokens/s over the peak of all the processes' devices; None where unknown."""
    peak = peak_flops(device)
    if peak is None or tokens_per_second <= 0:
        return None
    return 6 * parameters * tokens_per_second / (peak * processes)


def peak_memory_bytes(device: torch.device) -> int | None:
    """The most accelerator memory torch's allocator held for tensors on this process's device; None on a
    CPU (where the bench reads the process's resident memory instead)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
