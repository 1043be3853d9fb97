"""findbox against the original's per-instance loop: same models, same settings, one process, interleaved.

    .venv/bin/python benchmarks/bench_pipeline.py [--requests 3] [--sections a,b,c,captions,max_det,variants]

Both sides get the request as the protocol carries it (instances of caption + base64 JPEG)
and return one box per instance:
- findbox: `decode_instances` (each distinct image decoded once) + `Pipeline.ground`,
  with the default options (image cache on) unless a variant says otherwise.
- reference: every instance decoded, one detector call over all of the request's images
  (duplicates included), then per instance: crops embedded 4 at a time with the caption
  re-encoded per crop batch (`findbox.testing.reference.reference_request`), as the original did.

Workloads (synthetic 1520x870 frames from findbox.synth, medium noise):
  a          the published client's order: the 4 captions of one image in one request
  b          4 distinct images per request, one caption each
  c          one instance per request, each image sent 4 times (one caption each)
  captions   time against captions per image (1, 2, 4, 8; one request each)
  max_det    time against boxes per image (5, 10, 20; one 4-caption request each)
  variants   faster scorer paths on workloads a and b: bf16-mixed, bf16, onnx, compile

Timings are noisy on a shared machine: contenders alternate order on every request,
ratios are taken over the same requests, and the load average is recorded with each
section. Results: benchmarks/results/<--tag>.json; summarise with benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
    bench_models,
    load_average,
    machine,
    peak_rss_mb,
    percentile,
    scenes,
    timed,
)

from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.factory import load_pipeline  # noqa: E402
from findbox.pipeline import Pipeline  # noqa: E402
from findbox.testing.reference import reference_request  # noqa: E402
from findbox.serve.protocol import IdentifyRequest, decode_instances  # noqa: E402

REQUEST_CAPTIONS = 4  # the published client sends an image's captions 4 at a time


def as_request(pairs: list[tuple[str, str]]) -> IdentifyRequest:
    """(b64, caption) pairs -> the protocol's request object, as the server parses it."""
    return IdentifyRequest.model_validate(
        {"instances": [{"key": i, "caption": c, "b64": b} for i, (b, c) in enumerate(pairs)]})


def findbox_fn(pipeline: Pipeline, stage_seconds: dict[str, float]):
    def run(request: IdentifyRequest) -> np.ndarray:
        images, queries = decode_instances(request.instances, 10**6, 40_000_000)
        timings: dict[str, float] = {}
        results = pipeline.ground(images, queries, timings)
        for k, v in timings.items():
            stage_seconds[k] = stage_seconds.get(k, 0.0) + v
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
    base_total = sum(runs[baseline]["seconds"])
    base_boxes = np.concatenate(runs[baseline]["boxes"])
    out = {"requests": len(requests), "instances": instances, "load_before": load_before,
           "load_after": load_average(), "contenders": {}}
    for name, run in runs.items():
        total = sum(run["seconds"])
        boxes = np.concatenate(run["boxes"])
        out["contenders"][name] = {
            "total_s": total,
            "instances_per_s": instances / total,
            "ratio_vs_" + baseline: base_total / total,
            "p50_s": percentile(run["seconds"], 50),
            "p95_s": percentile(run["seconds"], 95),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3, help="requests per workload (a, b, variants)")
    parser.add_argument("--images-c", type=int, default=2, help="images in workload c (each sent 4 times)")
    parser.add_argument("--sections", default="a,b,c,captions,max_det,variants")
    parser.add_argument("--variants", default="bf16-mixed,bf16,onnx,compile")
    parser.add_argument("--variant-requests", type=int, default=1, help="requests per workload in `variants`")
    parser.add_argument("--scaling-repeats", type=int, default=2,
                        help="requests per point of the scaling curves; the tables take the fastest (noise only adds)")
    parser.add_argument("--scorer-preset", default="base")
    parser.add_argument("--tag", default="cpu", help="results file name: benchmarks/results/<tag>.json")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    torch.manual_seed(0)

    models = bench_models(args.scorer_preset)
    options = dict(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True, device="cpu",
                   precision="fp32", detection=dict(BENCH_DETECTION))
    findbox_pipe = load_pipeline(**options)  # defaults: image cache on
    plain = Pipeline(findbox_pipe.detector, findbox_pipe.scorer, None, findbox_pipe.ranking.fallback)  # the same models
    result = {"command": " ".join([".venv/bin/python", *sys.argv]), "machine": machine(),
              "settings": {"scorer": f"siglip-{args.scorer_preset} sizes, random weights, fp32",
                           "detector": f"{Path(models['detector']).stem}, random weights", **BENCH_DETECTION,
                           "upscaler": None, "image_wh": [1520, 870], "crop_batch": findbox_pipe.scorer.max_batch},
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sections": {}}
    sampler = RssSampler()
    next_frame = 0

    def frames(n: int, min_objects: int = 4):
        nonlocal next_frame
        out = scenes(n, start=next_frame, min_objects=min_objects)
        next_frame += n
        return out

    # warm-up: first calls build oneDNN primitives and tokenizer state
    warm = workload_a(frames(1))[0]
    findbox_fn(findbox_pipe, {})(warm)
    reference_fn(plain)(warm)
    result["settings"]["torch_threads_after_warmup"] = torch.get_num_threads()  # ultralytics used to change it
    base_stages: dict[str, float] = {}
    contenders = {"reference": {"run": reference_fn(plain)},
                  "findbox": {"run": findbox_fn(findbox_pipe, base_stages), "stage_seconds": base_stages}}

    if "a" in sections:
        print("workload a: 4 captions of one image per request", flush=True)
        result["sections"]["a"] = compare(contenders, workload_a(frames(args.requests)), sampler, "a")
    if "b" in sections:
        print("workload b: 4 distinct images per request, one caption each", flush=True)
        base_stages.clear()
        result["sections"]["b"] = compare(contenders, workload_b(frames(REQUEST_CAPTIONS * args.requests)), sampler,
                                          "b")
    if "c" in sections:
        print("workload c: one instance per request, each image 4 times", flush=True)
        base_stages.clear()
        no_cache = Pipeline(findbox_pipe.detector, findbox_pipe.scorer, None, findbox_pipe.ranking.fallback)
        c_contenders = {**contenders, "findbox --image-cache 0": {"run": findbox_fn(no_cache, {})}}
        result["sections"]["c"] = compare(c_contenders, workload_c(frames(args.images_c)), sampler, "c")
    if "captions" in sections:
        print("scaling: captions per image", flush=True)
        rows = {}
        for k in (1, 2, 4, 8):
            requests = []
            for rep in range(args.scaling_repeats):  # fresh image and captions each time: nothing cached
                frame = frames(1)[0]
                pool = [c for f in scenes(2, start=10_000 + 10 * (4 * rep + k)) for c in f.captions]
                captions = (list(frame.captions) + [c for c in pool if c not in frame.captions])[:k]
                requests.append(as_request([(frame.b64, c) for c in captions]))
            rows[k] = compare(contenders, requests, sampler, f"captions{k}")
        result["sections"]["captions"] = rows
    if "max_det" in sections:
        print("scaling: boxes per image (max_det)", flush=True)
        rows = {}
        for max_det in (5, 10, 20):
            det = findbox_pipe.detector
            detector = type(det)(det.yolo, dataclasses.replace(det.config, max_det=max_det), det.device)
            pipe = Pipeline(detector, findbox_pipe.scorer, None, findbox_pipe.ranking.fallback)
            rows[max_det] = compare({"reference": {"run": reference_fn(pipe)}, "findbox": {"run": findbox_fn(pipe, {})}},
                                    workload_a(frames(args.scaling_repeats)), sampler, f"max_det{max_det}")
        result["sections"]["max_det"] = rows
    if "variants" in sections:
        print("faster paths on workloads a and b", flush=True)
        variant_options = {
            "bf16-mixed": dict(precision="bf16-mixed"),
            "bf16": dict(precision="bf16"),
            "onnx": dict(scorer_backend="onnx"),
            "compile": dict(compile=True),
        }
        chosen = [v for v in args.variants.split(",") if v]
        v_contenders = dict(contenders)
        setup = {}
        for name in chosen:
            t = time.perf_counter()
            pipe = load_pipeline(**{**options, **variant_options[name]})
            findbox_fn(pipe, {})(warm)  # export / compile / warm-up happen here, timed apart
            setup[name] = time.perf_counter() - t
            print(f"  {name}: load + first request {setup[name]:.1f}s", flush=True)
            v_contenders[f"findbox {name}"] = {"run": findbox_fn(pipe, {}), "setup_s": setup[name]}
        n = args.variant_requests
        result["sections"]["variants_a"] = compare(v_contenders, workload_a(frames(n)), sampler, "variants_a")
        result["sections"]["variants_b"] = compare(v_contenders, workload_b(frames(REQUEST_CAPTIONS * n)), sampler,
                                                   "variants_b")
    sampler.stop()
    result["peak_rss_mb_process"] = peak_rss_mb()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.tag}.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
