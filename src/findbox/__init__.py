"""findbox: find the object a caption describes.

Stages: a single-class detector proposes boxes, each box is cropped, optionally
upscaled 4x, scored against the caption by an image-text model, and the best box
wins. Importing findbox has no side effects: the offline environment is set where
a command or `load_pipeline` starts (see `findbox.env.ensure_offline`).
"""

__version__ = "0.1.0"

# The public API, imported on first use: `import findbox` stays light (no torch) and side-effect free.
_PUBLIC = {
    "load_pipeline": "findbox.factory",
    "Pipeline": "findbox.pipeline",
    "Grounding": "findbox.pipeline",
    "PipelineConfig": "findbox.config",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'findbox' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
