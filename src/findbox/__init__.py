"""findbox: find the object a caption describes.

Stages: a single-class detector proposes boxes, each box is cropped, optionally
upscaled 4x, scored against the caption by an image-text model, and the best box
wins. Importing findbox has no side effects: the offline environment is set where
a command or `load_pipeline` starts (see `findbox.env.ensure_offline`).
"""

__version__ = "0.1.0"
