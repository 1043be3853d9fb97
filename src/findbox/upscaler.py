"""Optional stage 2b: super-resolve crops (Real-ESRGAN and friends, loaded by spandrel)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def pre_pad_for(height: int, width: int) -> int:
    """Reflect pre-pad in pixels for a crop, as the original used it.

    Padding reduces border artefacts; reflect padding must be smaller than the side,
    so: 10 px when both sides exceed 10, 1 px when both exceed 1, none otherwise.
    """
    short = min(height, width)
    if short > 10:
        return 10
    if short > 1:
        return 1
    return 0


class Upscaler:
    """Batched super-resolution of uint8 RGB crops."""

    def __init__(self, descriptor, device: torch.device, dtype: torch.dtype = torch.float32, max_batch: int = 16):
        self.descriptor = descriptor
        self.device = device
        if dtype == torch.float16 and not descriptor.supports_half:
            dtype = torch.float32
        if dtype == torch.bfloat16 and not descriptor.supports_bfloat16:
            dtype = torch.float32
        self.dtype = dtype
        self.max_batch = max_batch
        self.model = descriptor.model.to(device=device, dtype=dtype).eval()

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "Upscaler":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"upscaler: expected a .pth/.safetensors file, got {str(path)!r} (not a file)")
        import spandrel

        try:
            descriptor = spandrel.ModelLoader().load_from_file(str(path))
        except Exception as exc:
            raise ValueError(f"upscaler: spandrel could not load {str(path)!r}: {exc}") from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise ValueError(f"upscaler: expected an image-to-image model, got {type(descriptor).__name__}")
        return cls(descriptor, torch.device(device), dtype)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def info(self) -> dict:
        return {"kind": "spandrel", "architecture": self.descriptor.architecture.name, "scale": self.scale}

    @torch.inference_mode()
    def upscale(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """(h, w, 3) uint8 RGB crops -> (h*scale, w*scale, 3) uint8 RGB crops, same order.

        Crops of identical size run as one batch (the common case: the same
        object seen several times is not, but repeated requests are).
        """
        out: list[np.ndarray | None] = [None] * len(crops)
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, crop in enumerate(crops):
            if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
                raise ValueError(f"upscale: expected (h, w, 3) uint8 crops, got {crop.shape} {crop.dtype}")
            by_shape[crop.shape[:2]].append(i)
        for (h, w), indices in by_shape.items():
            pad = pre_pad_for(h, w)
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                x = torch.from_numpy(np.stack([crops[i] for i in chunk])).to(self.device)
                x = x.permute(0, 3, 1, 2).to(self.dtype) / 255.0
                if pad:
                    x = F.pad(x, (0, pad, 0, pad), mode="reflect")  # right and bottom, as Real-ESRGAN does
                y = self.model(x)[:, :, : h * self.scale, : w * self.scale]
                y = (y.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for i, up in zip(chunk, y):
                    out[i] = up
        return out  # type: ignore[return-value]
