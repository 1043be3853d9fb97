"""findbox: find the object a caption describes.

Stages: a single-class detector proposes boxes, each box is cropped, optionally
upscaled 4x, scored against the caption by an image-text model, and the best box
wins. Importing findbox sets the offline environment before any model library
is imported (see `findbox.env`).
"""

from findbox.env import setup_offline_env

setup_offline_env()

__version__ = "0.1.0"
