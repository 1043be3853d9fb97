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


@dataclass
class DetectorConfig:
    imgsz: int = 1600  # the original's best: small objects gain from resolution
    conf: float = 0.1  # low on purpose: the scorer rejects false positives
    iou: float = 0.1  # aggressive NMS: objects in these scenes rarely overlap
    max_det: int = 10  # scenes hold 3-8 objects
    augment: bool = False  # ultralytics TTA; the original used it, it costs ~3x detector time

    def __post_init__(self) -> None:
        _check_range("imgsz", self.imgsz, 32, 8192)
        _check_range("conf", self.conf, 0.0, 1.0)
        _check_range("iou", self.iou, 0.0, 1.0)
        _check_range("max_det", self.max_det, 1, 10000)


@dataclass
class ServeConfig:
    detector: str | None = None  # ultralytics .pt; None = the bundled demo detector
    scorer: str | None = None  # save_pretrained folder; None = the bundled demo scorer
    upscaler: str | None = None  # Real-ESRGAN .pth; None = the bundle's, if it has one
    no_upscaler: bool = False
    device: str = "auto"
    precision: Precision = Precision.AUTO
    detection: DetectorConfig = field(default_factory=DetectorConfig)
    fallback: Fallback = Fallback.IMAGE
    prompt: str | None = None  # None = the scorer family's default ("This is a photo of {}.")
    crop_batch: int = 32  # crops per vision forward: bounds memory whatever the request size
    text_cache_size: int = 4096  # distinct captions kept embedded across requests
    host: str = "0.0.0.0"
    port: int = 5004  # the original service's port; clients expect it
    max_body_bytes: int = 64 * 1024 * 1024  # 64 instances of ~1 MB JPEG fit comfortably
    max_instances: int = 256  # clients send 1, 4 or 64
    max_image_pixels: int = 40_000_000  # ~30x a 1520x870 frame; stops decompression bombs
    warmup: bool = True  # run one request before /health says ready

    def __post_init__(self) -> None:
        self.precision = _enum("precision", Precision, self.precision)
        self.fallback = _enum("fallback", Fallback, self.fallback)
        if isinstance(self.detection, dict):
            self.detection = from_dict(DetectorConfig, self.detection, "detection")
        _check_range("port", self.port, 0, 65535)
        _check_range("crop_batch", self.crop_batch, 1, 4096)
        _check_range("max_instances", self.max_instances, 1, 1_000_000)


T = TypeVar("T")


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
