"""Offline environment: nothing in findbox may touch the network at run time.

`ensure_offline()` must run before transformers, huggingface_hub, ultralytics or
albumentations are imported, because they read these variables at import time.
Importing findbox does not call it (an import must not change the caller's
environment, create folders or copy files); the entry points do: `findbox.cli.main`,
`findbox.factory.load_pipeline`, and each function that imports one of those
libraries (the detector, the scorers, the trainers, the test-model builders).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Variables read at import time by the model libraries; a value the user already set wins.
OFFLINE_DEFAULTS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # a hub name would otherwise retry for ~46 s before failing
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",  # never pip-install missing packages at run time
    "YOLO_VERBOSE": "False",
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations checks PyPI for updates on import
    "ULTRALYTICS_SYNC": "False",
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray (the [ray] engines) would otherwise report usage to its project's server
}

_done = False


def cache_dir() -> Path:
    """findbox's own cache folder (ultralytics settings, fonts, data conversions)."""
    root = os.environ.get("FINDBOX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "findbox"
    )
    return Path(root)


def ensure_offline() -> None:
    """Set the variables that keep the model libraries off the network. Idempotent, cheap.

    Also points ultralytics at a settings folder under `cache_dir()` (it would
    otherwise write to ~/.config) and puts a font there so that it never downloads
    one. A variable the user already set is left alone, so a user who wants the hub
    can still opt in explicitly.
    """
    global _done
    if _done:
        return
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        config_dir = cache_dir() / "ultralytics"
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    _install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")
    _done = True


def dejavu_ttf() -> Path | None:
    """matplotlib's DejaVuSans.ttf when matplotlib is installed (found without importing it), else None.

    The one TTF findbox can count on without a download: ultralytics' stand-in for Arial and
    `findbox predict --save`'s labels.
    """
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        ttf = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if ttf.is_file():
            return ttf
    return None


def _install_fonts(font_dir: Path) -> None:
    """ultralytics asks for Arial.ttf (plots, training) and downloads it if missing.

    Any TTF will do: copy DejaVuSans under both names.
    """
    targets = [font_dir / "Arial.ttf", font_dir / "Arial.Unicode.ttf"]
    if all(t.exists() for t in targets):
        return
    source = dejavu_ttf()
    if source is None:  # plots only; inference never needs the font
        return
    font_dir.mkdir(parents=True, exist_ok=True)
    for target in targets:
        if not target.exists():
            shutil.copyfile(source, target)


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra that brings it."""


def require(module: str, extra: str) -> None:
    """Get ready to import an optional dependency: the offline environment, then a check.

    `module` is the import name (e.g. "albumentations"), `extra` the findbox extra
    that installs it (e.g. "train"). Raises ImportError naming the pip command when
    the package is missing, instead of a bare ModuleNotFoundError deep in a run.
    """
    import importlib.util

    ensure_offline()  # most optional libraries read the offline variables at import
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"expected the optional package {module!r} to be installed, got none: "
            f"pip install 'findbox[{extra}]'"
        )
