"""Device and precision choice, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from findbox.calibration import DETECTOR_BF16, Calibration
from findbox.config import Precision, ScorerBackend

# CPU flags (as /proc/cpuinfo spells them) that mean bf16 matmuls run in hardware
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# int8 dot products in hardware: what makes dynamic int8 linear layers pay
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# auto runs a faster precision only where a calibration record of the scorer shows it keeps the answers
# (`findbox calibrate`, findbox.calibration): int8 kept the trained demo's boxes (99.2-99.9%) but only
# 60-65% of a random base-size scorer's (docs/BENCHMARKS.md), so a checkpoint's own data decides.
# Without a record auto runs fp32: bf16 too was measured on one trained checkpoint only (the demo).
UNCALIBRATED = Precision.FP32
# a path auto takes from a record must have run the pipeline this much faster than fp32 in the same
# `findbox calibrate` (its instances/s): where the scorer is a small part of the time (the demo: the
# detector at imgsz 1280), precisions differ by noise, and noise is not worth a changed box
MIN_SPEEDUP = 1.05


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


@dataclass(frozen=True)
class AutoChoice:
    """What `Precision.AUTO` resolved to, and why, in words for the log and the ready line."""

    precision: Precision
    note: str = ""  # e.g. "calibrated: 99.7% of fp32's boxes on 535 instances"; "" when nothing needs saying
    backend: str | None = None  # the record's row that unlocked it, e.g. "onnxruntime-static"; None: not from one


def choose_precision(device_type: str, cpu_flags: set[str] | frozenset[str],
                     backend: ScorerBackend = ScorerBackend.TORCH, int8_scorer: bool = True,
                     calibration: Calibration | None = None, int8_backend: str = "onnxruntime",
                     int8_static: bool = False) -> Precision:
    """What `Precision.AUTO` means for this scorer on this machine: `auto_choice(...).precision`."""
    return auto_choice(device_type, cpu_flags, backend, int8_scorer, calibration, int8_backend,
                       int8_static).precision


def auto_choice(device_type: str, cpu_flags: set[str] | frozenset[str],
                backend: ScorerBackend = ScorerBackend.TORCH, int8_scorer: bool = True,
                calibration: Calibration | None = None, int8_backend: str = "onnxruntime",
                int8_static: bool = False) -> AutoChoice:
    """The fastest precision that keeps this scorer's answers, with the reason.

    fp16 on CUDA. On the CPU the faster paths are, fastest first (docs/BENCHMARKS.md): int8 where
    the CPU has int8 dot products (VNNI, AMX-int8) and the scorer family has an int8 path
    (int8_scorer; open_clip has none), run by `int8_backend` ("onnxruntime" or "torch",
    `findbox.score.int8.int8_backend`); bf16 where the CPU multiplies bf16 in hardware
    (avx512_bf16, AMX; elsewhere it is emulated, slower than fp32) on the torch backend (ONNX
    Runtime has no bf16 path here). int8_static: the record holds static int8 ranges this machine can
    build towers from (`findbox.score.int8_static`): static int8 ("onnxruntime-static", crops batched)
    then comes first, before dynamic int8. auto takes, of these, the paths that `calibration` (the
    scorer's record, or None) shows keeping the answers on the same backend
    (`Calibration.keeps_answers`): a path this machine lacks is never taken, whatever the record
    says. Where the record timed every path (instances/s), the fastest of them, and only if it ran
    at least MIN_SPEEDUP times fp32's rate; a record without times: the first in the order above.
    Without a record, or when no path kept the answers (or none was faster), `UNCALIBRATED`
    (fp32). A pure function of its arguments, so every case is testable.
    """
    if device_type == "cuda":
        return AutoChoice(Precision.FP16)
    if device_type != "cpu":
        return AutoChoice(Precision.FP32)
    flags = {f.lower() for f in cpu_flags}
    paths = []  # (precision, backend) this machine runs fast, fastest first
    if int8_scorer and flags & VNNI_FLAGS:
        if int8_static:
            from findbox.score.int8_static import STATIC_BACKEND

            paths.append((Precision.INT8, STATIC_BACKEND))
        paths.append((Precision.INT8, int8_backend))
    if backend == ScorerBackend.TORCH and flags & BF16_FLAGS:
        paths.append((Precision.BF16, "torch"))
    if not paths:
        return AutoChoice(Precision.FP32)
    if calibration is None:
        unlock = " or ".join(dict.fromkeys(p.value for p, _ in paths))
        return AutoChoice(UNCALIBRATED, f"uncalibrated: `findbox calibrate` can unlock {unlock}")
    kept = [(p, b) for p, b in paths if calibration.keeps_answers(p.value, b)]
    speeds = {(p, b): calibration.find(p.value, b).instances_per_s for p, b in kept}
    fp32_speed = calibration.reference().instances_per_s if kept else None  # kept: the record has fp32's row
    if fp32_speed and all(speeds.values()):
        # the record timed each path through the pipeline on this scorer: that order, not the usual one, and
        # only a path measurably faster than fp32 is worth any change of answers
        kept.sort(key=lambda pb: -speeds[pb])
        best = kept[0]
        if speeds[best] < MIN_SPEEDUP * fp32_speed:
            return AutoChoice(UNCALIBRATED, f"calibrated: no path that kept fp32's answers ran "
                                            f"{MIN_SPEEDUP - 1:.0%} faster than fp32 (best: {best[0].value} on "
                                            f"{best[1]} {speeds[best] / fp32_speed:.2f}x)")
    if kept:
        precision, path_backend = kept[0]
        same = calibration.find(precision.value, path_backend).same_box
        return AutoChoice(precision, f"calibrated on {path_backend}: {same:.1%} of fp32's boxes on "
                                     f"{calibration.instances} instances", path_backend)
    # say what the record measured for this machine's paths: a record of another int8 backend measures none
    measured = [f"{p.value} on {b} {m.same_box:.1%} of fp32's boxes" for p, b in paths
                if (m := calibration.find(p.value, b))]
    unmeasured = [f"{p.value} on {b} not measured" for p, b in paths if not calibration.find(p.value, b)]
    return AutoChoice(UNCALIBRATED, f"calibrated: no faster precision kept fp32's answers "
                                    f"({', '.join(measured + unmeasured)})")


def detector_auto_choice(device_type: str, cpu_flags: set[str] | frozenset[str],
                         calibration: Calibration | None, detector_sha256: str | None) -> AutoChoice:
    """What `--detector-precision auto` means for this detector on this machine, with the reason: bf16
    (`AutoChoice.precision` BF16) where the CPU multiplies bf16 in hardware and `calibration` (the
    scorer's record, or None) has a bf16 detector row measured on this checkpoint (`detector_sha256`)
    that kept fp32's answers (`Calibration.keeps_answers`) and ran the pipeline at least MIN_SPEEDUP
    times fp32's rate; else fp32. Off the CPU: fp32 (a GPU's detector follows the run's precision:
    half with fp16). A pure function of its arguments, as `auto_choice`."""
    if device_type != "cpu" or not {f.lower() for f in cpu_flags} & BF16_FLAGS:
        return AutoChoice(Precision.FP32)
    row = calibration.find("bf16", DETECTOR_BF16) if calibration is not None else None
    if row is None:
        return AutoChoice(Precision.FP32, "uncalibrated: `findbox calibrate` can unlock bf16")
    if row.detector != detector_sha256:
        return AutoChoice(Precision.FP32, f"calibrated on another detector (sha256 {str(row.detector)[:12]}): "
                                          f"`findbox calibrate` can unlock bf16 for this one")
    reference = calibration.reference()
    fp32_speed = reference.instances_per_s if reference is not None else None
    speedup = row.instances_per_s / fp32_speed if row.instances_per_s and fp32_speed else None
    measured = f"{row.same_box:.1%} of fp32's boxes on {calibration.instances} instances" + (
        f", {speedup:.2f}x fp32's speed" if speedup else "")
    if not calibration.keeps_answers("bf16", DETECTOR_BF16):
        return AutoChoice(Precision.FP32, f"calibrated: bf16 changed answers ({measured})")
    if speedup is None or speedup < MIN_SPEEDUP:
        return AutoChoice(Precision.FP32, f"calibrated: bf16 was not {MIN_SPEEDUP - 1:.0%} faster ({measured})")
    return AutoChoice(Precision.BF16, f"calibrated: {measured}", DETECTOR_BF16)


def resolve_precision(precision: Precision, device: torch.device,
                      backend: ScorerBackend = ScorerBackend.TORCH, int8_scorer: bool = True,
                      calibration: Calibration | None = None, int8_backend: str = "onnxruntime") -> Precision:
    """AUTO -> this machine's choice for this scorer (`choose_precision`); any other precision as given."""
    if precision != Precision.AUTO:
        return precision
    return choose_precision(device.type, cpu_flags() if device.type == "cpu" else set(), backend, int8_scorer,
                            calibration, int8_backend)


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
