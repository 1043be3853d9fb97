"""`findbox calibrate`: measure which faster precisions keep a scorer's answers on your data, and record it.

    findbox calibrate --data val/vlm.jsonl --scorer my-siglip/ --detector det.pt [the usual model options]

Runs the pipeline over the data (`findbox eval`'s in-process runner, the same model options) in
fp32 and in each faster precision this CPU runs in hardware: bf16 (avx512_bf16 or AMX) and int8
(VNNI or AMX-int8) on each int8 backend installed (ONNX Runtime's towers, torch's dynamic int8).
With ONNX Runtime it also calibrates static int8 (`findbox.score.int8_static`): the crops and
captions the fp32 run fed the scorer give every activation a fixed range, kept in the record
whatever the agreement (an explicit `--precision int8` then runs static), and the static towers
are measured as a path of their own ("onnxruntime-static", crops batched).
Where the CPU has bf16 and one detector serves, the detector too is measured in bf16
(`--detector-precision`, torch.autocast; the scorer in fp32): a row of its own ("detector-torch"),
naming the checkpoint by sha256, whose boxes count as fp32's when every corner is within
DETECTOR_SAME_PX (bf16 moves a box by a fraction of a pixel; the scorer rows share one detector, so
theirs must be equal). Each is compared with fp32 instance by instance (same box?) and against the
ground truth (accuracy, IoU > 0.5). The record, `findbox_calibration.json`, goes into the scorer folder,
keyed to the sha256 of its weights files; `--precision auto` then takes the fastest path whose
record shows >= 99% of fp32's boxes and accuracy within 0.5 points (`findbox.calibration`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from findbox.cli import CommandError, add_model_options, serve_config_from_args
from findbox.eval.data import SplitName

# a bf16 detector's box is fp32's when each corner is within this (the detector backends' tolerance,
# findbox.detect.backend.AGREE_PX): the answer is the same object to a fraction of a pixel
DETECTOR_SAME_PX = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DATA_JSONL", help="vlm.jsonl with captions and true "
                        "boxes, images read from images/ beside it: data like what the scorer will serve, never "
                        "trained on")
    parser.add_argument("--images", metavar="DIR", help="image folder (default: images/ beside DATA_JSONL)")
    parser.add_argument("--split", choices=[s.value for s in SplitName],
                        help="which lines: all (default), or val / train (the last 20%% of lines, or --split-file's)")
    parser.add_argument("--split-file", metavar="SPLIT_JSON", help="split.json of a detector run: its val images")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    parser.add_argument("--batch", type=int, default=4, help="instances per request (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    # the model options of `findbox serve` and `findbox eval`; --precision is what this measures
    add_model_options(parser)


def main(args: argparse.Namespace) -> int:
    from findbox.calibration import write_calibration
    from findbox.factory import detector_precision_choice, precision_choice

    if getattr(args, "precision", None) is not None:
        raise ValueError("--precision: calibrate measures every precision this CPU runs fast against fp32; drop it")
    if getattr(args, "detector_precision", None) is not None:
        raise ValueError("--detector-precision: calibrate measures the detector in fp32 and, where the CPU has "
                         "bf16, in bf16; drop it")
    if args.batch < 1:
        raise ValueError(f"--batch: expected a positive number of instances, got {args.batch}")
    config = dataclasses.replace(serve_config_from_args(args).pipeline, image_cache=0, compile=False)
    scorer_dir, device = _scorer_folder(config)
    samples, images_dir = _samples(args)
    paths = _paths(config, scorer_dir)
    print(f"findbox calibrate: {len(samples)} instances from {args.data}; fp32 against "
          f"{', '.join(f'{p} on {b}' for p, b in paths[1:])}", file=sys.stderr)
    results, static = _measure(config, paths, samples, images_dir, args.batch, not args.no_progress)
    record = _record(args, config, scorer_dir, samples, results, static)
    target = write_calibration(scorer_dir, record)
    reference = record.reference()
    for m in record.results:
        kept = record.keeps_answers(m.precision, m.backend)
        verdict = "" if m.precision == "fp32" else ("  keeps the answers" if kept else
                                                    "  changes answers: auto will not use it")
        print(f"{m.precision:5s} {m.backend:18s} same box as fp32 {m.same_box:7.2%}  accuracy {m.accuracy:.4f} "
              f"({m.accuracy - reference.accuracy:+.4f})  {m.instances_per_s or 0:.1f} instances/s{verdict}")
    auto = precision_choice(dataclasses.replace(config, precision="auto"), device, str(scorer_dir))
    print(f"wrote {target}; --precision auto now runs {auto.precision.value} here ({auto.note})")
    if any(m.detector for m in record.results):
        detector = detector_precision_choice(dataclasses.replace(config, detector_precision="auto"), device)
        print(f"--detector-precision auto now runs {detector.precision.value} here ({detector.note})")
    return 0


def _scorer_folder(config):
    """The transformers scorer folder the record goes into, and the (CPU) device."""
    from findbox.device import resolve_device
    from findbox.factory import resolve_model_paths
    from findbox.score.spec import ScorerFamily, parse_scorer_spec

    spec = parse_scorer_spec(str(resolve_model_paths(config)["scorer"]))
    if spec.family != ScorerFamily.TRANSFORMERS or not Path(spec.path).is_dir():
        raise ValueError(f"--scorer: expected a transformers save_pretrained folder (the record is written into it), "
                         f"got {spec.family.value} {spec.path or spec.weights!r}")
    device = resolve_device(config.device)
    if device.type != "cpu":
        raise ValueError(f"--device: calibrate measures the CPU's precisions (bf16, int8), got {device}; "
                         f"pass --device cpu")
    return Path(spec.path), device


def _samples(args):
    """The instances to measure on, and the image folder."""
    from findbox.data.vlm import read_vlm_jsonl
    from findbox.eval.data import samples_of, select_split

    data = Path(args.data)
    split = SplitName(args.split) if args.split else (SplitName.VAL if args.split_file else SplitName.ALL)
    entries = select_split(read_vlm_jsonl(data, captions_required=True), split, args.split_file)
    if args.limit is not None:
        entries = entries[: max(args.limit, 0)]
    samples = samples_of(entries)
    if not samples:
        raise ValueError(f"--data {data}: no instances in split {split.value!r}")
    args.split = split.value
    return samples, Path(args.images) if args.images else data.parent / "images"


def _paths(config, scorer_dir: Path) -> list[tuple[str, str]]:
    """(precision, backend) to run: fp32 on torch first (the reference), then each fast path of this CPU;
    the bf16 detector last (one detector only: an ensemble is not calibrated)."""
    from findbox.calibration import DETECTOR_BF16
    from findbox.device import BF16_FLAGS, VNNI_FLAGS, cpu_flags
    from findbox.factory import resolve_model_paths
    from findbox.score.int8 import folder_model_type, int8_backend

    flags = cpu_flags()
    paths = [("fp32", "torch")]
    if flags & BF16_FLAGS:
        paths.append(("bf16", "torch"))
    if flags & VNNI_FLAGS:
        if int8_backend(folder_model_type(scorer_dir)) == "onnxruntime":
            from findbox.score.int8_static import STATIC_BACKEND

            paths.append(("int8", STATIC_BACKEND))  # scales from the fp32 run's crops and captions
            paths.append(("int8", "onnxruntime"))
        paths.append(("int8", "torch"))  # what int8 runs where ONNX Runtime is not installed
    if flags & BF16_FLAGS and not isinstance(resolve_model_paths(config)["detector"], list):
        paths.append(("bf16", DETECTOR_BF16))
    if len(paths) == 1:
        raise CommandError("this CPU has neither int8 dot products (avx512_vnni, avx_vnni, amx_int8) nor bf16 "
                           "(avx512_bf16, amx_bf16): auto runs fp32 here, and there is nothing faster to measure")
    return paths


def _measure(config, paths, samples, images_dir: Path, batch: int, progress: bool) -> tuple[list, dict | None]:
    """One `Measured` per path, the detector loaded once and shared (the same detections for every path);
    and the static int8 ranges, calibrated on what the fp32 run fed the scorer (None when not measured)."""
    from findbox.calibration import DETECTOR_BF16, Measured, detector_sha256
    from findbox.eval import analysis, metric
    from findbox.eval.runner import run_in_process
    from findbox.factory import load_detector, resolve_model_paths
    from findbox.score.int8_static import STATIC_BACKEND, CalibrationInputs

    detector = load_detector(dataclasses.replace(config, precision="fp32", detector_precision="fp32"))
    _warm(detector, samples, images_dir)
    measured, reference, static = [], None, None
    inputs = CalibrationInputs()
    for precision, backend in paths:
        if backend == STATIC_BACKEND:
            crops = sum(map(len, inputs.pixels.values()))
            if not crops or not inputs.captions:
                # ranges for one tower only would give a record whose static path no scorer can load
                starved = "image tower no crops" if not crops else "text tower no captions"
                print(f"findbox calibrate: no static int8: the fp32 run fed the {starved} to calibrate it on "
                      f"(the detector proposed nothing at these settings?)", file=sys.stderr)
                continue
            print(f"findbox calibrate: static int8 ranges from {crops} crops and "
                  f"{len(inputs.captions)} captions of the fp32 run", file=sys.stderr)
            static = _static_ranges(config, detector, inputs)
        print(f"findbox calibrate: {precision} on {backend}", file=sys.stderr)
        digest, tolerance = None, 0.0
        if backend == DETECTOR_BF16:  # the detector in bf16 on torch, the scorer in fp32 on torch
            bf16 = load_detector(dataclasses.replace(config, precision="fp32", detector_precision="bf16",
                                                     detector_backend="torch"))
            _warm(bf16, samples, images_dir)
            pipeline = _pipeline(config, bf16, "fp32", "torch")
            digest, tolerance = detector_sha256(resolve_model_paths(config)["detector"]), DETECTOR_SAME_PX
        else:
            pipeline = _pipeline(config, detector, precision, backend, static)
        if precision == "fp32":
            _collect(pipeline, inputs)
        run = run_in_process(pipeline, samples, images_dir, batch, config.detection.conf, progress)
        boxes = [r.pred_ltwh for r in run.results]
        reference = reference or boxes
        same = sum(same_box(a, b, tolerance) for a, b in zip(boxes, reference)) / len(boxes)
        scored = analysis.score_at(run)  # at the run's own answers
        measured.append(Measured(precision, backend, same, metric.accuracy(s.hit for s in scored),
                                 analysis.headline(run, scored)["instances_per_s"], digest))
    return measured, static


def same_box(a, b, tolerance: float = 0.0) -> bool:
    """Whether two [l, t, w, h] answers are the same box: every corner within `tolerance` pixels
    (0: equal, as the scorer rows' shared detections must give)."""
    if a is None or b is None:
        return a is b
    if tolerance == 0.0:
        return list(a) == list(b)
    return corner_px(a, b) <= tolerance


def corner_px(a, b) -> float:
    """Largest difference between the corners of two [l, t, w, h] boxes, in pixels."""
    (l1, t1, w1, h1), (l2, t2, w2, h2) = a, b
    return max(abs(l1 - l2), abs(t1 - t2), abs(l1 + w1 - l2 - w2), abs(t1 + h1 - t2 - h2))


def _warm(detector, samples, images_dir: Path, frames: int = 2) -> None:
    """Detect on the data's first frames, untimed: the first frames of the data's size build the detector's
    kernels (oneDNN primitives, ONNX Runtime arenas; the pipeline's own warm-up is a tiny image), which would
    otherwise be charged to the first path timed, fp32, the reference auto's speed margin is taken against."""
    from findbox.images import decode_image

    for name in list(dict.fromkeys(s.image for s in samples))[:frames]:
        try:
            detector.detect([decode_image((images_dir / name).read_bytes())])
        except (OSError, ValueError):
            continue  # an unreadable image: the runs report it as theirs


def _collect(pipeline, inputs) -> None:
    """Keep what `pipeline`'s scorer is fed in `inputs`, less the synthetic warm-up (a grey image, "warm up"):
    the static ranges come from the data's crops and captions alone."""
    inputs.attach(pipeline.scorer)
    warmup = pipeline.warmup

    def warmup_unkept() -> None:
        inputs.paused = True
        try:
            warmup()
        finally:
            inputs.paused = False

    pipeline.warmup = warmup_unkept


def _static_ranges(config, detector, inputs) -> dict:
    """Static int8 ranges of the scorer's exported towers on `inputs` (`findbox.score.int8_static`)."""
    from findbox.factory import compose_pipeline
    from findbox.score.int8_static import calibrate_scorer

    scorer = compose_pipeline(dataclasses.replace(config, precision="fp32", scorer_backend="torch"), detector).scorer
    return calibrate_scorer(scorer, inputs)


def _pipeline(config, detector, precision: str, backend: str, static: dict | None = None):
    """The pipeline as `findbox serve --precision PRECISION` composes it, its scorer on `backend`
    (static int8: with the ranges `static` just calibrated, before the record holding them is written)."""
    from findbox.config import ScorerBackend
    from findbox.factory import compose_pipeline
    from findbox.score.int8 import quantize_torch_linears
    from findbox.score.int8_static import STATIC_BACKEND

    if precision == "int8" and backend == STATIC_BACKEND:
        from findbox.score.onnx import OnnxScorer

        pipeline = compose_pipeline(dataclasses.replace(config, precision="fp32", scorer_backend="torch"), detector)
        pipeline.scorer = OnnxScorer.from_scorer(pipeline.scorer, int8=True, static=static)
        return pipeline
    if precision == "int8" and backend == "torch":
        # serving picks ONNX Runtime where it is installed: the torch fallback is quantised here by hand,
        # as load_configured_scorer would where ONNX Runtime is missing (small input already set)
        pipeline = compose_pipeline(dataclasses.replace(config, precision="fp32", scorer_backend="torch"), detector)
        pipeline.scorer = quantize_torch_linears(pipeline.scorer)
        return pipeline
    scorer_backend = ScorerBackend.ONNX if backend == "onnxruntime" else ScorerBackend.TORCH
    return compose_pipeline(dataclasses.replace(config, precision=precision, scorer_backend=scorer_backend), detector)


def _record(args, config, scorer_dir: Path, samples, results, static: dict | None = None):
    """The record: results, keyed to the weights, with the data, settings and machine it was measured on."""
    import importlib.metadata
    import platform

    import torch

    from findbox import __version__
    from findbox.calibration import Calibration, file_sha256, weights_hashes
    from findbox.device import BF16_FLAGS, VNNI_FLAGS, cpu_flags
    from findbox.provenance import provenance

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    d = config.detection
    extra = {
        "what": "findbox calibration: each fast precision of this scorer against fp32 through the pipeline; "
                "written by `findbox calibrate`, read by --precision auto",
        "findbox_version": __version__,
        "command": "findbox calibrate " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["calibrate"] else None,
        **provenance(),  # the findbox commit, clean-tree flag and date (commit None in an installed package)
        "data": {"path": str(args.data), "sha256": file_sha256(Path(args.data)), "split": args.split,
                 "limit": args.limit, "images": len({s.image for s in samples})},
        "settings": {"detector": [str(p) for p in config.detector] if isinstance(config.detector, list)
                     else (str(config.detector) if config.detector else "bundled"),
                     "detection": {"imgsz": d.imgsz, "conf": d.conf, "iou": d.iou, "max_det": d.max_det},
                     "score_fusion": config.score_fusion.value, "fusion_weight": config.fusion_weight,
                     "small_crop_input": config.small_crop_input, "batch": args.batch,
                     "upscaler": None if config.no_upscaler else (str(config.upscaler) if config.upscaler
                                                                  else "bundled or none")},
        "machine": {"cpu_model": _cpu_model(), "platform": platform.platform(), "torch": torch.__version__,
                    "onnxruntime": version("onnxruntime"), "threads": torch.get_num_threads()},
    }
    if static is not None:  # kept whatever the agreement: an explicit --precision int8 runs static with them
        extra["int8_static"] = static
    flags = cpu_flags() & (BF16_FLAGS | VNNI_FLAGS)
    return Calibration(weights_hashes(scorer_dir), tuple(results), frozenset(flags), len(samples), extra)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None
