"""Device and precision choice, in one place."""

from __future__ import annotations

from pathlib import Path

import torch

from findbox.config import Precision, ScorerBackend

# CPU flags (as /proc/cpuinfo spells them) that mean bf16 matmuls run in hardware
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# int8 dot products in hardware: what makes dynamic int8 linear layers pay
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Measured, not assumed (docs/BENCHMARKS.md, "Precision: int8 and the automatic choice"): on the trained
# demo bundle int8 keeps accuracy within 0.5 points of fp32. Set False if a bundle ever measures worse.
INT8_KEEPS_ACCURACY = True


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


def cpu_flags() -> set[str]:
    """This CPU's feature flags, lower case: /proc/cpuinfo's, plus what torch detects (other OSes, OS support)."""
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
    detected = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported",
                "avx512_vnni": "_is_vnni_supported"}
    flags.update(flag for flag, check in detected.items() if bool(getattr(torch.cpu, check, lambda: False)()))
    return flags


def choose_precision(device_type: str, cpu_flags: set[str] | frozenset[str],
                     backend: ScorerBackend = ScorerBackend.TORCH, int8_scorer: bool = True) -> Precision:
    """What `Precision.AUTO` means on this machine: the fastest precision that keeps the answers.

    fp16 on CUDA. On the CPU: int8 where it has int8 dot products (VNNI, AMX-int8) and int8
    keeps accuracy (the faster tower: 2.75x fp32 against bf16's 2.2x on Zen 4, with the demo's
    answers kept: docs/BENCHMARKS.md); else bf16 where the hardware multiplies bf16
    (avx512_bf16 or AMX; elsewhere it is emulated and slower than fp32); else fp32. The ONNX
    backend has no bf16 path, so there the choice is int8 or fp32. int8_scorer: False for a
    scorer family without an int8 path (open_clip). A pure function of its arguments, so every
    case is testable.
    """
    if device_type == "cuda":
        return Precision.FP16
    if device_type != "cpu":
        return Precision.FP32
    flags = {f.lower() for f in cpu_flags}
    if INT8_KEEPS_ACCURACY and int8_scorer and flags & VNNI_FLAGS:
        return Precision.INT8
    if backend == ScorerBackend.TORCH and flags & BF16_FLAGS:
        return Precision.BF16
    return Precision.FP32


def resolve_precision(precision: Precision, device: torch.device,
                      backend: ScorerBackend = ScorerBackend.TORCH, int8_scorer: bool = True) -> Precision:
    """AUTO -> this machine's choice (`choose_precision`); any other precision as given."""
    if precision != Precision.AUTO:
        return precision
    return choose_precision(device.type, cpu_flags() if device.type == "cpu" else set(), backend, int8_scorer)


def resolve_dtype(precision: Precision, device: torch.device) -> torch.dtype:
    """Weights dtype for the scorer and upscaler. AUTO here is half on GPU, fp32 on CPU (the upscaler of
    `findbox crops`); the pipeline resolves AUTO first (`resolve_precision`). int8 loads fp32 weights and
    then quantises the scorer's linear layers (`findbox.score.int8`)."""
    if precision == Precision.AUTO:
        return torch.float16 if device.type == "cuda" else torch.float32
    return {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16,
            Precision.BF16_MIXED: torch.float32, Precision.INT8: torch.float32}[precision]


def resolve_autocast(precision: Precision) -> torch.dtype | None:
    """dtype the scorer's forward runs under torch.autocast, or None: only bf16-mixed autocasts."""
    return torch.bfloat16 if precision == Precision.BF16_MIXED else None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (avx512_bf16 or AMX); elsewhere bf16 is emulated (slow)."""
    return bool(cpu_flags() & BF16_FLAGS)
