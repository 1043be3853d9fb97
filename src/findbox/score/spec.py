"""Scorer families behind one interface, chosen from a `--scorer` spec.

Spec forms (what `--scorer`, a serve TOML's `scorer` key and `findbox eval` accept):

- `DIR` or `transformers:DIR`: a transformers `save_pretrained` folder with image and
  text towers (SigLIP, SigLIP 2, CLIP, MetaCLIP in HF format) -> `TransformersScorer`.
- `open_clip:ARCH:WEIGHTS[:TOKENIZER_DIR]`: an open_clip architecture (a built-in name
  or a model-config .json file) with a local weights file -> `OpenClipScorer`.
- `FILE.toml`: the same as keys, for paths with colons or normalisation overrides:

      family = "open_clip"          # or "transformers" (then only `path` and `prompt`)
      arch = "ViT-B-16-SigLIP"
      weights = "weights/siglip-b16.bin"   # relative paths are relative to the .toml
      tokenizer = "weights/siglip-tokenizer"
      prompt = "This is a photo of {}."
      mean = [0.5, 0.5, 0.5]        # optional overrides of the registry's normalisation
      std = [0.5, 0.5, 0.5]
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path

from findbox.config import from_dict


class ScorerFamily(str, enum.Enum):
    TRANSFORMERS = "transformers"
    OPEN_CLIP = "open_clip"


@dataclass
class ScorerSpec:
    """A parsed `--scorer` value. Paths are resolved; nothing is loaded yet."""

    family: ScorerFamily = ScorerFamily.TRANSFORMERS
    path: str | None = None  # transformers folder
    arch: str | None = None  # open_clip architecture name or model-config .json
    weights: str | None = None  # open_clip weights file
    tokenizer: str | None = None  # tokenizer folder (open_clip SigLIP-type architectures need one)
    prompt: str | None = None  # None = the family's default; --prompt overrides it
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        try:
            self.family = ScorerFamily(self.family)
        except ValueError:
            allowed = ", ".join(f.value for f in ScorerFamily)
            raise ValueError(f"scorer family: expected one of {allowed}, got {self.family!r}") from None
        if self.family == ScorerFamily.TRANSFORMERS and not self.path:
            raise ValueError("scorer: a transformers scorer needs `path` (a save_pretrained folder)")
        if self.family == ScorerFamily.OPEN_CLIP and not (self.arch and self.weights):
            raise ValueError("scorer: an open_clip scorer needs `arch` and `weights`")
        if self.family == ScorerFamily.TRANSFORMERS:
            extra = [k for k in ("arch", "weights", "tokenizer", "mean", "std") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"scorer: {', '.join(extra)} apply to open_clip scorers only; a transformers "
                                 f"folder carries its own")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise ValueError(f"scorer {name}: expected 3 numbers (RGB), got {value!r}")


def parse_scorer_spec(spec: str | Path) -> ScorerSpec:
    """`--scorer` value -> ScorerSpec. See the module docstring for the forms."""
    text = str(spec)
    if text.startswith("open_clip:"):
        parts = text.split(":", 3)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ValueError(f"scorer: expected open_clip:ARCH:WEIGHTS[:TOKENIZER_DIR], got {text!r}")
        return ScorerSpec(ScorerFamily.OPEN_CLIP, arch=parts[1], weights=parts[2],
                          tokenizer=parts[3] if len(parts) > 3 and parts[3] else None)
    if text.startswith("transformers:"):
        return ScorerSpec(ScorerFamily.TRANSFORMERS, path=text.split(":", 1)[1])
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"scorer: expected a scorer .toml file, got {text!r} (not a file)")
        with open(path, "rb") as f:
            data = tomllib.load(f)
        data.setdefault("family", ScorerFamily.TRANSFORMERS.value if "path" in data else ScorerFamily.OPEN_CLIP.value)
        for key in ("path", "weights", "tokenizer", "arch"):
            value = data.get(key)
            # relative to the .toml; an arch is a path only when it names a .json config
            if isinstance(value, str) and (key != "arch" or value.endswith(".json")) and not Path(value).is_absolute():
                data[key] = str(path.parent / value)
        return from_dict(ScorerSpec, data, f"scorer {text}")
    return ScorerSpec(ScorerFamily.TRANSFORMERS, path=text)
