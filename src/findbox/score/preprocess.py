"""Crop and caption preprocessing shared by every scorer family and by scorer training.

Training sees exactly what the server sees: the same resize, filter and
normalisation (`CropPreprocess`) and the same prompt (`format_prompt`).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# Default prompt per model family. SigLIP was trained with this template; the
# original used it at inference (and, fixed here, in training too).
DEFAULT_PROMPTS = {
    "siglip": "This is a photo of {}.",
    "siglip2": "This is a photo of {}.",
    "clip": "a photo of {}.",
}


@dataclass(frozen=True)
class CropPreprocess:
    """uint8 RGB crops -> normalised (N, 3, H, W) float32 tensor.

    Resize straight to `size_hw` (crops are object boxes: no centre crop that
    could cut the object) with the processor's resampling filter, rescale to
    [0, 1], then normalise with the processor's mean and std.
    """

    size_hw: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BICUBIC

    @classmethod
    def from_image_processor(cls, image_processor) -> "CropPreprocess":
        size = getattr(image_processor, "size", None) or {}
        size = dict(size) if not isinstance(size, dict) else size
        if "height" in size and "width" in size:
            size_hw = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            crop = getattr(image_processor, "crop_size", None) or {}
            crop = dict(crop) if not isinstance(crop, dict) else crop
            edge = int(crop.get("height", size["shortest_edge"]))
            size_hw = (edge, edge)
        elif getattr(image_processor, "max_num_patches", None) and getattr(image_processor, "patch_size", None):
            # SigLIP 2 NaFlex: used at its largest square grid (crops are resized straight, never padded)
            side = math.isqrt(int(image_processor.max_num_patches)) * int(image_processor.patch_size)
            size_hw = (side, side)
        else:
            raise ValueError(f"scorer: cannot read the input size from the image processor (size={size!r})")
        resample = getattr(image_processor, "resample", None)
        resample = int(getattr(resample, "value", resample)) if resample is not None else int(Image.Resampling.BICUBIC)
        return cls(
            size_hw=size_hw,
            mean=tuple(float(v) for v in image_processor.image_mean),
            std=tuple(float(v) for v in image_processor.image_std),
            resample=resample,
        )

    def resize(self, crop: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 -> (H, W, 3) uint8. Works for 1-pixel crops too."""
        h, w = self.size_hw
        if crop.shape[:2] == (h, w):
            return crop
        return np.asarray(Image.fromarray(crop).resize((w, h), resample=self.resample))

    def normalize(self, resized: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, normalised. Last step, after any augmentation."""
        x = torch.from_numpy(np.ascontiguousarray(resized)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, crops: list[np.ndarray]) -> torch.Tensor:
        if not crops:
            h, w = self.size_hw
            return torch.zeros((0, 3, h, w))
        return self.normalize(np.stack([self.resize(c) for c in crops]))


def format_prompt(template: str, caption: str) -> str:
    """The text the scorer reads for a caption. Shared by inference and training.

    `template` is one that `check_prompt` accepts (every place a prompt is set checks it).
    """
    return template.format(caption.strip())


def check_prompt(template: str) -> str:
    """`template` unchanged when it holds exactly one `{}` (the caption) and no other format field.

    `{{` and `}}` are literal braces. Checked where a prompt is set, so that a template
    without `{}` (every caption ignored) or with `{x}` (every request failing) stops the
    command at startup instead. Raises ValueError naming `prompt`.
    """
    expected = "prompt: expected a template with exactly one {} for the caption"
    if not isinstance(template, str):
        raise TypeError(f"{expected}, got {type(template).__name__}")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:  # an unmatched brace
        raise ValueError(f"{expected} (write {{{{ and }}}} for literal braces), got {template!r}: {exc}") from None
    if not fields:
        raise ValueError(f"{expected}, got {template!r} (no {{}} for the caption)")
    others = [_field_text(*f) for f in fields if f != ("", "", None)]
    if others:
        raise ValueError(f"{expected} and no other format field, got {template!r} (has {', '.join(others)})")
    if len(fields) > 1:
        raise ValueError(f"{expected}, got {template!r} ({len(fields)} placeholders)")
    return template


def _field_text(name: str, spec: str, conversion: str | None) -> str:
    """A parsed format field written back as in the template, e.g. "{x}", "{!r}", "{:>10}"."""
    return "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
