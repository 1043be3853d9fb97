"""The demo bundle shipped in the package: its files, manifest and serving settings."""

from __future__ import annotations

from pathlib import Path

BUNDLE_DIR = Path(__file__).parent / "assets" / "demo"


def bundle_manifest() -> dict | None:
    """The demo bundle's manifest (data, command, figures, serving settings), if installed."""
    path = BUNDLE_DIR / "manifest.json"
    if not path.is_file():
        return None
    import json

    return json.loads(path.read_text())


def bundle_detection_defaults() -> dict:
    """Detector settings the bundled detector was trained for (e.g. its imgsz); {} without a bundle.

    They apply only when the bundled detector is used, below any setting the user gives.
    """
    manifest = bundle_manifest() or {}
    return dict(manifest.get("serve", {}).get("detection", {}))


def bundle_ranking_defaults() -> dict:
    """How the bundled pair ranks candidates (score_fusion, fusion_weight); {} without a bundle.

    They were tuned on the bundled detector and scorer together, so they apply only when
    both are the bundle's, below any setting the user gives.
    """
    manifest = bundle_manifest() or {}
    return dict(manifest.get("serve", {}).get("ranking", {}))


def with_bundle_defaults(options: dict) -> dict:
    """Serving options (a "detection" sub-dict included) with the bundle's settings under them.

    The bundled detector brings its detection settings; the bundled detector and scorer
    together also bring their ranking. Whatever `options` sets wins; a detector of the
    user's gets none of the bundle's settings.
    """
    if options.get("detector") is not None:
        return options
    merged = {**options, "detection": {**bundle_detection_defaults(), **dict(options.get("detection") or {})}}
    if options.get("scorer") is None:
        merged = {**bundle_ranking_defaults(), **merged}
    return merged


def bundled_paths() -> dict[str, Path | None]:
    """Paths of the demo bundle's parts (None for a part the bundle lacks)."""
    parts = {"detector": BUNDLE_DIR / "detector.pt", "scorer": BUNDLE_DIR / "scorer", "upscaler": BUNDLE_DIR / "upscaler.pth"}
    return {k: (p if p.exists() else None) for k, p in parts.items()}
