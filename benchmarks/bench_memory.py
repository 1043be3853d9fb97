"""Peak memory against request size: one fresh process per (contender, instances).

    .venv/bin/python benchmarks/bench_memory.py [--instances 4,16,64]

Each child loads the models, notes its RSS, serves one request in the client's order
(the 4 captions of each image together; 64 instances = 16 images) and reports its peak
RSS (ru_maxrss). findbox detects and embeds images in chunks (PROPOSE_CHUNK images,
crop_batch crops per forward), so its peak stops growing once a request fills one crop
batch (16 instances = 40 crops > 32); `findbox --crop-batch 4096` shows what an uncapped
crop batch would cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCH_DETECTION, RESULTS, auto_precision, bench_models, peak_rss_mb, write_result  # noqa: E402

# findbox at its defaults (precision auto: fp32 for the benchmark's scorer, which has no calibration record;
# the record says which), `findbox int8` as `--precision int8` runs it; the reference and `findbox fp32` on
# the fp32 models, as bench_pipeline compares them
CONTENDERS = {"findbox": {}, "findbox int8": {"precision": "int8"}, "findbox fp32": {"precision": "fp32"},
              "findbox --crop-batch 4096": {"crop_batch": 4096}, "reference": {"precision": "fp32"}}


def child(contender: str, instances: int) -> None:
    import psutil

    from bench_pipeline import as_request, findbox_fn, reference_fn
    from common import scenes

    from findbox.factory import load_pipeline
    from findbox.pipeline import Pipeline

    models = bench_models()
    images = -(-instances // 4)
    frames = scenes(images + 1, start=20_000)
    warm, frames = as_request([(frames[0].b64, "warm up")]), frames[1:]  # a different image: no cache hit later
    request = as_request([(f.b64, c) for f in frames for c in f.captions[:4]][:instances])
    pipe = load_pipeline(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True,
                         device="cpu", detection=dict(BENCH_DETECTION), **CONTENDERS[contender])
    run = reference_fn(Pipeline(pipe.detector, pipe.scorer)) if contender == "reference" else findbox_fn(pipe, {})
    run(warm)
    loaded = psutil.Process().memory_info().rss / 2**20
    peak_before = peak_rss_mb()
    t = time.perf_counter()
    run(request)
    seconds = time.perf_counter() - t
    print(json.dumps({"contender": contender, "instances": instances, "images": images, "seconds": seconds,
                      "rss_loaded_mb": loaded, "peak_rss_mb": peak_rss_mb(), "peak_before_request_mb": peak_before}))


def flat_png_b64(width: int, height: int, seed: int) -> str:
    """A flat (one colour) PNG: tiny on the wire, width*height*3 bytes once decoded."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, 128)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def cap_child(images: int, megapixels: float, instances: int) -> None:
    """One request at the instance cap over `images` distinct flat images of `megapixels` each."""
    import inspect

    from bench_pipeline import as_request

    from findbox.factory import load_pipeline
    from findbox.serve import protocol

    models = bench_models()
    width = 7000
    height = int(megapixels * 1e6) // width
    frames = [flat_png_b64(width, height, seed) for seed in range(images)]
    request = as_request([(frames[i % images], f"grey object {i}") for i in range(instances)])
    pipe = load_pipeline(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True,
                         device="cpu", precision="fp32", detection=dict(BENCH_DETECTION), image_cache=0)
    pipe.warmup()
    peak_before = peak_rss_mb()
    t = time.perf_counter()
    # the server's own decode step, with its default caps (the budget where the code has one)
    kwargs = {}
    if "max_request_pixels" in inspect.signature(protocol.decode_instances).parameters:
        from findbox.config import ServerConfig
        kwargs["max_request_pixels"] = ServerConfig().max_request_pixels
    try:
        encoded, queries = protocol.decode_instances(request.instances, 256, 40_000_000, **kwargs)
        pipe.ground(encoded, queries)
        outcome = "answered"
    except protocol.InstanceError as exc:
        outcome = f"refused {exc.status}: {exc}"
    seconds = time.perf_counter() - t
    print(json.dumps({"mode": "cap", "images": images, "megapixels": width * height / 1e6, "instances": instances,
                      "body_mb": sum(len(f) for f in frames) / 2**20, "outcome": outcome, "seconds": seconds,
                      "peak_before_request_mb": peak_before, "peak_rss_mb": peak_rss_mb()}))


def run_cap(args) -> None:
    bench_models()
    cmd = [sys.executable, __file__, "--cap-child", str(args.cap_images), str(args.cap_megapixels), "256"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cap child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"256 instances over {row['images']} distinct {row['megapixels']:.1f} MP images "
          f"({row['body_mb']:.1f} MB of base64): {row['outcome']}; peak RSS {row['peak_rss_mb']:.0f} MB "
          f"(+{row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} MB in the request), {row['seconds']:.1f} s")
    write_result(args.out, {"row": row})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="4,16,64", help="request sizes for findbox")
    parser.add_argument("--uncapped-instances", default="64", help="request sizes for findbox --crop-batch 4096")
    parser.add_argument("--int8-instances", default="4,16,64", help="request sizes for findbox --precision int8")
    parser.add_argument("--fp32-instances", default="16", help="request sizes for findbox --precision fp32 "
                        "(none where auto is fp32: that is the findbox rows)")
    parser.add_argument("--reference-instances", default="4", help="the reference is slow: fewer sizes")
    parser.add_argument("--out", default=str(RESULTS / "memory.json"))
    parser.add_argument("--cap", action="store_true", help="one request at the instance cap with the largest images")
    parser.add_argument("--cap-images", type=int, default=16, help="distinct images in the --cap request")
    parser.add_argument("--cap-megapixels", type=float, default=40.0, help="size of each --cap image")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "INSTANCES"), help=argparse.SUPPRESS)
    parser.add_argument("--cap-child", nargs=3, metavar=("IMAGES", "MEGAPIXELS", "INSTANCES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if args.cap_child:
        cap_child(int(args.cap_child[0]), float(args.cap_child[1]), int(args.cap_child[2]))
        return
    if args.cap:
        if args.out == str(RESULTS / "memory.json"):
            args.out = str(RESULTS / f"memory_cap_{args.cap_images}.json")
        run_cap(args)
        return
    bench_models()  # build once, outside the children
    runs = [("findbox", int(n)) for n in args.instances.split(",") if n]
    runs += [("findbox int8", int(n)) for n in args.int8_instances.split(",") if n]
    auto = auto_precision()
    if auto != "fp32":
        runs += [("findbox fp32", int(n)) for n in args.fp32_instances.split(",") if n]
    runs += [("findbox --crop-batch 4096", int(n)) for n in args.uncapped_instances.split(",") if n]
    runs += [("reference", int(n)) for n in args.reference_instances.split(",") if n]
    rows = []
    for contender, n in runs:
        proc = subprocess.run([sys.executable, __file__, "--child", contender, str(n)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{contender} {n}: child failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{contender:28s} {n:4d} instances: peak RSS {row['peak_rss_mb']:7.0f} MB "
              f"(loaded {row['rss_loaded_mb']:.0f} MB, +{row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} MB "
              f"in the request), {row['seconds']:.1f} s", flush=True)
    write_result(args.out, {"detection": BENCH_DETECTION, "auto_precision": auto, "rows": rows})


if __name__ == "__main__":
    main()
