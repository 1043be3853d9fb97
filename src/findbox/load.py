"""Build a ready Pipeline from files alone: the user's models or the bundled demo."""

from __future__ import annotations

from pathlib import Path

from findbox.config import ServeConfig

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


def resolve_model_paths(config: ServeConfig) -> dict[str, Path | list[Path] | None]:
    """The detector, scorer and upscaler files to load: given ones first, the bundle for the rest.

    "detector" is a list when several detectors are fused; "scorer" may be any scorer spec
    (`findbox.scorers.parse_scorer_spec`), kept as a Path.
    """
    bundle = bundled_paths()
    paths: dict[str, Path | None] = {}
    for part in ("detector", "scorer"):
        given = getattr(config, part)
        if given is None and bundle[part] is None:
            raise ValueError(
                f"{part}: no --{part} given and no bundled demo {part} is installed; "
                f"pass --{part} PATH (ultralytics .pt for the detector, a save_pretrained folder for the scorer)"
            )
        if isinstance(given, list):
            paths[part] = [Path(g) for g in given]
        else:
            paths[part] = Path(given) if given is not None else bundle[part]
    if config.no_upscaler:
        paths["upscaler"] = None
    elif config.upscaler is not None:
        paths["upscaler"] = Path(config.upscaler)
    else:
        # the bundled upscaler only goes with the bundled scorer it was trained with
        paths["upscaler"] = bundle["upscaler"] if config.scorer is None else None
    return paths


def load_pipeline(config: ServeConfig | None = None, **overrides):
    """Load every model once and compose the pipeline.

    >>> pipe = load_pipeline(detector="det.pt", scorer="siglip/", no_upscaler=True)
    >>> pipe.ground_one(image_rgb, "grey missile").ltwh
    """
    import torch

    from findbox.cache import ImageCache
    from findbox.config import ScorerBackend, from_dict
    from findbox.detector import Detector
    from findbox.device import cpu_has_fast_bf16, resolve_autocast, resolve_device, resolve_dtype
    from findbox.pipeline import Pipeline
    from findbox.scorers import load_scorer
    from findbox.upscaler import Upscaler

    if config is None:
        config = from_dict(ServeConfig, with_bundle_defaults(overrides), "load_pipeline")
    elif overrides:
        raise TypeError("load_pipeline: pass either a ServeConfig or keyword options, not both")
    paths = resolve_model_paths(config)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    if isinstance(paths["detector"], list):
        from findbox.ensemble import EnsembleDetector

        detector = EnsembleDetector.from_files(paths["detector"], config.detection, device, half=dtype == torch.float16)
    else:
        detector = Detector.from_file(paths["detector"], config.detection, device, half=dtype == torch.float16)
    scorer = load_scorer(
        str(paths["scorer"]), device, dtype, prompt=config.prompt, max_batch=config.crop_batch,
        text_cache_size=config.text_cache_size,
    )
    scorer.autocast_dtype = resolve_autocast(config.precision)
    bf16 = dtype == torch.bfloat16 or scorer.autocast_dtype == torch.bfloat16
    if bf16 and device.type == "cpu" and not cpu_has_fast_bf16():
        import logging

        logging.getLogger("findbox").warning(
            "precision %s: this CPU has neither avx512_bf16 nor AMX, so bf16 is emulated and slower than fp32",
            config.precision.value)
    if config.scorer_backend == ScorerBackend.ONNX:
        from findbox.scorers.onnx import OnnxScorer

        scorer = OnnxScorer.from_scorer(scorer)
    if config.compile:
        # image_features takes a tensor: it compiles whole (text_features tokenises, and captions are cached)
        scorer.image_features = torch.compile(scorer.image_features, dynamic=True)
    upscaler = Upscaler.from_file(paths["upscaler"], device, dtype) if paths["upscaler"] is not None else None
    image_cache = ImageCache(config.image_cache, config.image_cache_mb * 1024 * 1024) if config.image_cache else None
    return Pipeline(detector, scorer, upscaler, config.fallback, config.score_fusion, config.fusion_weight,
                    image_cache=image_cache)
