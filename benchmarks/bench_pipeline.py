"""findbox against the original's per-instance loop: same models, same settings, one process, interleaved.

    .venv/bin/python benchmarks/bench_pipeline.py [--requests 5] [--sections a,b,c,captions,max_det]

Both sides get the request as the protocol carries it (instances of caption + base64 JPEG)
and return one box per instance:
- findbox: `decode_instances` (each distinct image decoded once) + `Pipeline.ground`,
  with the default options (precision auto, image cache on) unless a contender says otherwise;
  `findbox fp32` beside it is the exact path (`--precision fp32`), unless auto is fp32 already
  (a scorer with no calibration record), when the auto contender is that path.
- reference: every instance decoded, one detector call over all of the request's images
  (duplicates included), then per instance: crops embedded 4 at a time with the caption
  re-encoded per crop batch (`findbox.testing.reference.reference_request`), as the original did,
  on the fp32 models (the original's CPU arithmetic; same weights as findbox's).

Workloads (synthetic 1520x870 frames from findbox.synth, medium noise):
  a          the published client's order: the 4 captions of one image in one request
  b          4 distinct images per request, one caption each
  c          one instance per request, each image sent 4 times (one caption each)
  captions   time against captions per image (--captions, e.g. 1,2,8; 4 is workload a)
  max_det    time against boxes per image (--max-dets, e.g. 5,20; 10 is workload a)
--variants adds findbox contenders to a and b (bf16-mixed, bf16, int8, int8-static, onnx, compile);
int8-static is `--precision int8` after `findbox calibrate`: static int8 towers, ranges from the
fp32 pipeline's crops and captions on 4 scenes apart from the measured ones (setup time, apart).

Timings are noisy on a shared machine: contenders alternate order on every request
(findbox, reference, findbox, ...), every ratio is the median of per-request ratios over
the same requests with its min-max, and the load average is recorded with each section.
Each findbox contender records its time per pipeline stage and the work done (images
detected, crops and captions embedded) for the FLOP-floor table of bench_flops.py.
Results: benchmarks/results/<--tag>.json; summarise with benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import (  # noqa: E402
    BENCH_DETECTION,
    RESULTS,
    RssSampler,
    auto_precision,
    bench_models,
    load_average,
    machine,
    peak_rss_mb,
    percentile,
    scenes,
    timed,
    write_result,
)

from findbox.factory import load_pipeline  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.pipeline import Pipeline  # noqa: E402
from findbox.testing.reference import reference_request  # noqa: E402
from findbox.serve.protocol import IdentifyRequest, decode_instances  # noqa: E402

REQUEST_CAPTIONS = 4  # the published client sends an image's captions 4 at a time


def as_request(pairs: list[tuple[str, str]]) -> IdentifyRequest:
    """(b64, caption) pairs -> the protocol's request object, as the server parses it."""
    return IdentifyRequest.model_validate(
        {"instances": [{"key": i, "caption": c, "b64": b} for i, (b, c) in enumerate(pairs)]})


WORK = ("images_detected", "crops_embedded", "captions_embedded")


def findbox_fn(pipeline: Pipeline, stage_seconds: dict[str, float], work: dict[str, int] | None = None):
    """A contender: request -> (N, 4) ltwh boxes; adds each stage's seconds and the work counters into
    `stage_seconds` and `work` (the caller clears them between sections)."""
    def run(request: IdentifyRequest) -> np.ndarray:
        before = {k: getattr(pipeline.counters, k) for k in WORK}
        t = time.perf_counter()
        images, queries = decode_instances(request.instances, 10**6, 40_000_000)
        timings: dict[str, float] = {"decode_b64": time.perf_counter() - t}
        results = pipeline.ground(images, queries, timings)
        for k, v in timings.items():
            stage_seconds[k] = stage_seconds.get(k, 0.0) + v
        if work is not None:
            for k in WORK:
                work[k] = work.get(k, 0) + getattr(pipeline.counters, k) - before[k]
        return np.stack([g.ltwh for g in results])
    return run


def reference_fn(pipeline: Pipeline):
    def run(request: IdentifyRequest) -> np.ndarray:
        images = [decode_image(decode_b64(inst.b64)) for inst in request.instances]
        results = reference_request(pipeline, images, [inst.caption for inst in request.instances])
        return np.stack([g.ltwh for g in results])
    return run


def compare(contenders: dict, requests: list[IdentifyRequest], sampler: RssSampler, section: str,
            baseline: str = "reference") -> dict:
    """Run every request through every contender, alternating their order; summarise."""
    runs = {name: {"seconds": [], "boxes": []} for name in contenders}
    names = list(contenders)
    load_before = load_average()
    for r, request in enumerate(requests):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = contenders[name]["run"]
            with sampler.phase(f"{section}/{name}"):
                seconds, boxes = timed(fn, request)
            runs[name]["seconds"].append(seconds)
            runs[name]["boxes"].append(boxes)
        print(f"  [{section}] request {r + 1}/{len(requests)}: "
              + ", ".join(f"{n} {runs[n]['seconds'][-1]:.2f}s" for n in names), flush=True)
    instances = sum(len(req.instances) for req in requests)
    base_seconds = np.asarray(runs[baseline]["seconds"])
    base_boxes = np.concatenate(runs[baseline]["boxes"])
    out = {"requests": len(requests), "instances": instances, "load_before": load_before,
           "load_after": load_average(), "contenders": {}}
    for name, run in runs.items():
        total = sum(run["seconds"])
        boxes = np.concatenate(run["boxes"])
        # paired: each request's reference time over this contender's time on the same request
        ratios = base_seconds / np.asarray(run["seconds"])
        out["contenders"][name] = {
            "total_s": total,
            "instances_per_s": instances / total,
            "ratio_vs_" + baseline: float(np.median(ratios)),
            "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()),
            "ratio_of_totals": float(base_seconds.sum() / total),
            "p50_s": percentile(run["seconds"], 50),
            "p95_s": percentile(run["seconds"], 95),
            "min_s": min(run["seconds"]),
            "max_s": max(run["seconds"]),
            "request_seconds": run["seconds"],
            "peak_rss_mb": sampler.peaks.get(f"{section}/{name}"),
            "same_box_as_" + baseline: float(np.mean(np.abs(boxes - base_boxes).max(axis=1) < 1e-2)),
            "boxes_ltwh": np.round(boxes, 2).tolist(),
            # copies: a contender's stage_seconds keeps accumulating in later sections
            **{k: (dict(v) if isinstance(v, dict) else v) for k, v in contenders[name].items() if k != "run"},
        }
    return out


def workload_a(frames) -> list[IdentifyRequest]:
    return [as_request([(f.b64, c) for c in f.captions[:REQUEST_CAPTIONS]]) for f in frames]


def workload_b(frames) -> list[IdentifyRequest]:
    groups = [frames[i : i + REQUEST_CAPTIONS] for i in range(0, len(frames), REQUEST_CAPTIONS)]
    return [as_request([(f.b64, f.captions[0]) for f in group]) for group in groups]


def workload_c(frames) -> list[IdentifyRequest]:
    return [as_request([(f.b64, c)]) for f in frames for c in f.captions[:REQUEST_CAPTIONS]]


VARIANT_OPTIONS = {  # --variants: extra findbox contenders of workloads a and b
    "bf16-mixed": dict(precision="bf16-mixed"),
    "bf16": dict(precision="bf16"),
    "int8": dict(precision="int8"),
    "int8-static": dict(precision="int8", static=True),  # built by static_int8_pipeline
    "onnx": dict(scorer_backend="onnx", precision="fp32"),
    "compile": dict(compile=True),
}


def static_int8_pipeline(options: dict) -> Pipeline:
    """The pipeline of `--precision int8` with static ranges, calibrated as `findbox calibrate` does on 4 scenes
    of their own (indices 70000-70003; the measured ones start at 0)."""
    from static_int8 import collect

    from findbox.score.int8_static import calibrate_scorer
    from findbox.score.onnx import OnnxScorer
    from findbox.score.transformers import TransformersScorer

    ranges = calibrate_scorer(TransformersScorer.from_pretrained(options["scorer"]),
                              collect(options, scenes(4, start=70_000)))
    pipe = load_pipeline(**options, precision="fp32")
    pipe.scorer = OnnxScorer.from_scorer(pipe.scorer, int8=True, static=ranges)
    return pipe


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5, help="requests per contender in workloads a and b")
    parser.add_argument("--images-c", type=int, default=2, help="images in workload c (each sent 4 times)")
    parser.add_argument("--sections", default="a,b,c,captions,max_det")
    parser.add_argument("--variants", default="bf16,int8", help="extra findbox contenders in a and b: "
                        + ",".join(VARIANT_OPTIONS) + " (empty: none; the precision auto picks is left out)")
    parser.add_argument("--captions", default="1,2,8", help="points of the captions-per-image curve")
    parser.add_argument("--max-dets", default="5,20", help="points of the boxes-per-image curve")
    parser.add_argument("--scaling-repeats", type=int, default=5, help="requests per point of the scaling curves")
    parser.add_argument("--scorer-preset", default="base")
    parser.add_argument("--tag", default="cpu", help="results file name: benchmarks/results/<tag>.json")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANT_OPTIONS:
            raise SystemExit(f"--variants: expected some of {', '.join(VARIANT_OPTIONS)}, got {v!r}")
    torch.manual_seed(0)

    models = bench_models(args.scorer_preset)
    options = dict(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True, device="cpu",
                   detection=dict(BENCH_DETECTION))
    auto_pipe = load_pipeline(**options)  # the defaults: precision auto, image cache on
    fp32_pipe = load_pipeline(**options, precision="fp32")
    auto = auto_precision()
    variants = [v for v in variants if VARIANT_OPTIONS[v] != dict(precision=auto)]  # auto is already there
    # the original's loop on the fp32 models, without findbox's image cache
    plain = Pipeline(fp32_pipe.detector, fp32_pipe.scorer, None, fp32_pipe.ranking.fallback)
    result = {"command": " ".join([".venv/bin/python", *sys.argv]), "machine": machine(),
              "settings": {"scorer": f"siglip-{args.scorer_preset} sizes, random weights",
                           "auto_precision": auto, "reference_precision": "fp32",
                           "detector": f"{Path(models['detector']).stem}, random weights", **BENCH_DETECTION,
                           "upscaler": None, "image_wh": [1520, 870], "crop_batch": auto_pipe.scorer.max_batch},
              "commit": git_commit(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sections": {}}
    sampler = RssSampler()
    next_frame = 0

    def frames(n: int, min_objects: int = 4):
        nonlocal next_frame
        out = scenes(n, start=next_frame, min_objects=min_objects)
        next_frame += n
        return out

    def contender(pipe: Pipeline, precision: str, **extra) -> dict:
        stages: dict[str, float] = {}
        work: dict[str, int] = {}
        return {"run": findbox_fn(pipe, stages, work), "stage_seconds": stages, "work": work,
                "precision": precision, **extra}

    # warm-up: first calls build oneDNN primitives and tokenizer state
    warm = workload_a(frames(1))[0]
    for pipe in (auto_pipe, fp32_pipe):
        findbox_fn(pipe, {})(warm)
    reference_fn(plain)(warm)
    result["settings"]["torch_threads_after_warmup"] = torch.get_num_threads()  # ultralytics used to change it
    contenders = {f"findbox ({auto}, auto)": contender(auto_pipe, auto),
                  "reference": {"run": reference_fn(plain)}}
    if auto != "fp32":  # where auto is fp32 (no calibration record), it is the exact path itself
        contenders["findbox fp32"] = contender(fp32_pipe, "fp32")
    for name in variants:
        t = time.perf_counter()
        if name == "int8-static":
            pipe = static_int8_pipeline(options)
        else:
            pipe = load_pipeline(**{**options, **VARIANT_OPTIONS[name]})
        findbox_fn(pipe, {})(warm)  # export / compile / warm-up happen here, timed apart
        setup_s = time.perf_counter() - t
        print(f"  {name}: load + first request {setup_s:.1f}s", flush=True)
        precision = VARIANT_OPTIONS[name].get("precision", auto)
        contenders[f"findbox {name}"] = contender(pipe, precision, setup_s=setup_s)

    def clear_counts():
        for c in contenders.values():
            for key in ("stage_seconds", "work"):
                if key in c:
                    c[key].clear()

    if "a" in sections:
        print("workload a: 4 captions of one image per request", flush=True)
        clear_counts()
        result["sections"]["a"] = compare(contenders, workload_a(frames(args.requests)), sampler, "a")
    if "b" in sections:
        print("workload b: 4 distinct images per request, one caption each", flush=True)
        clear_counts()
        result["sections"]["b"] = compare(contenders, workload_b(frames(REQUEST_CAPTIONS * args.requests)), sampler,
                                          "b")
    # auto, the reference and the exact path (auto itself where auto is fp32)
    main = {k: c for k, c in contenders.items() if k in list(contenders)[:2] or k == "findbox fp32"}
    if "c" in sections:
        print("workload c: one instance per request, each image 4 times", flush=True)
        clear_counts()
        no_cache = Pipeline(auto_pipe.detector, auto_pipe.scorer, None, auto_pipe.ranking.fallback)
        c_contenders = {**main, "findbox --image-cache 0": {"run": findbox_fn(no_cache, {})}}
        result["sections"]["c"] = compare(c_contenders, workload_c(frames(args.images_c)), sampler, "c")
    auto_name = next(iter(contenders))
    if "captions" in sections:
        print("scaling: captions per image", flush=True)
        rows = {}
        for k in ints(args.captions):
            requests = []
            for rep in range(args.scaling_repeats):  # fresh image and captions each time: nothing cached
                frame = frames(1)[0]
                pool = [c for f in scenes(2, start=10_000 + 10 * (4 * rep + k)) for c in f.captions]
                captions = (list(frame.captions) + [c for c in pool if c not in frame.captions])[:k]
                requests.append(as_request([(frame.b64, c) for c in captions]))
            rows[k] = compare({auto_name: contenders[auto_name], "reference": contenders["reference"]}, requests,
                              sampler, f"captions{k}")
        result["sections"]["captions"] = rows
    if "max_det" in sections:
        print("scaling: boxes per image (max_det)", flush=True)
        rows = {}
        for max_det in ints(args.max_dets):
            def with_max_det(pipe: Pipeline) -> Pipeline:
                det = pipe.detector
                detector = type(det)(det.yolo, dataclasses.replace(det.config, max_det=max_det), det.device)
                return Pipeline(detector, pipe.scorer, None, pipe.ranking.fallback)
            rows[max_det] = compare({auto_name: {"run": findbox_fn(with_max_det(auto_pipe), {})},
                                     "reference": {"run": reference_fn(with_max_det(plain))}},
                                    workload_a(frames(args.scaling_repeats)), sampler, f"max_det{max_det}")
        result["sections"]["max_det"] = rows
    sampler.stop()
    result["peak_rss_mb_process"] = peak_rss_mb()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.tag}.json"
    write_result(out, result)
    print(f"wrote {out}")


def git_commit() -> str | None:
    """The commit the figures were measured at (with "+dirty" when the tree has local changes)."""
    import subprocess

    try:
        root = Path(__file__).parent.parent
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "") if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()
