"""Typed configuration. Field comments say why the default is what it is.

`ServeConfig` is what `findbox serve` (and `findbox eval` in-process) accept, on
the command line or in a TOML file with the same keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


class Fallback(str, enum.Enum):
    """What to answer when the detector proposes no box for an image."""

    IMAGE = "image"  # the whole image: a valid box inside the image, never an error
    ZEROS = "zeros"  # [0, 0, 0, 0], what later versions of the original returned


class Precision(str, enum.Enum):
    AUTO = "auto"  # fp16 on CUDA, fp32 on CPU
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    BF16_MIXED = "bf16-mixed"  # fp32 weights, scorer matmuls in bf16 (torch.autocast); CPUs with avx512_bf16/AMX


class ScorerBackend(str, enum.Enum):
    """What runs the scorer's towers (transformers scorers only)."""

    TORCH = "torch"
    ONNX = "onnx"  # ONNX Runtime on towers exported once and cached (findbox.score.onnx)


class ScoreFusion(str, enum.Enum):
    """How a candidate's rank combines the scorer logit with the detector confidence."""

    SCORER = "scorer"  # the scorer logit alone, as the original ranked
    PRODUCT = "product"  # logit + fusion_weight * log(det_conf): a product of the two, in log space


@dataclass
class DetectorConfig:
    imgsz: int = 1600  # the original's best: small objects gain from resolution
    conf: float = 0.1  # low on purpose: the scorer rejects false positives
    iou: float = 0.1  # aggressive NMS: objects in these scenes rarely overlap
    max_det: int = 10  # scenes hold 3-8 objects
    augment: bool = False  # ultralytics TTA; the original used it, it costs ~3x detector time
    slices: tuple[int, int] = (1, 1)  # SAHI-style tiles (cols, rows) plus the full image; "2x2" accepted; 1x1 = off
    slice_overlap: float = 0.2  # tiles overlap so an object cut by one tile is whole in its neighbour

    def __post_init__(self) -> None:
        from findbox.detect.sliced import parse_grid

        self.slices = parse_grid(self.slices)
        _check_range("slice_overlap", self.slice_overlap, 0.0, 0.9)
        _check_range("imgsz", self.imgsz, 32, 8192)
        _check_range("conf", self.conf, 0.0, 1.0)
        _check_range("iou", self.iou, 0.0, 1.0)
        _check_range("max_det", self.max_det, 1, 10000)


@dataclass
class ServeConfig:
    detector: str | list[str] | None = None  # ultralytics .pt, or several fused by WBF; None = the bundled demo
    scorer: str | None = None  # scorer spec (findbox.score.spec): a folder, open_clip:ARCH:WEIGHTS, a .toml; None = demo
    upscaler: str | None = None  # Real-ESRGAN .pth; None = the bundle's, if it has one
    no_upscaler: bool = False
    device: str = "auto"
    precision: Precision = Precision.AUTO
    detection: DetectorConfig = field(default_factory=DetectorConfig)
    fallback: Fallback = Fallback.IMAGE
    prompt: str | None = None  # None = the scorer family's default ("This is a photo of {}.")
    score_fusion: ScoreFusion = ScoreFusion.SCORER  # the original ranked by the scorer alone
    fusion_weight: float = 1.0  # weight of log(det_conf) under score_fusion=product
    crop_batch: int = 32  # crops per vision forward: bounds memory whatever the request size
    text_cache_size: int = 4096  # distinct captions kept embedded across requests
    image_cache: int = 256  # images kept detected and embedded across requests (~30 KB each); 0 = off
    image_cache_mb: int = 64  # byte bound of that cache, whichever bound is hit first
    scorer_backend: ScorerBackend = ScorerBackend.TORCH  # onnx: same boxes, 1.0-1.1x on 2 CPU cores (BENCHMARKS.md)
    compile: bool = False  # torch.compile the image tower; no gain measured on CPU, GPU not yet measured
    host: str = "0.0.0.0"
    port: int = 5004  # the original service's port; clients expect it
    max_body_bytes: int = 64 * 1024 * 1024  # 64 instances of ~1 MB JPEG fit comfortably
    max_instances: int = 256  # clients send 1, 4 or 64
    max_image_pixels: int = 40_000_000  # ~30x a 1520x870 frame; stops decompression bombs
    warmup: bool = True  # run one request before /health says ready
    request_timeout_s: float = 120.0  # a request still unanswered then gets 504; far above a 64-instance GPU batch
    batch_window_ms: float = 0.0  # gather concurrent requests into one model call for this long; 0 = off

    def __post_init__(self) -> None:
        self.precision = _enum("precision", Precision, self.precision)
        self.fallback = _enum("fallback", Fallback, self.fallback)
        self.score_fusion = _enum("score_fusion", ScoreFusion, self.score_fusion)
        _check_range("fusion_weight", self.fusion_weight, 0.0, 1000.0)
        self.detector = _detector_paths(self.detector)
        if isinstance(self.detection, dict):
            self.detection = from_dict(DetectorConfig, self.detection, "detection")
        _check_range("port", self.port, 0, 65535)
        _check_range("crop_batch", self.crop_batch, 1, 4096)
        self.scorer_backend = _enum("scorer_backend", ScorerBackend, self.scorer_backend)
        _check_range("image_cache", self.image_cache, 0, 10_000_000)
        _check_range("image_cache_mb", self.image_cache_mb, 0, 1_000_000)
        _check_range("max_instances", self.max_instances, 1, 1_000_000)
        _check_range("request_timeout_s", self.request_timeout_s, 0.001, 86400)
        _check_range("batch_window_ms", self.batch_window_ms, 0, 10_000)


T = TypeVar("T")


def _detector_paths(value: Any) -> str | list[str] | None:
    """One path stays a str (a list of one becomes its str); several stay a list of str."""
    if value is None or isinstance(value, (str, Path)):
        return None if value is None else str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
        return str(value[0]) if len(value) == 1 else [str(v) for v in value]
    raise TypeError(f"detector: expected a path or a non-empty list of paths, got {value!r}")


def _enum(name: str, cls: type[enum.Enum], value: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}") from None


def _check_range(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected a value in [{lo}, {hi}], got {value}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a config dataclass from a dict; unknown keys raise with a suggestion."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(sorted(names))}")
    return cls(**data)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config. Detector keys may sit at top level or under [detection]."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    detection = dict(data.pop("detection", {}))
    for key in [k for k in data if k in {f.name for f in dataclasses.fields(DetectorConfig)}]:
        detection[key] = data.pop(key)
    if detection:
        data["detection"] = detection
    return data
