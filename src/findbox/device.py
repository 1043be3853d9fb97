"""Device and precision choice, in one place."""

from __future__ import annotations

import torch

from findbox.config import Precision


def resolve_device(device: str) -> torch.device:
    """'auto' -> the first CUDA device if there is one, else CPU; 'cuda:N' and 'cpu' as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for but CUDA is not available here")
    return resolved


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """Weights dtype for the scorer and upscaler: half on GPU by default, fp32 on CPU."""
    if precision == Precision.AUTO:
        return torch.float16 if device.type == "cuda" else torch.float32
    return {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16,
            Precision.BF16_MIXED: torch.float32}[precision]


def resolve_autocast(precision: Precision) -> torch.dtype | None:
    """dtype the scorer's forward runs under torch.autocast, or None: only bf16-mixed autocasts."""
    return torch.bfloat16 if precision == Precision.BF16_MIXED else None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (avx512_bf16 or AMX); elsewhere bf16 is emulated (slow)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
