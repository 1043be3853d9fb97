"""Build a ready Pipeline from files alone: the user's models or the bundled demo."""

from __future__ import annotations

import logging
from pathlib import Path

from findbox.config import DetectorPrecision, PipelineConfig, Precision

from findbox.bundle import bundled_paths, with_bundle_defaults
from findbox.env import ensure_offline


def resolve_model_paths(config: PipelineConfig) -> dict[str, Path | list[Path] | None]:
    """The detector, scorer and upscaler files to load: given ones first, the bundle for the rest.

    "detector" is a list when several detectors are fused; "scorer" may be any scorer spec
    (`findbox.score.spec.parse_scorer_spec`), kept as a Path.
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


def load_pipeline(config: PipelineConfig | None = None, **overrides):
    """Load every model once and compose the pipeline. No arguments: the bundled demo models.

    The keywords are the CLI's option names (`findbox serve --help`) in snake case, flat
    (`conf=0.01, imgsz=640`) or nested as in PipelineConfig (`detection=dict(conf=0.01)`);
    a PipelineConfig may be given instead.

    >>> from findbox import load_pipeline
    >>> from findbox.images import load_image_file
    >>> pipe = load_pipeline(device="cpu")  # or detector="det.pt", scorer="siglip/", conf=0.01
    >>> image = load_image_file("src/findbox/assets/sample/images/image_4.jpg")  # (H, W, 3) uint8 RGB
    >>> [round(v) for v in pipe.ground_one(image, "brown missile").ltwh]  # [left, top, width, height], px
    [497, 153, 100, 51]
    """
    from findbox.config import from_dict, nest_keys

    if config is None:
        options = nest_keys(PipelineConfig, overrides, "load_pipeline")  # conf=... -> detection={"conf": ...}
        config = from_dict(PipelineConfig, with_bundle_defaults(options), "load_pipeline")
    elif overrides:
        raise TypeError("load_pipeline: pass either a PipelineConfig or keyword options, not both")
    return compose_pipeline(config, load_detector(config))


def load_detector(config: PipelineConfig):
    """The configured detector (several files: their fusion), on the run's device; half on CUDA
    when the run's precision is fp16."""
    ensure_offline()  # before ultralytics is imported
    import torch

    from findbox.detect.ultralytics import Detector
    from findbox.device import resolve_device, resolve_dtype

    paths = resolve_model_paths(config)
    device = resolve_device(config.device)
    half = resolve_dtype(run_precision(config, device, str(paths["scorer"])), device) == torch.float16
    choice = detector_precision_choice(config, device, paths)
    bf16 = choice.precision == Precision.BF16
    if config.detector_precision == DetectorPrecision.AUTO and choice.note:
        logging.getLogger("findbox").info("detector precision %s (auto; %s)", choice.precision.value, choice.note)
    if isinstance(paths["detector"], list):
        from findbox.detect.ensemble import EnsembleDetector

        if bf16:
            raise ValueError("detector_precision: bf16 runs one detector, got an ensemble of "
                             f"{len(paths['detector'])}; use --detector-precision fp32")
        return EnsembleDetector.from_files(paths["detector"], config.detection, device, half=half,
                                           backend=config.detector_backend)
    return Detector.from_file(paths["detector"], config.detection, device, half=half, backend=config.detector_backend,
                              bf16=bf16)


def detector_precision_choice(config: PipelineConfig, device, paths: dict | None = None):
    """`config.detector_precision` as an `AutoChoice` (precision FP32 or BF16, with the reason): AUTO
    resolved from the scorer folder's calibration record (its bf16 detector row, measured on this
    checkpoint: `findbox.device.detector_auto_choice`); an ensemble is never calibrated (fp32)."""
    from findbox.calibration import detector_sha256, read_calibration
    from findbox.device import AutoChoice, cpu_flags, detector_auto_choice
    from findbox.score.spec import ScorerFamily, parse_scorer_spec

    if config.detector_precision != DetectorPrecision.AUTO:
        return AutoChoice(Precision(config.detector_precision.value))
    paths = paths or resolve_model_paths(config)
    if device.type != "cpu" or isinstance(paths["detector"], list):
        return AutoChoice(Precision.FP32)
    spec = parse_scorer_spec(str(paths["scorer"]))
    if spec.family != ScorerFamily.TRANSFORMERS:  # the record lives in a transformers scorer's folder
        choice = detector_auto_choice(device.type, cpu_flags(), None, None)
        note = (f"not calibrated beside this {spec.family.value} scorer: --detector-precision bf16 is faster, "
                f"unmeasured" if choice.note else "")
        return AutoChoice(choice.precision, note)
    calibration = read_calibration(spec.path)
    digest = detector_sha256(paths["detector"]) if calibration is not None else None  # a large .pt hashes in ~1 s
    return detector_auto_choice(device.type, cpu_flags(), calibration, digest)


def compose_pipeline(config: PipelineConfig, detector):
    """The pipeline around `detector` (anything with `detect(list of (H, W, 3) uint8) -> list[Candidates]`:
    the loaded one, or the Ray engine's handle to a detector deployment): loads the scorer, the
    upscaler and the image cache as `config` says."""
    ensure_offline()  # before transformers is imported

    from findbox.cache import ImageCache
    from findbox.device import resolve_device, resolve_dtype
    from findbox.pipeline import Pipeline
    from findbox.upscaler import Upscaler

    paths = resolve_model_paths(config)
    device = resolve_device(config.device)
    precision = _precision(config, device, str(paths["scorer"]))
    dtype = resolve_dtype(precision, device)
    scorer = load_configured_scorer(str(paths["scorer"]), config, device, precision)
    upscaler = Upscaler.from_file(paths["upscaler"], device, dtype) if paths["upscaler"] is not None else None
    image_cache = ImageCache(config.image_cache, config.image_cache_mb * 1024 * 1024) if config.image_cache else None
    return Pipeline(detector, scorer, upscaler, config.fallback, config.score_fusion, config.fusion_weight,
                    image_cache=image_cache)


def run_precision(config: PipelineConfig, device, scorer_spec: str):
    """The precision a run's scorer runs in (`precision_choice`). What loads and what the serve log say agree."""
    return precision_choice(config, device, scorer_spec).precision


def precision_choice(config: PipelineConfig, device, scorer_spec: str):
    """`config.precision` as an `AutoChoice`: AUTO resolved for this machine and this scorer, from the scorer
    folder's calibration record (`findbox calibrate`) where it has one made on its weights, and for the
    scorer's family (open_clip has no int8 path); any other precision as given."""
    from findbox.calibration import read_calibration
    from findbox.config import ScorerBackend
    from findbox.device import AutoChoice, auto_choice, cpu_flags
    from findbox.score.int8 import folder_model_type, int8_backend
    from findbox.score.spec import ScorerFamily, parse_scorer_spec

    if config.precision != Precision.AUTO:
        return AutoChoice(config.precision)
    spec = parse_scorer_spec(scorer_spec)
    transformers = spec.family == ScorerFamily.TRANSFORMERS
    calibration = read_calibration(spec.path) if transformers and device.type == "cpu" else None
    backend = int8_backend(folder_model_type(spec.path), config.scorer_backend == ScorerBackend.ONNX) \
        if transformers else "torch"
    static = calibration is not None and backend == "onnxruntime" and _static_ranges(spec.path) is not None
    choice = auto_choice(device.type, cpu_flags() if device.type == "cpu" else set(), config.scorer_backend,
                         transformers, calibration, backend, int8_static=static)
    if not transformers and choice.note:  # `findbox calibrate` measures transformers folders only
        return AutoChoice(choice.precision, "open_clip scorers are not calibrated: --precision bf16 is faster, "
                                            "its answers unmeasured")
    return choice


def _static_ranges(scorer_dir):
    from findbox.score.int8_static import stored_ranges

    return stored_ranges(scorer_dir)


def int8_static_ranges(config: PipelineConfig, device, scorer_spec: str) -> dict | None:
    """The static int8 ranges an int8 run of this scorer uses (`findbox.score.int8_static`), or None for
    dynamic int8. An explicit `--precision int8` runs static whenever the scorer's calibration record holds
    ranges (and ONNX Runtime runs its towers); auto only where the record's static row kept the answers
    (`precision_choice` says which row unlocked int8)."""
    from findbox.config import ScorerBackend
    from findbox.score.int8 import folder_model_type, int8_backend
    from findbox.score.int8_static import STATIC_BACKEND
    from findbox.score.spec import ScorerFamily, parse_scorer_spec

    spec = parse_scorer_spec(scorer_spec)
    if spec.family != ScorerFamily.TRANSFORMERS or device.type != "cpu":
        return None
    if int8_backend(folder_model_type(spec.path), config.scorer_backend == ScorerBackend.ONNX) != "onnxruntime":
        return None
    if config.precision == Precision.AUTO and precision_choice(config, device, scorer_spec).backend != STATIC_BACKEND:
        return None
    return _static_ranges(spec.path)


def _precision(config: PipelineConfig, device, scorer_spec: str):
    """`run_precision`, logged with its reason; int8 refused off the CPU."""
    choice = precision_choice(config, device, scorer_spec)
    precision = choice.precision
    logging.getLogger("findbox").info("precision %s%s on %s%s", precision.value,
                                      " (auto)" if config.precision == Precision.AUTO else "", device.type,
                                      f" ({choice.note})" if choice.note else "")
    if precision == Precision.INT8 and device.type != "cpu":
        raise ValueError(f"precision: int8 runs on the cpu (dynamic int8 kernels), got device {device}; "
                         "use fp16 or bf16 on a GPU")
    return precision


def load_configured_scorer(spec: str, config: PipelineConfig, device, precision=None):
    """A scorer spec loaded as `config` serves it: precision (dtype, autocast, int8), backend, small crop
    input, compile. `load_pipeline` loads its scorer so; eval's `--compare-scorer` loads every other one
    so, so that scorers are compared in the run's arithmetic. precision: resolved already, or None."""
    import torch

    from findbox.config import ScorerBackend
    from findbox.device import cpu_has_fast_bf16, resolve_autocast, resolve_dtype
    from findbox.score import load_scorer

    if precision is None:
        precision = _precision(config, device, spec)
    scorer = load_scorer(spec, device, resolve_dtype(precision, device), prompt=config.prompt,
                         max_batch=config.crop_batch, text_cache_size=config.text_cache_size,
                         text_cache_bytes=config.text_cache_mb * 1024 * 1024)
    scorer.autocast_dtype = resolve_autocast(precision)
    bf16 = scorer.dtype == torch.bfloat16 or scorer.autocast_dtype == torch.bfloat16
    if bf16 and device.type == "cpu" and not cpu_has_fast_bf16():
        logging.getLogger("findbox").warning("precision %s: this CPU has neither avx512_bf16 nor AMX, so bf16 is "
                                             "emulated and slower than fp32", precision.value)
    scorer.set_small_input(config.small_crop_input)  # before int8/ONNX: they export the small tower too
    if scorer.small_input:
        logging.getLogger("findbox").info("small crop input: crops up to %d px scored at %dx%d", scorer.small_input,
                                          scorer.small_input, scorer.small_input)
    if precision == Precision.INT8:
        from findbox.score.int8 import quantize_int8

        scorer = quantize_int8(scorer, onnx=config.scorer_backend == ScorerBackend.ONNX,
                               static=int8_static_ranges(config, device, spec))
        logging.getLogger("findbox").info("precision int8: scorer towers on %s", scorer.info.get("backend", "torch"))
    elif config.scorer_backend == ScorerBackend.ONNX:
        from findbox.score.onnx import OnnxScorer

        scorer = OnnxScorer.from_scorer(scorer)
    if config.compile:
        # image_features takes a tensor: it compiles whole (text_features tokenises, and captions are cached)
        scorer.image_features = torch.compile(scorer.image_features, dynamic=True)
    return scorer
