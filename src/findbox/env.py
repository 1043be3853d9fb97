"""Offline environment: nothing in findbox may touch the network at run time.

Must run before transformers, huggingface_hub, ultralytics or albumentations are
imported, because they read these variables at import time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    """findbox's own cache folder (ultralytics settings, fonts, data conversions)."""
    root = os.environ.get("FINDBOX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "findbox"
    )
    return Path(root)


def setup_offline_env() -> None:
    """Set the variables that keep the model libraries off the network. Idempotent.

    A variable the user already set is left alone, so a user who wants the hub can
    still opt in explicitly.
    """
    defaults = {
        "HF_HUB_OFFLINE": "1",  # a hub name would otherwise retry for ~46 s before failing
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",  # never pip-install missing packages at run time
        "YOLO_VERBOSE": "False",
        "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations checks PyPI for updates on import
        "ULTRALYTICS_SYNC": "False",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        config_dir = cache_dir() / "ultralytics"
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    _install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")


def _install_fonts(font_dir: Path) -> None:
    """ultralytics asks for Arial.ttf (plots, training) and downloads it if missing.

    Any TTF will do; matplotlib ships DejaVuSans, so copy that under both names.
    """
    targets = [font_dir / "Arial.ttf", font_dir / "Arial.Unicode.ttf"]
    if all(t.exists() for t in targets):
        return
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except ImportError:  # plots only; inference never needs the font
        return
    if not source.exists():
        return
    font_dir.mkdir(parents=True, exist_ok=True)
    for target in targets:
        if not target.exists():
            shutil.copyfile(source, target)
